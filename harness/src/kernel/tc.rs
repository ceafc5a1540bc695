//! ENI trunking with tc eBPF programs (`bpf/vlan.c`, built by `build.rs`).
//!
//! This kernel has no 802.1Q VLAN devices and no tc vlan/flower actions, so
//! the trunk ENI's tagging runs as cls_bpf programs loaded with aya:
//!
//! - node side ([`attach_trunk`]): egress of the trunk link pushes the VLAN
//!   id of the member ENI that owns the source address; ingress pops it;
//! - cloud side ([`attach_hv`], namespace `hv/<node>`): the link from the
//!   node's trunk demultiplexes VLAN id → member ENI link, and every member
//!   ENI link multiplexes back onto the trunk with its VLAN id.
//!
//! Programs attach as TCX links (Linux ≥ 6.6). A TCX link lives exactly as
//! long as its file descriptor: the handles below own them, and dropping a
//! handle (or the process exiting) detaches and unloads everything. Nothing is
//! pinned. `tc filter show` does not list TCX programs; `bpftool link` and
//! `bpftool net` do. A `clsact` qdisc is still added (TCX does not need it) so
//! `tc qdisc show` inside a node looks the way it does under Terway.
//!
//! Attaching resolves interface names and creates the link in the namespace
//! of the calling thread, so it runs inside [`NetNs::run`].
//!
//! L2 addressing on a trunk (for whoever plans trunk pods): pod IPs are not
//! local on the node, so the node's ARP for a member vSwitch gateway goes out
//! with a *node* address as sender and therefore untagged; and the node keeps
//! one neighbour entry per gateway on the trunk, shared by every member ENI
//! behind it. Do what Terway's datapath does instead of relying on ARP: a
//! permanent neighbour `<gw> lladdr ee:ff:ff:ff:ff:ff dev <trunk>` on the node,
//! the MAC `ee:ff:ff:ff:ff:ff` on every member ENI's cloud-side link (so every
//! member accepts the frame), and proxy ARP towards pod IPs where needed.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{self as aya_tc, SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;

use super::{KernelError, NetNs};

/// The compiled object (`bpf/vlan.c`).
fn vlan_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vlan.o"))
}

const PROG_TRUNK_EGRESS: &str = "trunk_egress";
const PROG_VLAN_POP: &str = "vlan_pop";
const PROG_HV_DEMUX: &str = "hv_demux";
const PROG_HV_MUX: &str = "hv_mux";
const PROG_PROBE: &str = "probe_pass";

const MAP_SRC_VLAN: &str = "src_vlan";
const MAP_VLAN_IFINDEX: &str = "vlan_ifindex";
const MAP_IFINDEX_VLAN: &str = "ifindex_vlan";
const MAP_TRUNK_IFINDEX: &str = "trunk_ifindex";

/// Usable 802.1Q VLAN ids (0 means "priority tag only", 4095 is reserved).
pub const VLAN_IDS: std::ops::RangeInclusive<u16> = 1..=4094;

/// One loaded copy of `vlan.o`: its maps and programs, and through the
/// programs every TCX link attached from it. Dropping it detaches the links,
/// unloads the programs and frees the maps (aya closes every descriptor).
pub struct VlanPrograms {
    bpf: Ebpf,
    /// What these programs serve, for error messages: `trunk eth1 in cnl-x-node1`.
    owner: String,
}

impl std::fmt::Debug for VlanPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VlanPrograms")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl VlanPrograms {
    /// Loads the object (creates its maps) and verifies the named programs.
    pub fn load(owner: impl Into<String>, programs: &[&str]) -> Result<VlanPrograms, KernelError> {
        let owner = owner.into();
        // The programs read only `__sk_buff` fields and call helpers: no
        // CO-RE relocation needs the kernel's BTF, and parsing it (several
        // MB) would cost ~70 ms on every load.
        let bpf = aya::EbpfLoader::new()
            .btf(None)
            .load(vlan_object())
            .map_err(|e| KernelError::new(format!("{owner}: loading vlan.o: {}", chain(&e))))?;
        let mut me = VlanPrograms { bpf, owner };
        for name in programs {
            let prog = me.classifier(name)?;
            prog.load().map_err(|e| {
                KernelError::new(format!(
                    "{}: loading program {name}: {}",
                    me.owner,
                    chain(&e)
                ))
            })?;
        }
        Ok(me)
    }

    fn classifier(&mut self, name: &str) -> Result<&mut SchedClassifier, KernelError> {
        let owner = &self.owner;
        let prog = self
            .bpf
            .program_mut(name)
            .ok_or_else(|| KernelError::new(format!("{owner}: vlan.o has no program {name}")))?;
        prog.try_into().map_err(|e: aya::programs::ProgramError| {
            KernelError::new(format!("{owner}: program {name}: {}", chain(&e)))
        })
    }

    /// Attaches the (loaded) program `name` to `ifname` inside `ns`, adding a
    /// clsact qdisc first if the link has none.
    fn attach(
        &mut self,
        ns: &NetNs,
        name: &str,
        ifname: &str,
        dir: TcAttachType,
    ) -> Result<SchedClassifierLinkId, KernelError> {
        let owner = self.owner.clone();
        let prog = self.classifier(name)?;
        let at = |what: &str, e: &dyn std::fmt::Display| {
            KernelError::new(format!(
                "{owner}: {what} {name} on {ifname} ({}) in namespace {}: {e}",
                dir_name(dir),
                ns.name()
            ))
        };
        ns.run(|| {
            match aya_tc::qdisc_add_clsact(ifname) {
                Ok(()) => {}
                Err(aya_tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {
                }
                Err(e) => return Err(at("adding clsact for", &chain(&e))),
            }
            // Always TCX: a legacy netlink filter would outlive the process,
            // and aya would detach it from the namespace of whichever thread
            // drops the link — the root namespace, typically.
            prog.attach_with_options(ifname, dir, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .map_err(|e| {
                    at(
                        "attaching",
                        &format!("{} (TCX links need Linux >= 6.6)", chain(&e)),
                    )
                })
        })?
    }

    fn detach(&mut self, name: &str, link: SchedClassifierLinkId) -> Result<(), KernelError> {
        let owner = self.owner.clone();
        self.classifier(name)?
            .detach(link)
            .map_err(|e| KernelError::new(format!("{owner}: detaching {name}: {}", chain(&e))))
    }

    fn take_hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &str,
    ) -> Result<BpfHashMap<MapData, K, V>, KernelError> {
        let map = self
            .bpf
            .take_map(name)
            .ok_or_else(|| KernelError::new(format!("{}: vlan.o has no map {name}", self.owner)))?;
        BpfHashMap::try_from(map)
            .map_err(|e| KernelError::new(format!("{}: map {name}: {}", self.owner, chain(&e))))
    }

    fn take_array<V: aya::Pod>(&mut self, name: &str) -> Result<Array<MapData, V>, KernelError> {
        let map = self
            .bpf
            .take_map(name)
            .ok_or_else(|| KernelError::new(format!("{}: vlan.o has no map {name}", self.owner)))?;
        Array::try_from(map)
            .map_err(|e| KernelError::new(format!("{}: map {name}: {}", self.owner, chain(&e))))
    }
}

/// The node side of a trunk ENI: `trunk_egress` on egress, `vlan_pop` on
/// ingress, and the pod address → VLAN id map. Drop detaches both.
#[derive(Debug)]
pub struct TrunkHandle {
    progs: VlanPrograms,
    src_vlan: BpfHashMap<MapData, u32, u16>,
    pods: BTreeMap<Ipv4Addr, u16>,
}

/// Tags traffic leaving `trunk_if` (a link in `ns`) with the VLAN id of the
/// pod whose address is its source (IPv4 source, or ARP sender address).
pub fn attach_trunk(
    ns: &NetNs,
    trunk_if: &str,
    pods: &[(Ipv4Addr, u16)],
) -> Result<TrunkHandle, KernelError> {
    let owner = format!("trunk {trunk_if} in {}", ns.name());
    let mut progs = VlanPrograms::load(owner, &[PROG_TRUNK_EGRESS, PROG_VLAN_POP])?;
    let src_vlan = progs.take_hash(MAP_SRC_VLAN)?;
    let mut handle = TrunkHandle {
        progs,
        src_vlan,
        pods: BTreeMap::new(),
    };
    // Map first, then programs: the first tagged frame already finds its entry.
    for &(ip, vid) in pods {
        handle.add_pod(ip, vid)?;
    }
    handle
        .progs
        .attach(ns, PROG_TRUNK_EGRESS, trunk_if, TcAttachType::Egress)?;
    handle
        .progs
        .attach(ns, PROG_VLAN_POP, trunk_if, TcAttachType::Ingress)?;
    Ok(handle)
}

impl TrunkHandle {
    /// Tags frames from `ip` with `vid` from now on (replaces an earlier id).
    pub fn add_pod(&mut self, ip: Ipv4Addr, vid: u16) -> Result<(), KernelError> {
        check_vid(vid, || format!("{}: pod {ip}", self.progs.owner))?;
        self.src_vlan.insert(be_addr(ip), vid, 0).map_err(|e| {
            KernelError::new(format!(
                "{}: mapping pod {ip} to VLAN {vid}: {}",
                self.progs.owner,
                chain(&e)
            ))
        })?;
        self.pods.insert(ip, vid);
        Ok(())
    }

    /// Stops tagging frames from `ip`. Returns whether it was mapped.
    pub fn remove_pod(&mut self, ip: Ipv4Addr) -> Result<bool, KernelError> {
        if self.pods.remove(&ip).is_none() {
            return Ok(false);
        }
        self.src_vlan.remove(&be_addr(ip)).map_err(|e| {
            KernelError::new(format!(
                "{}: unmapping pod {ip}: {}",
                self.progs.owner,
                chain(&e)
            ))
        })?;
        Ok(true)
    }

    /// Pod address → VLAN id, as currently mapped.
    pub fn pods(&self) -> &BTreeMap<Ipv4Addr, u16> {
        &self.pods
    }
}

/// A member ENI as the hv namespace sees it.
#[derive(Debug)]
struct Member {
    ifindex: u32,
    vid: u16,
    link: SchedClassifierLinkId,
}

/// The cloud side of a trunk ENI in `hv/<node>`: `hv_demux` on the link
/// from the node's trunk, `hv_mux` on every member ENI link. Drop detaches all.
pub struct HvHandle {
    progs: VlanPrograms,
    ns: NetNs,
    vlan_ifindex: BpfHashMap<MapData, u16, u32>,
    ifindex_vlan: BpfHashMap<MapData, u32, u16>,
    /// Set once; kept so every map of the object lives as long as the handle.
    _trunk_ifindex: Array<MapData, u32>,
    members: BTreeMap<String, Member>,
}

/// Demultiplexes the tagged traffic arriving on `trunk_side_if` (in `ns`)
/// to member ENI links by VLAN id, and tags what the member links send back.
/// `members`: (member ENI link in `ns`, its VLAN id).
pub fn attach_hv(
    ns: &NetNs,
    trunk_side_if: &str,
    members: &[(String, u16)],
) -> Result<HvHandle, KernelError> {
    let owner = format!("hv trunk {trunk_side_if} in {}", ns.name());
    let mut progs = VlanPrograms::load(owner.clone(), &[PROG_HV_DEMUX, PROG_HV_MUX])?;
    let vlan_ifindex = progs.take_hash(MAP_VLAN_IFINDEX)?;
    let ifindex_vlan = progs.take_hash(MAP_IFINDEX_VLAN)?;
    let mut trunk_ifindex: Array<MapData, u32> = progs.take_array(MAP_TRUNK_IFINDEX)?;
    let own_ns = NetNs::open(ns.name())?;
    let trunk_idx = ifindex_in(&own_ns, trunk_side_if)?;
    trunk_ifindex
        .set(0, trunk_idx, 0)
        .map_err(|e| KernelError::new(format!("{owner}: setting trunk ifindex: {}", chain(&e))))?;
    let mut handle = HvHandle {
        progs,
        ns: own_ns,
        vlan_ifindex,
        ifindex_vlan,
        _trunk_ifindex: trunk_ifindex,
        members: BTreeMap::new(),
    };
    for (link, vid) in members {
        handle.add_member(link, *vid)?;
    }
    handle.progs.attach(
        &handle.ns,
        PROG_HV_DEMUX,
        trunk_side_if,
        TcAttachType::Ingress,
    )?;
    Ok(handle)
}

impl std::fmt::Debug for HvHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HvHandle")
            .field("programs", &self.progs)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl HvHandle {
    /// Connects member ENI link `link` (in the hv namespace) as VLAN `vid`.
    pub fn add_member(&mut self, link: &str, vid: u16) -> Result<(), KernelError> {
        let owner = self.progs.owner.clone();
        check_vid(vid, || format!("{owner}: member {link}"))?;
        if self.members.contains_key(link) {
            return Err(KernelError::new(format!(
                "{owner}: member {link} is already connected"
            )));
        }
        if let Some((other, _)) = self.members.iter().find(|(_, m)| m.vid == vid) {
            return Err(KernelError::new(format!(
                "{owner}: VLAN {vid} of member {link} is already used by {other}"
            )));
        }
        let ifindex = ifindex_in(&self.ns, link)?;
        let map_err = |what: &str, e: &dyn StdError| {
            KernelError::new(format!(
                "{owner}: {what} member {link} (VLAN {vid}): {}",
                chain(e)
            ))
        };
        self.ifindex_vlan
            .insert(ifindex, vid, 0)
            .map_err(|e| map_err("mapping", &e))?;
        if let Err(e) = self.vlan_ifindex.insert(vid, ifindex, 0) {
            let _ = self.ifindex_vlan.remove(&ifindex);
            return Err(map_err("mapping", &e));
        }
        match self
            .progs
            .attach(&self.ns, PROG_HV_MUX, link, TcAttachType::Ingress)
        {
            Ok(id) => {
                self.members.insert(
                    link.to_string(),
                    Member {
                        ifindex,
                        vid,
                        link: id,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.vlan_ifindex.remove(&vid);
                let _ = self.ifindex_vlan.remove(&ifindex);
                Err(e)
            }
        }
    }

    /// Disconnects member `link`: its VLAN becomes unknown (dropped) and its
    /// link no longer reaches the trunk. Returns whether it was connected.
    pub fn remove_member(&mut self, link: &str) -> Result<bool, KernelError> {
        let Some(m) = self.members.remove(link) else {
            return Ok(false);
        };
        let owner = self.progs.owner.clone();
        let map_err = |e: &dyn StdError| {
            KernelError::new(format!(
                "{owner}: unmapping member {link} (VLAN {}): {}",
                m.vid,
                chain(e)
            ))
        };
        self.vlan_ifindex.remove(&m.vid).map_err(|e| map_err(&e))?;
        self.ifindex_vlan
            .remove(&m.ifindex)
            .map_err(|e| map_err(&e))?;
        self.progs.detach(PROG_HV_MUX, m.link)?;
        Ok(true)
    }

    /// Member link → VLAN id, as currently connected.
    pub fn members(&self) -> BTreeMap<String, u16> {
        self.members
            .iter()
            .map(|(k, m)| (k.clone(), m.vid))
            .collect()
    }
}

/// Whether tc BPF programs can be loaded and attached (TCX) here: loads the
/// object and attaches a pass-through program to `lo` in `ns` (a scratch
/// namespace), then removes it again.
pub fn cls_bpf_available(ns: &NetNs) -> bool {
    probe_cls_bpf(ns).is_ok()
}

/// [`cls_bpf_available`] with the reason when it is not.
pub fn probe_cls_bpf(ns: &NetNs) -> Result<(), KernelError> {
    let mut progs = VlanPrograms::load(format!("cls_bpf probe in {}", ns.name()), &[PROG_PROBE])?;
    progs.attach(ns, PROG_PROBE, "lo", TcAttachType::Ingress)?;
    Ok(())
}

fn check_vid(vid: u16, what: impl FnOnce() -> String) -> Result<(), KernelError> {
    if VLAN_IDS.contains(&vid) {
        Ok(())
    } else {
        Err(KernelError::new(format!(
            "{}: VLAN id {vid} is outside {}..={}",
            what(),
            VLAN_IDS.start(),
            VLAN_IDS.end()
        )))
    }
}

/// The map key for an address: its bytes in network order, as the program
/// reads them out of the packet.
fn be_addr(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn ifindex_in(ns: &NetNs, ifname: &str) -> Result<u32, KernelError> {
    let res = ns.run(|| nix::net::if_::if_nametoindex(ifname))?;
    res.map_err(|e| {
        KernelError::new(format!(
            "interface {ifname} in namespace {}: {e}",
            ns.name()
        ))
    })
}

fn dir_name(dir: TcAttachType) -> &'static str {
    match dir {
        TcAttachType::Ingress => "ingress",
        TcAttachType::Egress => "egress",
        TcAttachType::Custom(_) => "custom parent",
    }
}

/// An error with its sources (aya nests the errno and verifier log).
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let more = src.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        cur = src.source();
    }
    s
}
