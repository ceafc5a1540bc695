//! ENI trunking with tc eBPF programs (`bpf/vlan.c`, built by `build.rs`).
//!
//! This kernel has no 802.1Q VLAN devices and no tc vlan/flower actions, so
//! the trunk ENI's tagging runs as tc programs:
//!
//! - node side ([`VlanPrograms::attach_trunk`]): egress of the trunk link
//!   pushes the VLAN id of the member ENI that owns the source address;
//!   ingress pops it;
//! - cloud side ([`VlanPrograms::attach_hv`], namespace `hv/<node>`, the
//!   hypervisor): both programs sit on the hv end of the node's trunk link
//!   (`trunk`), and the hv namespace *routes*. Every member ENI's link
//!   `m<vid>` is a veth to the VPC router; hv has `ip_forward=1`, a rule
//!   `iif trunk fwmark <vid> lookup <1000+vid>` whose table sends the
//!   member's traffic out of `m<vid>`, and `<pod IP>/32 dev trunk` (with a
//!   permanent neighbour to the node's trunk MAC) for the way back.
//!   - ingress, `hv_demux`: untagged frames are the trunk ENI's own (native)
//!     traffic and pass as they are; a VLAN id no member owns is dropped;
//!     otherwise the tag is popped and the VLAN id becomes the packet's mark
//!     (`skb->mark`) for the hv stack to route by (and nft to pick the
//!     security group's conntrack zone by).
//!   - ingress, ARP: a tagged ARP request on a member's VLAN (neither
//!     gratuitous nor an address probe from 0.0.0.0, whose answer would
//!     report a conflict) is answered by the program itself, as Alibaba's
//!     vSwitch answers every ARP: with `ee:ff:ff:ff:ff:ff`, the MAC of the
//!     hv end of the trunk. The reply keeps the tag and goes straight back
//!     out of the trunk link. With real CNI plugins (the `vlan` plugin) the pod's own
//!     stack ARPs for its gateway on its VLAN; there is no VLAN device in hv
//!     to answer, and a reply from the hv stack would leave untagged.
//!   - egress, `hv_mux`: a packet hv forwards from a member ENI link
//!     (`skb->ingress_ifindex`) gets that member's VLAN id pushed; one it
//!     forwards from any other link (a removed member's) is dropped, as the
//!     cloud hands the node nothing of a detached ENI; frames already tagged
//!     (those ARP replies) and what hv itself sends leave as they are.
//!
//!   Member ENI links carry no program: a member is two map entries
//!   ([`HvHandle::add_member`], [`HvHandle::remove_member`]).
//!
//! **One load per lab.** [`VlanPrograms`] loads and verifies the object once;
//! every trunk and hypervisor of the lab attaches the same programs, and the
//! maps are keyed by interface index (unique across a lab's namespaces: the
//! builder numbers every veth end). Loading was most of a trunk lab's
//! bring-up when each attachment had its own copy.
//!
//! **Two ways to attach** ([`TcAttach`]), both bound to the *link*, not to
//! this process: a classic cls_bpf filter on the clsact qdisc (netlink, any
//! kernel since 4.5) or a TCX attachment (`BPF_PROG_ATTACH`, Linux ≥ 6.6,
//! without a link fd). Either lives until the link goes, so a lab is torn
//! down by deleting its namespaces — the kernel drops the programs with the
//! links, in one batch — and nothing is detached link by link. A killed
//! process leaves them attached inside its namespaces until `cnlab gc`
//! deletes those. Dropping a handle only closes descriptors; [`TrunkHandle::
//! detach`] and [`HvHandle::detach`] remove the hooks of a lab that stays up.
//!
//! Measured on this machine (`harness/tests/bpf_vlan.rs` prints it): a TCX
//! attach or detach waits for an RCU grace period while holding RTNL
//! (`tcx_entry_sync`), 8–16 ms each and serial machine-wide, whatever the
//! number of threads; a cls_bpf filter is added in ~0.1 ms. That is why
//! `auto` uses cls_bpf filters and TCX is there to choose.
//!
//! L2 addressing on a trunk (for whoever plans trunk pods): pod IPs are not
//! local on the node, so the node's ARP for a member vSwitch gateway would go
//! out with a *node* address as sender and therefore untagged; and the node
//! keeps one neighbour entry per gateway on the trunk, shared by every member
//! ENI behind it. Do what Terway's datapath does instead of relying on ARP: a
//! permanent neighbour `<gw> lladdr ee:ff:ff:ff:ff:ff dev <trunk>` on the node
//! and the MAC `ee:ff:ff:ff:ff:ff` on the hv end of the trunk, so the hv stack
//! accepts what the node sends to any gateway. ARP that does arrive tagged (a
//! pod's own stack on its VLAN) is answered by `hv_demux` with that MAC.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::{ProgramFd, SchedClassifier};
use serde::{Deserialize, Serialize};

use super::netlink::{Netlink, TcHook};
use super::{KernelError, NetNs};

/// The compiled object (`bpf/vlan.c`).
fn vlan_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vlan.o"))
}

/// Usable 802.1Q VLAN ids (0 means "priority tag only", 4095 is reserved).
pub const VLAN_IDS: std::ops::RangeInclusive<u16> = 1..=4094;

/// Priority and handle of our cls_bpf filters: one per hook of a link.
const FILTER_PRIO: u16 = 1;
const FILTER_HANDLE: u32 = 1;

/// How the programs are hooked to links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TcAttach {
    /// Classic cls_bpf filter on the clsact qdisc, added over netlink
    /// (`tc filter add … bpf da`): every kernel; no RCU wait per attach.
    #[default]
    Netlink,
    /// TCX attachment (Linux ≥ 6.6): each attach waits for an RCU grace period.
    Tcx,
}

impl TcAttach {
    pub fn name(self) -> &'static str {
        match self {
            TcAttach::Netlink => "netlink",
            TcAttach::Tcx => "tcx",
        }
    }

    /// What `cnlab doctor` and reports say.
    pub fn describe(self) -> &'static str {
        match self {
            TcAttach::Netlink => "cls_bpf filters on clsact (netlink)",
            TcAttach::Tcx => "TCX attachments (bpf_mprog, Linux >= 6.6)",
        }
    }
}

impl TcAttach {
    /// `CNLAB_TC_ATTACH=netlink|tcx`, when set (tests select a mode with it).
    pub fn from_env() -> Result<Option<TcAttach>, String> {
        match std::env::var("CNLAB_TC_ATTACH") {
            Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => v
                .parse()
                .map(Some)
                .map_err(|e| format!("CNLAB_TC_ATTACH: {e}")),
            _ => Ok(None),
        }
    }
}

impl std::str::FromStr for TcAttach {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "netlink" | "cls_bpf" | "legacy" => Ok(TcAttach::Netlink),
            "tcx" => Ok(TcAttach::Tcx),
            other => Err(format!("unknown tc attach mode {other:?} (netlink, tcx)")),
        }
    }
}

/// The programs of `vlan.o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prog {
    TrunkEgress,
    VlanPop,
    HvDemux,
    HvMux,
    Probe,
}

impl Prog {
    pub const VLAN: [Prog; 4] = [Prog::TrunkEgress, Prog::VlanPop, Prog::HvDemux, Prog::HvMux];

    pub fn name(self) -> &'static str {
        match self {
            Prog::TrunkEgress => "trunk_egress",
            Prog::VlanPop => "vlan_pop",
            Prog::HvDemux => "hv_demux",
            Prog::HvMux => "hv_mux",
            Prog::Probe => "probe_pass",
        }
    }
}

/// Map keys and values, laid out as `vlan.c` declares them.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TrunkKey {
    ifindex: u32,
    addr: u32,
}
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DemuxKey {
    ifindex: u32,
    vid: u32,
}
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MemberVal {
    vid: u32,
    trunk_ifindex: u32,
}
// SAFETY: plain `repr(C)` integers without padding.
unsafe impl aya::Pod for TrunkKey {}
unsafe impl aya::Pod for DemuxKey {}
unsafe impl aya::Pod for MemberVal {}

struct Maps {
    src_vlan: BpfHashMap<MapData, TrunkKey, u16>,
    vlan_ifindex: BpfHashMap<MapData, DemuxKey, u32>,
    ifindex_vlan: BpfHashMap<MapData, u32, MemberVal>,
}

/// One loaded, verified copy of `vlan.o` for a whole lab: its programs (by
/// descriptor) and maps. Dropping it closes descriptors only: attached
/// programs stay with their links until the links go.
pub struct VlanPrograms {
    owner: String,
    mode: TcAttach,
    progs: BTreeMap<Prog, ProgramFd>,
    maps: Mutex<Option<Maps>>,
}

impl std::fmt::Debug for VlanPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VlanPrograms")
            .field("owner", &self.owner)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// One program hooked to one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub ifname: String,
    pub ifindex: u32,
    pub hook: TcHook,
    pub prog: Prog,
}

/// Runs `f` with the process's one object loader.
///
/// The programs read only `__sk_buff` fields and call helpers: no CO-RE
/// relocation needs the kernel's BTF, hence `.btf(None)`. But aya 0.14's
/// `EbpfLoader::new()` parses `/sys/kernel/btf/vmlinux` (several MB, ~25 ms
/// here) before `.btf(None)` can discard it, so a loader is made once per
/// process and reused: the second trunk lab of a `check -j` loads without it.
fn with_loader<R>(f: impl FnOnce(&mut aya::EbpfLoader<'static>) -> R) -> R {
    static LOADER: Mutex<Option<aya::EbpfLoader<'static>>> = Mutex::new(None);
    let mut g = LOADER.lock().unwrap_or_else(|p| p.into_inner());
    let loader = g.get_or_insert_with(|| {
        let mut l = aya::EbpfLoader::new();
        l.btf(None);
        l
    });
    f(loader)
}

impl VlanPrograms {
    /// Loads the object (creates its maps) and verifies `programs`, once.
    pub fn load(
        owner: impl Into<String>,
        mode: TcAttach,
        programs: &[Prog],
    ) -> Result<Arc<VlanPrograms>, KernelError> {
        let owner = owner.into();
        let mut bpf = with_loader(|l| l.load(vlan_object()))
            .map_err(|e| KernelError::new(format!("{owner}: loading vlan.o: {}", chain(&e))))?;
        let mut progs = BTreeMap::new();
        for p in programs {
            let name = p.name();
            let prog: &mut SchedClassifier = bpf
                .program_mut(name)
                .ok_or_else(|| KernelError::new(format!("{owner}: vlan.o has no program {name}")))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| {
                    KernelError::new(format!("{owner}: program {name}: {}", chain(&e)))
                })?;
            let err = |e: &dyn StdError| {
                KernelError::new(format!("{owner}: loading program {name}: {}", chain(e)))
            };
            prog.load().map_err(|e| err(&e))?;
            // Our own descriptor: the `Ebpf` and its bookkeeping go below.
            let fd = prog
                .fd()
                .map_err(|e| err(&e))?
                .try_clone()
                .map_err(|e| err(&e))?;
            progs.insert(*p, fd);
        }
        let maps = if programs.iter().any(|p| Prog::VLAN.contains(p)) {
            Some(Maps {
                src_vlan: take_hash(&mut bpf, &owner, "src_vlan")?,
                vlan_ifindex: take_hash(&mut bpf, &owner, "vlan_ifindex")?,
                ifindex_vlan: take_hash(&mut bpf, &owner, "ifindex_vlan")?,
            })
        } else {
            None
        };
        Ok(Arc::new(VlanPrograms {
            owner,
            mode,
            progs,
            maps: Mutex::new(maps),
        }))
    }

    /// The lab's programs: all four VLAN programs.
    pub fn load_vlan(owner: impl Into<String>, mode: TcAttach) -> Result<Arc<Self>, KernelError> {
        Self::load(owner, mode, &Prog::VLAN)
    }

    pub fn mode(&self) -> TcAttach {
        self.mode
    }

    /// Kernel ids of the loaded programs (for leak checks).
    pub fn program_ids(&self) -> Vec<u32> {
        self.progs
            .values()
            .filter_map(|fd| prog_id(fd.as_fd()))
            .collect()
    }

    fn fd(&self, p: Prog) -> Result<BorrowedFd<'_>, KernelError> {
        self.progs.get(&p).map(|f| f.as_fd()).ok_or_else(|| {
            KernelError::new(format!("{}: program {} not loaded", self.owner, p.name()))
        })
    }

    fn maps(&self) -> Result<MutexGuard<'_, Option<Maps>>, KernelError> {
        self.maps
            .lock()
            .map_err(|_| KernelError::new(format!("{}: map lock poisoned", self.owner)))
    }

    fn with_maps<R>(
        &self,
        f: impl FnOnce(&mut Maps) -> Result<R, aya::maps::MapError>,
        what: impl FnOnce() -> String,
    ) -> Result<R, KernelError> {
        let mut g = self.maps()?;
        let m = g
            .as_mut()
            .ok_or_else(|| KernelError::new(format!("{}: no VLAN maps loaded", self.owner)))?;
        f(m).map_err(|e| KernelError::new(format!("{}: {}: {}", self.owner, what(), chain(&e))))
    }

    /// Hooks `progs` (link, hook, program) in the namespace of the calling
    /// thread, whose netlink socket `nl` is. clsact first, where missing.
    pub fn hook_here(
        &self,
        nl: &mut Netlink,
        hooks: &[Hook],
        ns_name: &str,
    ) -> Result<(), KernelError> {
        let at = |h: &Hook, e: &dyn std::fmt::Display| {
            KernelError::new(format!(
                "{}: attaching {} on {} ({}) in namespace {ns_name}: {e}",
                self.owner,
                h.prog.name(),
                h.ifname,
                h.hook.name()
            ))
        };
        let mut seen: Vec<u32> = Vec::new();
        nl.begin_batch();
        for h in hooks {
            if !seen.contains(&h.ifindex) {
                seen.push(h.ifindex);
                nl.add_clsact(h.ifindex)?;
            }
            if self.mode == TcAttach::Netlink {
                nl.add_bpf_filter(
                    h.ifindex,
                    h.hook,
                    self.fd(h.prog)?,
                    h.prog.name(),
                    FILTER_PRIO,
                    FILTER_HANDLE,
                )?;
            }
        }
        nl.finish_batch().map_err(|e| {
            KernelError::new(format!("{}: in namespace {ns_name}: {e}", self.owner))
        })?;
        if self.mode == TcAttach::Tcx {
            for h in hooks {
                tcx_prog(
                    libc_bpf::BPF_PROG_ATTACH,
                    self.fd(h.prog)?,
                    h.ifindex,
                    h.hook,
                )
                .map_err(|e| at(h, &format!("{e} (TCX needs Linux >= 6.6)")))?;
            }
        }
        Ok(())
    }

    /// Removes hooks again, in the namespace of the calling thread.
    pub fn unhook_here(&self, nl: &mut Netlink, hooks: &[Hook]) -> Result<(), KernelError> {
        for h in hooks {
            let res = match self.mode {
                TcAttach::Netlink => {
                    nl.del_bpf_filter(h.ifindex, h.hook, FILTER_PRIO, FILTER_HANDLE)
                }
                TcAttach::Tcx => tcx_prog(
                    libc_bpf::BPF_PROG_DETACH,
                    self.fd(h.prog)?,
                    h.ifindex,
                    h.hook,
                )
                .map_err(|e| KernelError::new(e.to_string())),
            };
            res.map_err(|e| {
                KernelError::new(format!(
                    "{}: detaching {} from {}: {e}",
                    self.owner,
                    h.prog.name(),
                    h.ifname
                ))
            })?;
        }
        Ok(())
    }

    fn set_pod(&self, trunk: u32, ip: Ipv4Addr, vid: u16) -> Result<(), KernelError> {
        let key = TrunkKey {
            ifindex: trunk,
            addr: be_addr(ip),
        };
        self.with_maps(
            |m| m.src_vlan.insert(key, vid, 0),
            || format!("mapping pod {ip} to VLAN {vid}"),
        )
    }

    fn unset_pod(&self, trunk: u32, ip: Ipv4Addr) -> Result<(), KernelError> {
        let key = TrunkKey {
            ifindex: trunk,
            addr: be_addr(ip),
        };
        self.with_maps(
            |m| m.src_vlan.remove(&key),
            || format!("unmapping pod {ip}"),
        )
    }

    fn set_member(&self, trunk: u32, member: u32, vid: u16) -> Result<(), KernelError> {
        let dk = DemuxKey {
            ifindex: trunk,
            vid: u32::from(vid),
        };
        let mv = MemberVal {
            vid: u32::from(vid),
            trunk_ifindex: trunk,
        };
        self.with_maps(
            |m| {
                m.ifindex_vlan.insert(member, mv, 0)?;
                if let Err(e) = m.vlan_ifindex.insert(dk, member, 0) {
                    let _ = m.ifindex_vlan.remove(&member);
                    return Err(e);
                }
                Ok(())
            },
            || format!("mapping member link {member} to VLAN {vid}"),
        )
    }

    fn unset_member(&self, trunk: u32, member: u32, vid: u16) -> Result<(), KernelError> {
        let dk = DemuxKey {
            ifindex: trunk,
            vid: u32::from(vid),
        };
        self.with_maps(
            |m| {
                m.vlan_ifindex.remove(&dk)?;
                m.ifindex_vlan.remove(&member)
            },
            || format!("unmapping member link {member} (VLAN {vid})"),
        )
    }

    /// Tags traffic leaving `trunk_if` (a link in `ns`) with the VLAN id of
    /// the pod whose address is its source (IPv4 source, or ARP sender).
    pub fn attach_trunk(
        self: &Arc<Self>,
        ns: &NetNs,
        trunk_if: &str,
        pods: &[(Ipv4Addr, u16)],
    ) -> Result<TrunkHandle, KernelError> {
        let what = || format!("trunk {trunk_if} in {}", ns.name());
        for (ip, vid) in pods {
            check_vid(*vid, || format!("{}: pod {ip}", what()))?;
        }
        ns.run(|| -> Result<TrunkHandle, KernelError> {
            let mut nl = Netlink::open()?;
            let ifindex = index_of(&mut nl, trunk_if, ns)?;
            // Map first, then programs: the first tagged frame finds its entry.
            let mut handle = TrunkHandle {
                progs: self.clone(),
                ns: NetNs::open(ns.name())?,
                hooks: vec![
                    hook(trunk_if, ifindex, TcHook::Egress, Prog::TrunkEgress),
                    hook(trunk_if, ifindex, TcHook::Ingress, Prog::VlanPop),
                ],
                ifindex,
                pods: BTreeMap::new(),
            };
            for &(ip, vid) in pods {
                handle.add_pod(ip, vid)?;
            }
            self.hook_here(&mut nl, &handle.hooks, ns.name())?;
            Ok(handle)
        })?
    }

    /// The cloud side of a trunk: hooks `hv_demux` on the ingress and
    /// `hv_mux` on the egress of `trunk_side_if` (in `ns`, the hv end of the
    /// node's trunk link) and maps `members` (member ENI link in `ns`, its
    /// VLAN id). The namespace routes; the programs only translate: a tagged
    /// frame of a member's VLAN is popped and marked with the VLAN id (for
    /// `iif <trunk> fwmark <vid>` rules), a VLAN id nobody owns is dropped,
    /// untagged frames pass; tagged ARP requests on a member's VLAN get the
    /// vSwitch's answer `ee:ff:ff:ff:ff:ff` straight back, still tagged (no
    /// VLAN device in hv could answer, and the hv stack's reply would leave
    /// untagged); what hv forwards from a member link onto the trunk gets
    /// that member's VLAN id. Member links are not hooked: their entries
    /// key the maps by their index.
    pub fn attach_hv(
        self: &Arc<Self>,
        ns: &NetNs,
        trunk_side_if: &str,
        members: &[(String, u16)],
    ) -> Result<HvHandle, KernelError> {
        ns.run(|| -> Result<HvHandle, KernelError> {
            let mut nl = Netlink::open()?;
            let ifindex = index_of(&mut nl, trunk_side_if, ns)?;
            // Map first, then programs: the first tagged frame finds its entry.
            let mut handle = HvHandle {
                progs: self.clone(),
                ns: NetNs::open(ns.name())?,
                trunk: [
                    hook(trunk_side_if, ifindex, TcHook::Ingress, Prog::HvDemux),
                    hook(trunk_side_if, ifindex, TcHook::Egress, Prog::HvMux),
                ],
                members: BTreeMap::new(),
            };
            let res = members
                .iter()
                .try_for_each(|(link, vid)| handle.map_member(&mut nl, link, *vid))
                .and_then(|()| self.hook_here(&mut nl, &handle.trunk, ns.name()));
            if let Err(e) = res {
                // The maps are the lab's: take back what this side put there.
                handle.unmap_all();
                return Err(e);
            }
            Ok(handle)
        })?
    }
}

fn hook(ifname: &str, ifindex: u32, hook: TcHook, prog: Prog) -> Hook {
    Hook {
        ifname: ifname.into(),
        ifindex,
        hook,
        prog,
    }
}

fn index_of(nl: &mut Netlink, ifname: &str, ns: &NetNs) -> Result<u32, KernelError> {
    nl.link_index(ifname)?.ok_or_else(|| {
        KernelError::new(format!(
            "interface {ifname} in namespace {}: No such device",
            ns.name()
        ))
    })
}

/// A lab of its own for one trunk (tests): loads the programs just for it.
pub fn attach_trunk(
    ns: &NetNs,
    trunk_if: &str,
    pods: &[(Ipv4Addr, u16)],
) -> Result<TrunkHandle, KernelError> {
    attach_trunk_with(TcAttach::default(), ns, trunk_if, pods)
}

pub fn attach_trunk_with(
    mode: TcAttach,
    ns: &NetNs,
    trunk_if: &str,
    pods: &[(Ipv4Addr, u16)],
) -> Result<TrunkHandle, KernelError> {
    let progs = VlanPrograms::load(
        format!("trunk {trunk_if} in {}", ns.name()),
        mode,
        &[Prog::TrunkEgress, Prog::VlanPop],
    )?;
    progs.attach_trunk(ns, trunk_if, pods)
}

/// A lab of its own for one hypervisor side (tests).
pub fn attach_hv(
    ns: &NetNs,
    trunk_side_if: &str,
    members: &[(String, u16)],
) -> Result<HvHandle, KernelError> {
    attach_hv_with(TcAttach::default(), ns, trunk_side_if, members)
}

pub fn attach_hv_with(
    mode: TcAttach,
    ns: &NetNs,
    trunk_side_if: &str,
    members: &[(String, u16)],
) -> Result<HvHandle, KernelError> {
    let progs = VlanPrograms::load(
        format!("hv trunk {trunk_side_if} in {}", ns.name()),
        mode,
        &[Prog::HvDemux, Prog::HvMux],
    )?;
    progs.attach_hv(ns, trunk_side_if, members)
}

/// The node side of a trunk ENI: `trunk_egress` on egress, `vlan_pop` on
/// ingress, and its pod address → VLAN id entries.
#[derive(Debug)]
pub struct TrunkHandle {
    progs: Arc<VlanPrograms>,
    ns: NetNs,
    ifindex: u32,
    hooks: Vec<Hook>,
    pods: BTreeMap<Ipv4Addr, u16>,
}

impl TrunkHandle {
    /// Tags frames from `ip` with `vid` from now on (replaces an earlier id).
    pub fn add_pod(&mut self, ip: Ipv4Addr, vid: u16) -> Result<(), KernelError> {
        check_vid(vid, || format!("{}: pod {ip}", self.progs.owner))?;
        self.progs.set_pod(self.ifindex, ip, vid)?;
        self.pods.insert(ip, vid);
        Ok(())
    }

    /// Stops tagging frames from `ip`. Returns whether it was mapped.
    pub fn remove_pod(&mut self, ip: Ipv4Addr) -> Result<bool, KernelError> {
        if self.pods.remove(&ip).is_none() {
            return Ok(false);
        }
        self.progs.unset_pod(self.ifindex, ip)?;
        Ok(true)
    }

    /// Pod address → VLAN id, as currently mapped.
    pub fn pods(&self) -> &BTreeMap<Ipv4Addr, u16> {
        &self.pods
    }

    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    pub fn namespace(&self) -> &str {
        self.ns.name()
    }

    /// Removes both programs from the trunk link and its map entries (a lab
    /// being torn down does not need this: its namespaces take them along).
    pub fn detach(self) -> Result<(), KernelError> {
        for ip in self.pods.keys() {
            self.progs.unset_pod(self.ifindex, *ip)?;
        }
        let progs = self.progs.clone();
        let hooks = self.hooks.clone();
        self.ns.run(move || -> Result<(), KernelError> {
            progs.unhook_here(&mut Netlink::open()?, &hooks)
        })?
    }
}

/// A member ENI as the hv namespace sees it: its link's index and VLAN id.
#[derive(Debug)]
struct Member {
    ifindex: u32,
    vid: u16,
}

/// The cloud side of a trunk ENI in `hv/<node>`: `hv_demux` on the ingress
/// and `hv_mux` on the egress of the hv end of the node's trunk link, and the
/// member ENIs' map entries. hv routes (by the mark `hv_demux` sets); member
/// ENI links carry no program. See the module documentation.
pub struct HvHandle {
    progs: Arc<VlanPrograms>,
    ns: NetNs,
    /// The trunk link's hooks: ingress `hv_demux`, egress `hv_mux`.
    trunk: [Hook; 2],
    members: BTreeMap<String, Member>,
}

impl std::fmt::Debug for HvHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HvHandle")
            .field("programs", &self.progs)
            .field("trunk", &self.trunk)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl HvHandle {
    fn trunk_ifindex(&self) -> u32 {
        self.trunk[0].ifindex
    }

    /// Checks and maps member `link` (a link in the namespace of the calling
    /// thread, whose netlink socket `nl` is).
    fn map_member(&mut self, nl: &mut Netlink, link: &str, vid: u16) -> Result<(), KernelError> {
        let owner = &self.progs.owner;
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
        let ifindex = index_of(nl, link, &self.ns)?;
        self.progs.set_member(self.trunk_ifindex(), ifindex, vid)?;
        self.members
            .insert(link.to_string(), Member { ifindex, vid });
        Ok(())
    }

    /// Forgets every member, removing its entries (errors ignored: cleanup).
    fn unmap_all(&mut self) {
        let trunk = self.trunk_ifindex();
        for m in std::mem::take(&mut self.members).into_values() {
            let _ = self.progs.unset_member(trunk, m.ifindex, m.vid);
        }
    }

    /// Connects member ENI link `link` (in the hv namespace) as VLAN `vid`:
    /// the trunk's frames tagged `vid` are popped and marked `vid` from now
    /// on, and what hv forwards from `link` onto the trunk is tagged `vid`.
    pub fn add_member(&mut self, link: &str, vid: u16) -> Result<(), KernelError> {
        let ns = NetNs::open(self.ns.name())?;
        ns.run(|| -> Result<(), KernelError> {
            let mut nl = Netlink::open()?;
            self.map_member(&mut nl, link, vid)
        })?
    }

    /// Disconnects member `link`: its VLAN becomes unknown (dropped) and
    /// what hv forwards from its link is dropped at the trunk. Returns
    /// whether it was connected.
    pub fn remove_member(&mut self, link: &str) -> Result<bool, KernelError> {
        let Some(m) = self.members.remove(link) else {
            return Ok(false);
        };
        self.progs
            .unset_member(self.trunk_ifindex(), m.ifindex, m.vid)?;
        Ok(true)
    }

    /// Member link → VLAN id, as currently connected.
    pub fn members(&self) -> BTreeMap<String, u16> {
        self.members
            .iter()
            .map(|(k, m)| (k.clone(), m.vid))
            .collect()
    }

    pub fn namespace(&self) -> &str {
        self.ns.name()
    }

    /// The hooks of this side: the trunk link's ingress and egress (member
    /// links have none).
    pub fn hooks(&self) -> &[Hook] {
        &self.trunk
    }

    /// (link, interface index) of every link the maps are keyed by: the
    /// trunk link, then each connected member link. The maps are shared by
    /// the whole lab, so these indexes must be unique across it.
    pub fn keyed_links(&self) -> Vec<(&str, u32)> {
        std::iter::once((self.trunk[0].ifname.as_str(), self.trunk_ifindex()))
            .chain(self.members.iter().map(|(l, m)| (l.as_str(), m.ifindex)))
            .collect()
    }

    /// Removes both programs from the trunk link and every member's map
    /// entries (a lab being torn down does not need this).
    pub fn detach(mut self) -> Result<(), KernelError> {
        let links: Vec<String> = self.members.keys().cloned().collect();
        for l in links {
            self.remove_member(&l)?;
        }
        let progs = self.progs.clone();
        let trunk = self.trunk.clone();
        self.ns.run(move || -> Result<(), KernelError> {
            progs.unhook_here(&mut Netlink::open()?, &trunk)
        })?
    }
}

/// Names of the programs hooked to `ifname` in `ns` on `hook`, whichever
/// way they were attached: cls_bpf filters (netlink) first, then TCX.
pub fn hooked_programs(ns: &NetNs, ifname: &str, hook: TcHook) -> Result<Vec<String>, KernelError> {
    ns.run(|| -> Result<Vec<String>, KernelError> {
        let mut nl = Netlink::open()?;
        let ifindex = index_of(&mut nl, ifname, ns)?;
        let mut names: Vec<String> = nl
            .bpf_filters(ifindex, hook)?
            .into_iter()
            .map(|f| f.prog_name)
            .collect();
        let dir = match hook {
            TcHook::Ingress => aya::programs::TcAttachType::Ingress,
            TcHook::Egress => aya::programs::TcAttachType::Egress,
        };
        // Older kernels have no TCX to ask: nothing is attached that way.
        if let Ok((_, progs)) = SchedClassifier::query_tcx(ifname, dir) {
            names.extend(
                progs
                    .iter()
                    .filter_map(|p| p.name_as_str().map(str::to_string)),
            );
        }
        Ok(names)
    })?
}

/// Whether programs can be loaded and hooked with `mode` here: attaches a
/// pass-through program to `lo` in `ns` (a scratch namespace) and removes
/// it again.
pub fn probe_attach(ns: &NetNs, mode: TcAttach) -> Result<(), KernelError> {
    let progs = VlanPrograms::load(
        format!("tc probe ({}) in {}", mode.name(), ns.name()),
        mode,
        &[Prog::Probe],
    )?;
    let h = [hook("lo", 1, TcHook::Ingress, Prog::Probe)];
    ns.run(|| -> Result<(), KernelError> {
        let mut nl = Netlink::open()?;
        progs.hook_here(&mut nl, &h, ns.name())?;
        progs.unhook_here(&mut nl, &h)
    })?
}

/// [`probe_attach`] with the mode `auto` picks.
pub fn probe_cls_bpf(ns: &NetNs) -> Result<(), KernelError> {
    probe_attach(ns, TcAttach::default())
}

pub fn cls_bpf_available(ns: &NetNs) -> bool {
    probe_cls_bpf(ns).is_ok()
}

fn take_hash<K: aya::Pod, V: aya::Pod>(
    bpf: &mut aya::Ebpf,
    owner: &str,
    name: &str,
) -> Result<BpfHashMap<MapData, K, V>, KernelError> {
    let map = bpf
        .take_map(name)
        .ok_or_else(|| KernelError::new(format!("{owner}: vlan.o has no map {name}")))?;
    BpfHashMap::try_from(map)
        .map_err(|e| KernelError::new(format!("{owner}: map {name}: {}", chain(&e))))
}

/// The bpf(2) commands and TCX attach types used here (linux/bpf.h).
mod libc_bpf {
    pub const BPF_PROG_ATTACH: libc::c_long = 8;
    pub const BPF_PROG_DETACH: libc::c_long = 9;
    pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    pub const BPF_TCX_INGRESS: u32 = 46;
    pub const BPF_TCX_EGRESS: u32 = 47;
}

/// `bpf(BPF_PROG_ATTACH | BPF_PROG_DETACH)` of a program to a link's TCX
/// hook, in the calling thread's namespace. Without a link fd the
/// attachment belongs to the link, like a cls_bpf filter.
fn tcx_prog(
    cmd: libc::c_long,
    prog: BorrowedFd<'_>,
    ifindex: u32,
    hook: TcHook,
) -> std::io::Result<()> {
    // union bpf_attr, the BPF_PROG_ATTACH/DETACH member.
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        target_ifindex: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
        relative_fd: u32,
        expected_revision: u64,
    }
    let attr = Attr {
        target_ifindex: ifindex,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: match hook {
            TcHook::Ingress => libc_bpf::BPF_TCX_INGRESS,
            TcHook::Egress => libc_bpf::BPF_TCX_EGRESS,
        },
        ..Default::default()
    };
    // SAFETY: `attr` is a valid, fully initialised bpf_attr prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &attr as *const Attr,
            std::mem::size_of::<Attr>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel id of a program (`bpf_prog_info.id`).
fn prog_id(fd: BorrowedFd<'_>) -> Option<u32> {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // bpf_prog_info starts with type (u32) and id (u32).
    let mut info = [0u32; 2];
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc_bpf::BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>() as u32,
        )
    };
    (r == 0).then_some(info[1])
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
