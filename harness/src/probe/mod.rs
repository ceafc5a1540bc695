//! STUB
use crate::kernel::NetNs;
use crate::plan::ServerPlan;
use crate::topology::model::{Proto, Verdict};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
#[derive(Debug, thiserror::Error)]
pub enum ProbeError { #[error("{0}")] Io(String) }
pub struct EchoServers;
impl EchoServers { pub fn start(_s: &[(&NetNs, ServerPlan)]) -> Result<EchoServers, ProbeError> { todo!() } }
pub struct ProbeSpec { pub id: String, pub proto: Proto, pub dst: Ipv4Addr, pub port: u16, pub src_port: Option<u16>, pub deadline: Duration }
#[derive(Debug, Clone)]
pub struct ProbeOutcome { pub verdict: Verdict, pub local: Option<SocketAddrV4>, pub seen_peer: Option<SocketAddrV4>, pub served_by: Option<String>, pub detail: String, pub elapsed: Duration }
pub fn probe(_ns: &NetNs, _s: &ProbeSpec) -> ProbeOutcome { todo!() }
pub struct TapPoint { pub id: String, pub ifname: Option<String> }
pub struct Taps;
#[derive(Debug, Clone)]
pub struct Capture { pub ts_ns: u128, pub ns: String, pub ifname: String, pub outgoing: bool, pub point: String, pub vlan: Option<u16>, pub src: Ipv4Addr, pub dst: Ipv4Addr, pub proto: u8, pub sport: u16, pub dport: u16, pub icmp_id: Option<u16>, pub encap: Option<String> }
impl Taps { pub fn open(_t: &[(&NetNs, Vec<TapPoint>)]) -> Result<Taps, ProbeError> { todo!() } pub fn stop(self) -> Vec<Capture> { todo!() } }
#[derive(Debug, Clone)]
pub struct Hop { pub point: String, pub vlan: Option<u16>, pub src: Ipv4Addr, pub dst: Ipv4Addr, pub encap: Option<String> }
pub fn hops(_c: &[Capture], _p: Proto, _port: u16) -> (Vec<Hop>, Vec<Hop>) { todo!() }
