//! Taps: one AF_PACKET socket per namespace (opened inside it, with a
//! TPACKET_V2 ring that timestamps each frame on delivery), all read by one
//! thread until `stop`, every IPv4 frame decoded into a `Capture`.
//!
//! The kernel moves a received 802.1Q tag out of the frame into metadata
//! before taps see it; the ring header hands it back (`tp_vlan_tci`, like
//! PACKET_AUXDATA). Frames sent with the tag inline still carry it in the
//! bytes; both are reported.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::decode::{decode_arp, decode_frame};
use super::{sys, ProbeError};
use crate::kernel::NetNs;

pub use super::hops::{hops, Hop};
pub use super::sys::send_raw_frame;

/// Packets seen on `ifname` (None: any interface) of a namespace are hop `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPoint {
    pub id: String,
    pub ifname: Option<String>,
}

/// One IPv4 packet a tap saw (the inner flow for VXLAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Kernel receive/transmit time, ns since the Unix epoch.
    pub ts_ns: u128,
    pub ns: String,
    pub ifname: String,
    pub outgoing: bool,
    pub point: String,
    pub vlan: Option<u16>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub icmp_id: Option<u16>,
    pub encap: Option<String>,
    pub tcp_flags: Option<u8>,
    pub icmp_type: Option<u8>,
    /// The Ethernet frame as the interface carried it (an 802.1Q tag the
    /// kernel moved to metadata is put back), for pcap files.
    pub frame: Vec<u8>,
    /// IPv4 identification (ties one packet's captures together).
    pub ip_id: u16,
    /// ARP operation for an ARP frame (then `src`/`dst` are the sender's
    /// and target's addresses, `proto` 0).
    pub arp: Option<u16>,
}

/// Running taps; `stop` returns what they saw (dropping them discards it).
pub struct Taps {
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<Vec<Capture>>>,
}

/// The tap of one namespace.
struct NsTap {
    ns: String,
    ring: sys::PacketRing,
    points: Vec<TapPoint>,
    ifnames: HashMap<i32, String>,
}

impl NsTap {
    /// The point a frame on `ifindex` belongs to: the one naming the
    /// interface, else the namespace-wide one.
    fn point_of(&mut self, ifindex: i32) -> Option<(String, String)> {
        if !self.ifnames.contains_key(&ifindex) {
            let name = sys::ifname_of(self.ring.raw_fd(), ifindex)
                .unwrap_or_else(|_| format!("if{ifindex}"));
            self.ifnames.insert(ifindex, name);
        }
        let ifname = self.ifnames.get(&ifindex)?.clone();
        let point = self
            .points
            .iter()
            .find(|p| p.ifname.as_deref() == Some(ifname.as_str()))
            .or_else(|| self.points.iter().find(|p| p.ifname.is_none()))?;
        Some((point.id.clone(), ifname))
    }
}

/// Most frames read from one tap per round, so a busy namespace does not
/// starve the others.
const BATCH: usize = 512;
const POLL_MS: i32 = 20;

impl Taps {
    /// Opens a tap in every namespace that has points and starts reading.
    /// Namespaces are opened a few at a time on threads of their own.
    pub fn open(targets: &[(&NetNs, Vec<TapPoint>)]) -> Result<Taps, ProbeError> {
        Self::open_with(targets, None)
    }

    /// As `open`, handing every capture to `sink` as it is read (each poll
    /// round's frames in time order) instead of keeping it: `cnlab capture`.
    pub fn open_streaming(
        targets: &[(&NetNs, Vec<TapPoint>)],
        sink: std::sync::mpsc::Sender<Capture>,
    ) -> Result<Taps, ProbeError> {
        Self::open_with(targets, Some(sink))
    }

    fn open_with(
        targets: &[(&NetNs, Vec<TapPoint>)],
        sink: Option<std::sync::mpsc::Sender<Capture>>,
    ) -> Result<Taps, ProbeError> {
        let mut grouped: Vec<(&NetNs, Vec<TapPoint>)> = Vec::new();
        for (ns, points) in targets.iter().filter(|(_, p)| !p.is_empty()) {
            match grouped.iter_mut().find(|(g, _)| g.name() == ns.name()) {
                Some((_, pts)) => pts.extend(points.iter().cloned()),
                None => grouped.push((ns, points.clone())),
            }
        }
        let open_one = |(ns, points): &(&NetNs, Vec<TapPoint>)| -> Result<NsTap, ProbeError> {
            ns.enter_current_thread()?;
            let tap_err = |what: String, source| ProbeError::Tap {
                ns: ns.name().to_string(),
                what,
                source,
            };
            // A point on an interface that does not exist would silently see nothing.
            for p in points {
                if let Some(ifname) = &p.ifname {
                    sys::ifindex_of(ifname)
                        .map_err(|e| tap_err(format!("point {}: interface {ifname}", p.id), e))?;
                }
            }
            let ring = sys::PacketRing::open()
                .map_err(|e| tap_err("opening an AF_PACKET ring".into(), e))?;
            Ok(NsTap {
                ns: ns.name().to_string(),
                ring,
                points: points.clone(),
                ifnames: HashMap::new(),
            })
        };
        let chunk = grouped.len().div_ceil(8).max(1);
        let opened: Vec<Result<NsTap, ProbeError>> = std::thread::scope(|s| {
            let threads: Vec<_> = grouped
                .chunks(chunk)
                // Each thread is ours alone: it may switch namespaces.
                .map(|part| s.spawn(move || part.iter().map(open_one).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|t| {
                    t.join().unwrap_or_else(|_| {
                        vec![Err(ProbeError::Runtime {
                            what: "opening taps",
                            source: std::io::Error::other("a tap thread panicked"),
                        })]
                    })
                })
                .collect()
        });
        let taps = opened
            .into_iter()
            .collect::<Result<Vec<NsTap>, ProbeError>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let reader = std::thread::Builder::new()
            .name("cnlab-tap".into())
            .spawn(move || read_until_stopped(taps, &flag, sink))
            .map_err(|source| ProbeError::Runtime {
                what: "starting the tap reader",
                source,
            })?;
        Ok(Taps {
            stop,
            reader: Some(reader),
        })
    }

    /// Stops reading (after taking what is already queued) and returns every
    /// capture, ordered by time.
    pub fn stop(mut self) -> Vec<Capture> {
        self.finish()
    }

    fn finish(&mut self) -> Vec<Capture> {
        self.stop.store(true, Ordering::SeqCst);
        self.reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Taps {
    fn drop(&mut self) {
        self.finish();
    }
}

fn read_until_stopped(
    mut taps: Vec<NsTap>,
    stop: &AtomicBool,
    sink: Option<std::sync::mpsc::Sender<Capture>>,
) -> Vec<Capture> {
    let mut out = Vec::new();
    let fds: Vec<RawFd> = taps.iter().map(|t| t.ring.raw_fd()).collect();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let ready = if stopping {
            (0..taps.len()).collect()
        } else {
            match sys::poll_readable(&fds, POLL_MS) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("polling taps: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(POLL_MS as u64));
                    Vec::new()
                }
            }
        };
        for i in ready {
            // When stopping, drain completely; otherwise take a batch.
            let limit = if stopping { usize::MAX } else { BATCH };
            drain(&mut taps[i], &mut out, limit);
        }
        if let Some(tx) = &sink {
            out.sort_by_key(|c| c.ts_ns);
            // The receiver gone (the capture ended) stops the reader too.
            if out.drain(..).any(|c| tx.send(c).is_err()) {
                break;
            }
        }
        if stopping {
            break;
        }
    }
    // Closing a packet socket waits for an RCU grace period (tens of ms
    // each): let that happen behind the caller's back.
    std::thread::spawn(move || drop(taps));
    out.sort_by_key(|c| c.ts_ns);
    out
}

fn drain(tap: &mut NsTap, out: &mut Vec<Capture>, limit: usize) {
    for _ in 0..limit {
        let mut seen = None;
        if !tap.ring.next_frame(|bytes, frame| {
            seen = decode_frame(bytes).or_else(|| decode_arp(bytes)).map(|d| {
                (
                    d,
                    frame.ifindex,
                    frame.outgoing,
                    frame.ts_ns,
                    frame.vlan_tci,
                    with_tag(bytes, frame.vlan_tci),
                )
            })
        }) {
            return;
        }
        let Some((d, ifindex, outgoing, ts_ns, vlan_tci, bytes)) = seen else {
            continue;
        };
        let Some((point, ifname)) = tap.point_of(ifindex) else {
            continue;
        };
        out.push(Capture {
            ts_ns,
            ns: tap.ns.clone(),
            ifname,
            outgoing,
            point,
            // A tag in metadata is the outer one; an inline tag comes after it.
            vlan: vlan_tci.map(|tci| tci & 0x0fff).or(d.vlan),
            src: d.src,
            dst: d.dst,
            proto: d.proto,
            sport: d.sport,
            dport: d.dport,
            icmp_id: d.icmp_id,
            encap: d.encap,
            tcp_flags: d.tcp_flags,
            icmp_type: d.icmp_type,
            ip_id: d.ip_id,
            arp: d.arp,
            frame: bytes,
        });
    }
}

/// The frame with the VLAN tag the kernel stripped into metadata put back
/// after the MAC addresses, as it was on the wire.
fn with_tag(bytes: &[u8], tci: Option<u16>) -> Vec<u8> {
    match tci {
        Some(tci) if bytes.len() >= 12 => {
            let mut f = Vec::with_capacity(bytes.len() + 4);
            f.extend_from_slice(&bytes[..12]);
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&tci.to_be_bytes());
            f.extend_from_slice(&bytes[12..]);
            f
        }
        _ => bytes.to_vec(),
    }
}
