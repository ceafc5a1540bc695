//! STUB
use super::{KernelError, NetNs};
use crate::plan::{Backends, LabPlan, RoutePlan};
pub mod build { use super::*; pub fn build(_p: &LabPlan, _ns: &[NetNs]) -> Result<(), KernelError> { todo!() } pub fn teardown(_n: &[String]) {} }
pub mod nft { use super::*; pub fn apply(_ns: &NetNs, _s: &str) -> Result<(), KernelError> { todo!() } pub fn list_ruleset(_ns: &NetNs) -> Result<String, KernelError> { todo!() } pub fn list_ruleset_json(_ns: &NetNs) -> Result<serde_json::Value, KernelError> { todo!() } }
pub mod netlink { use super::*; pub struct Netlink; impl Netlink { pub fn open() -> Result<Netlink, KernelError> { todo!() } pub fn add_route(&mut self, _r: &RoutePlan) -> Result<(), KernelError> { todo!() } pub fn del_route(&mut self, _r: &RoutePlan) -> Result<(), KernelError> { todo!() } } }
pub mod caps { use super::*;
  #[derive(Debug, Clone, Default)] pub struct Capabilities { pub vlan: bool, pub ipvlan: bool, pub dummy: bool, pub macvlan: bool, pub vxlan: bool, pub bridge: bool, pub veth: bool, pub ipvs: bool, pub nft: bool, pub nft_nat: bool, pub conntrack: bool, pub cls_bpf: bool, pub policy_routing: bool, pub details: Vec<(String,String)> }
  #[derive(Debug, Clone, Copy)] pub enum BackendChoice { Auto, Native, Portable }
  pub fn probe() -> Result<Capabilities, KernelError> { todo!() }
  pub fn choose(_c: &Capabilities, _b: BackendChoice) -> Result<Backends, String> { todo!() }
  pub fn render(_c: &Capabilities, _b: &Backends) -> String { todo!() } }
