//! Probes with real packets: in-process echo servers, TCP/UDP/ICMP probes
//! that turn what the kernel answered into a verdict, and AF_PACKET taps
//! whose captures become the ordered hops a probe's packets took.
//!
//! Everything that needs a namespace (listening sockets, probe sockets,
//! packet sockets) is created on a thread that entered it (`NetNs::run`);
//! the sockets then keep working from any thread.

pub mod client;
pub mod decode;
pub mod echo;
pub mod hops;
mod icmp;
mod sys;
pub mod tap;

use crate::kernel::KernelError;

pub use client::{probe, ProbeOutcome, ProbeSpec};
pub use decode::{decode_arp, decode_frame, Decoded};
pub use echo::{EchoReply, EchoServers};
pub use hops::{arp_hops, hops, Hop};
pub use tap::{send_raw_frame, Capture, TapPoint, Taps};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// An echo server could not be set up (`port 80 (pod/shop/web) in cnl-x-n1: bind: Address in use`).
    #[error("echo server {identity} port {port}/{proto} in {ns}: {what}: {source}")]
    Server {
        ns: String,
        identity: String,
        port: u16,
        proto: &'static str,
        what: &'static str,
        source: std::io::Error,
    },
    /// A tap could not be opened or read.
    #[error("tap in {ns}: {what}: {source}")]
    Tap {
        ns: String,
        what: String,
        source: std::io::Error,
    },
    /// The echo servers' runtime or the tap reader could not start.
    #[error("{what}: {source}")]
    Runtime {
        what: &'static str,
        source: std::io::Error,
    },
}
