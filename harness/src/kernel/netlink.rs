//! A synchronous rtnetlink socket: links, addresses, routes, rules,
//! neighbours and vxlan FDB entries, without spawning `ip`.
//!
//! The socket belongs to the network namespace of the thread that opened it
//! (see `NetNs::run`). Requests either wait for their ack one by one, or,
//! between `begin_batch` and `finish_batch`, are queued, sent many per
//! `sendmsg` and acknowledged later; every request keeps a description so a
//! failure names what it was about.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVeth, InfoVlan, InfoVxlan, IpVlanMode,
    LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, LinkProtoInfoBridge,
    MacVlanMode as NlMacVlanMode,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope,
    RouteType as NlRouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{KernelError, NetNs};
use crate::plan::types::{
    AddrPlan, Backends, FdbPlan, LinkKind, LinkPlan, LinkSetting, MacvlanMode, NeighPlan,
    RoutePlan, RouteType, RulePlan, Scope, VethEnd,
};

type Result<T> = std::result::Result<T, KernelError>;

/// Requests in flight before the acks are drained. Each ack is its own skb
/// in the socket's receive buffer; the kernel silently drops acks (and
/// flags ENOBUFS) once that buffer is full, so the window stays well below
/// what the default 208 KiB buffer holds.
const WINDOW: usize = 64;
/// Bytes of queued requests sent in one `sendmsg` at most (below wmem_default).
const MAX_SEND: usize = 64 * 1024;
const RECV_BUF: usize = 64 * 1024;
/// `NLM_F_CAPPED` / `NLM_F_ACK_TLVS` on an error message (netlink(7)).
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub master: Option<u32>,
    /// Carrier (IFF_LOWER_UP).
    pub lower_up: bool,
    /// Root qdisc name; `noop` on an up link with carrier means the kernel
    /// has not activated it yet and drops whatever is sent.
    pub qdisc: Option<String>,
    /// RFC 2863 operational state is `up` (IFLA_OPERSTATE).
    pub oper_up: bool,
    /// IFLA_LINK: a veth's peer index or a macvlan/ipvlan/vlan parent's
    /// (in the peer's namespace when that differs).
    pub link: Option<u32>,
    /// Operational state `unknown`: never set by the kernel's linkwatch.
    pub oper_unknown: bool,
}

/// A failed request: what it was, errno, kernel's extended-ack text.
struct Nack {
    errno: i32,
    text: String,
}

pub struct Netlink {
    sock: Socket,
    seq: u32,
    batching: bool,
    /// Serialized requests not yet sent.
    out: Vec<u8>,
    /// Sent (or queued) batch requests awaiting their ack: seq → description.
    pending: HashMap<u32, String>,
    /// Batch requests that failed, in order.
    failures: Vec<(KernelError, i32)>,
    /// Interface name → index, filled by lookups, dumps and creations.
    index: HashMap<String, u32>,
    last_errno: Option<i32>,
    rbuf: Vec<u8>,
    /// Namespace descriptors named by queued requests (IFLA_NET_NS_FD): the
    /// kernel resolves them when it handles the request, so they stay open
    /// until it is acked (then or at `finish_batch`).
    held: Vec<std::fs::File>,
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket in the current thread's namespace.
    pub fn open() -> Result<Netlink> {
        let err = |what: &str, e: std::io::Error| {
            KernelError::new(format!("opening rtnetlink socket: {what}: {e}"))
        };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| err("socket", e))?;
        sock.bind_auto().map_err(|e| err("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| err("connect", e))?;
        // Short acks (header only) and the kernel's error text; both are
        // optional niceties, older kernels may refuse them.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        Ok(Netlink {
            sock,
            seq: 0,
            batching: false,
            out: Vec::new(),
            pending: HashMap::new(),
            failures: Vec::new(),
            index: HashMap::new(),
            last_errno: None,
            rbuf: Vec::with_capacity(RECV_BUF),
            held: Vec::new(),
        })
    }

    /// errno of the last request that failed (for capability probes).
    pub fn last_errno(&self) -> Option<i32> {
        self.last_errno
    }

    // ---- batching ---------------------------------------------------------

    /// From now on requests are queued and acknowledged later; a request
    /// method returns Ok once queued. `finish_batch` reports failures.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Sends what is queued, waits for every ack and leaves batch mode.
    /// Returns the first failure (naming its request) and how many others.
    pub fn finish_batch(&mut self) -> Result<()> {
        let res = self.drain();
        self.batching = false;
        let failures = std::mem::take(&mut self.failures);
        res?;
        let n = failures.len();
        match failures.into_iter().next() {
            None => Ok(()),
            Some((e, errno)) => {
                self.last_errno = Some(errno);
                if n == 1 {
                    Err(e)
                } else {
                    Err(KernelError::new(format!(
                        "{e} (and {} more failed requests in the same batch)",
                        n - 1
                    )))
                }
            }
        }
    }

    /// Sends queued requests and waits until every pending ack arrived.
    fn drain(&mut self) -> Result<()> {
        self.send_out()?;
        while !self.pending.is_empty() {
            self.receive(None, &mut Vec::new())?;
        }
        self.held.clear();
        Ok(())
    }

    fn send_out(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let res = self.sock.send(&self.out, 0);
        self.out.clear();
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                // Nothing of it reached the kernel: those acks never come.
                let what: Vec<String> = self.pending.drain().map(|(_, w)| w).collect();
                Err(KernelError::new(format!(
                    "sending {} netlink requests ({}): {e}",
                    what.len(),
                    what.join("; ")
                )))
            }
        }
    }

    // ---- request plumbing -------------------------------------------------

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16) -> u32 {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let start = self.out.len();
        self.out.resize(start + m.buffer_len(), 0);
        m.serialize(&mut self.out[start..]);
        seq
    }

    /// A request that changes something: acked now, or queued in a batch.
    pub(super) fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: String,
    ) -> Result<()> {
        let seq = self.encode(msg, flags | NLM_F_ACK);
        if self.batching {
            self.pending.insert(seq, what);
            if self.pending.len() >= WINDOW || self.out.len() >= MAX_SEND {
                self.drain()?;
            }
            return Ok(());
        }
        self.send_out()?;
        let res = self.wait(seq, &what).map(|_| ());
        self.held.clear();
        res
    }

    /// A dump whose answer is needed now. In a batch, queued requests go
    /// first; the kernel handles them in order.
    fn dump(&mut self, msg: RouteNetlinkMessage, what: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.encode(msg, NLM_F_DUMP);
        self.send_out()?;
        self.wait(seq, what)
    }

    fn wait(&mut self, seq: u32, what: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let mut got = Vec::new();
        loop {
            match self.receive(Some(seq), &mut got)? {
                None => continue,
                Some(Ok(())) => return Ok(got),
                Some(Err(nack)) => {
                    self.last_errno = Some(nack.errno);
                    return Err(KernelError::new(format!("{what}: {}", nack.text)));
                }
            }
        }
    }

    /// Reads one datagram. Acks of pending batch requests are settled;
    /// answers to `seq` are collected. Returns `Some` once `seq` finished.
    fn receive(
        &mut self,
        seq: Option<u32>,
        got: &mut Vec<RouteNetlinkMessage>,
    ) -> Result<Option<std::result::Result<(), Nack>>> {
        self.rbuf.clear();
        let n = loop {
            match self.sock.recv(&mut self.rbuf, libc::MSG_TRUNC) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let lost = self.pending.len();
                    self.pending.clear();
                    return Err(KernelError::new(format!(
                        "reading netlink answers ({lost} requests unacknowledged): {e}"
                    )));
                }
            }
        };
        if n > self.rbuf.len() {
            return Err(KernelError::new(format!(
                "netlink answer of {n} bytes truncated to {}",
                self.rbuf.len()
            )));
        }
        let buf = std::mem::take(&mut self.rbuf);
        let mut result = None;
        let mut off = 0;
        while off + 16 <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            if len < 16 || off + len > n {
                break;
            }
            let raw = &buf[off..off + len];
            off += (len + 3) & !3;
            let flags = u16::from_ne_bytes([raw[6], raw[7]]);
            let mseq = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
                Ok(m) => m,
                Err(e) => {
                    if Some(mseq) == seq {
                        result = Some(Err(Nack {
                            errno: libc::EPROTO,
                            text: format!("undecodable answer: {e}"),
                        }));
                    }
                    continue;
                }
            };
            match msg.payload {
                NetlinkPayload::Error(err) => {
                    let nack = err.code.map(|c| nack_of(c.get(), flags, &err.header));
                    if let Some(what) = self.pending.remove(&mseq) {
                        if let Some(nack) = nack {
                            self.failures.push((
                                KernelError::new(format!("{what}: {}", nack.text)),
                                nack.errno,
                            ));
                        }
                    } else if Some(mseq) == seq {
                        result = Some(match nack {
                            Some(n) => Err(n),
                            None => Ok(()),
                        });
                    }
                }
                NetlinkPayload::Done(_) if Some(mseq) == seq => result = Some(Ok(())),
                NetlinkPayload::InnerMessage(m) if Some(mseq) == seq => {
                    got.push(m);
                }
                _ => {}
            }
        }
        self.rbuf = buf;
        Ok(result)
    }

    // ---- links ------------------------------------------------------------

    /// Index of the link named `name` in this namespace, if it exists.
    /// A name not yet known refreshes the whole table with one dump (in a
    /// batch this first settles the queued requests, which the kernel
    /// handles in order, so links created earlier in the batch are found).
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        if let Some(i) = self.index.get(name) {
            return Ok(Some(*i));
        }
        self.links()?;
        Ok(self.index.get(name).copied())
    }

    pub(super) fn require_index(&mut self, name: &str, what: &str) -> Result<u32> {
        self.link_index(name)?.ok_or_else(|| {
            self.last_errno = Some(libc::ENODEV);
            KernelError::new(format!("{what}: no link named {name}"))
        })
    }

    /// Every link of this namespace (also refreshes the name → index cache).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        self.index.clear();
        let answers = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "listing links",
        )?;
        let mut out = Vec::new();
        for a in answers {
            let RouteNetlinkMessage::NewLink(l) = a else {
                continue;
            };
            let mut info = LinkInfo {
                index: l.header.index,
                name: String::new(),
                kind: None,
                mac: None,
                up: l.header.flags.contains(LinkFlags::Up),
                master: None,
                lower_up: l.header.flags.contains(LinkFlags::LowerUp),
                qdisc: None,
                oper_up: false,
                link: None,
                oper_unknown: false,
            };
            for attr in l.attributes {
                match attr {
                    LinkAttribute::IfName(n) => info.name = n,
                    LinkAttribute::Address(a) => info.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                    LinkAttribute::Controller(m) => info.master = Some(m),
                    LinkAttribute::Link(p) => info.link = Some(p),
                    LinkAttribute::Qdisc(q) => info.qdisc = Some(q),
                    LinkAttribute::OperState(st) => {
                        info.oper_up = st == netlink_packet_route::link::State::Up;
                        info.oper_unknown = st == netlink_packet_route::link::State::Unknown;
                    }
                    LinkAttribute::LinkInfo(infos) => {
                        for i in infos {
                            if let NlLinkInfo::Kind(k) = i {
                                info.kind = Some(k.to_string());
                            }
                        }
                    }
                    _ => {}
                }
            }
            self.index.insert(info.name.clone(), info.index);
            out.push(info);
        }
        Ok(out)
    }

    /// Creates a non-veth link. `backends` decides the stand-ins for kinds
    /// this kernel may lack (dummy → empty bridge, ipvlan → macvlan bridge).
    pub fn add_link(&mut self, l: &LinkPlan, backends: &Backends) -> Result<()> {
        self.add_link_into(l, backends, None)
    }

    /// Creates `l` with its parent resolved in this namespace and the new
    /// link placed in `target` (`ip link add link eth1 name eth0 netns X
    /// type ipvlan`): how a pod's eth0 becomes an L2 child of a node's ENI.
    pub fn add_link_into(
        &mut self,
        l: &LinkPlan,
        backends: &Backends,
        target: Option<&NetNs>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(l.name.clone()));
        // An ipvlan child always carries its parent's MAC: the kernel
        // refuses another one.
        let native_ipvlan = matches!(l.kind, LinkKind::Ipvlan { .. }) && backends.ipvlan;
        if let (Some(mac), false) = (l.mac, native_ipvlan) {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(t) = target {
            let fd = self.hold(t)?;
            msg.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        let ((label, extra), kind, data, parent): (
            (&str, String),
            InfoKind,
            Option<InfoData>,
            Option<&str>,
        ) = match &l.kind {
            LinkKind::Bridge => (("bridge", String::new()), InfoKind::Bridge, None, None),
            LinkKind::Dummy if backends.dummy => {
                (("dummy", String::new()), InfoKind::Dummy, None, None)
            }
            LinkKind::Dummy => (
                ("dummy", " (as a bridge without ports)".into()),
                InfoKind::Bridge,
                None,
                None,
            ),
            LinkKind::Macvlan { parent, mode } => (
                ("macvlan", format!(" on {parent}")),
                InfoKind::MacVlan,
                Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(macvlan_mode(
                    *mode,
                ))])),
                Some(parent.as_str()),
            ),
            LinkKind::Ipvlan { parent } if backends.ipvlan => (
                ("ipvlan", format!(" on {parent}")),
                InfoKind::IpVlan,
                Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
                Some(parent.as_str()),
            ),
            LinkKind::Ipvlan { parent } => (
                ("ipvlan", format!(" (as macvlan bridge) on {parent}")),
                InfoKind::MacVlan,
                Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    NlMacVlanMode::Bridge,
                )])),
                Some(parent.as_str()),
            ),
            LinkKind::Vlan { parent, id } => (
                ("vlan", format!(" (id {id}) on {parent}")),
                InfoKind::Vlan,
                Some(InfoData::Vlan(vec![InfoVlan::Id(*id)])),
                Some(parent.as_str()),
            ),
            LinkKind::Vxlan {
                vni,
                local,
                port,
                dev,
                learning,
            } => {
                let what = format!("creating vxlan {}", l.name);
                let mut v = vec![
                    InfoVxlan::Id(*vni),
                    InfoVxlan::Local(*local),
                    InfoVxlan::Port(*port),
                    InfoVxlan::Learning(*learning),
                ];
                if let Some(dev) = dev {
                    v.push(InfoVxlan::Link(self.require_index(dev, &what)?));
                }
                (
                    ("vxlan", format!(" (vni {vni})")),
                    InfoKind::Vxlan,
                    Some(InfoData::Vxlan(v)),
                    None,
                )
            }
        };
        let into = target
            .map(|t| format!(" into {}", t.name()))
            .unwrap_or_default();
        let what = format!("creating {label} {}{extra}{into}", l.name);
        if let Some(p) = parent {
            let idx = self.require_index(p, &what)?;
            msg.attributes.push(LinkAttribute::Link(idx));
        }
        let mut info = vec![NlLinkInfo::Kind(kind)];
        info.extend(data.map(NlLinkInfo::Data));
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    /// A descriptor on `ns` for a request about to be sent, kept open until
    /// that request is acked.
    fn hold(&mut self, ns: &NetNs) -> Result<std::os::fd::RawFd> {
        let f = ns.open_file()?;
        let fd = f.as_raw_fd();
        self.held.push(f);
        Ok(fd)
    }

    /// Creates a veth pair here with the peer placed directly in `peer_ns`
    /// (named in errors).
    pub fn add_veth_to(&mut self, local: &VethEnd, peer: &VethEnd, peer_ns: &NetNs) -> Result<()> {
        let fd = self.hold(peer_ns)?;
        self.veth(
            local,
            peer,
            fd,
            peer_ns.name(),
            None,
            UpAtCreation::default(),
        )
    }

    /// `add_veth_to` with the interface indexes both ends must get.
    ///
    /// The kernel's linkwatch worker handles a carrier change at once only
    /// for "stacked" devices, which it recognises by an ifindex different
    /// from the peer's; otherwise it batches the change for up to a second.
    /// Two fresh namespaces hand out the same small indexes, so without this
    /// a veth's two ends often share one and every link of a lab waits for
    /// that batch before it can carry a packet.
    pub fn add_veth_indexed(
        &mut self,
        local: &VethEnd,
        peer: &VethEnd,
        peer_ns: &NetNs,
        indexes: (u32, u32),
        up: UpAtCreation,
    ) -> Result<()> {
        let fd = self.hold(peer_ns)?;
        self.veth(local, peer, fd, peer_ns.name(), Some(indexes), up)
    }

    fn veth(
        &mut self,
        local: &VethEnd,
        peer: &VethEnd,
        peer_ns: std::os::fd::RawFd,
        peer_label: &str,
        indexes: Option<(u32, u32)>,
        up: UpAtCreation,
    ) -> Result<()> {
        let mut p = LinkMessage::default();
        if let Some((_, peer_index)) = indexes {
            p.header.index = peer_index;
        }
        p.attributes.push(LinkAttribute::IfName(peer.name.clone()));
        // One queue each way from the start, as `ip link add … numtxqueues 1
        // numrxqueues 1`: without them a veth gets one queue per CPU and
        // veth_newlink cuts them to one on the registered device, which waits
        // for an expedited RCU grace period while holding RTNL — for every
        // veth, stalling every other lab's netlink work meanwhile. Either way
        // the veth ends up with one active queue.
        p.attributes.extend(single_queue());
        if let Some(mac) = peer.mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        // The kernel resolves the fd while handling the request, so in a
        // batch it stays open until the ack (see `hold`).
        p.attributes.push(LinkAttribute::NetNsFd(peer_ns));
        let mut msg = LinkMessage::default();
        if let Some((local_index, _)) = indexes {
            msg.header.index = local_index;
        }
        // rtnl_newlink opens the new local end from the request's header
        // once the pair exists. The peer cannot come up that way:
        // veth_newlink configures it before the two are joined, and
        // veth_open refuses an end without a peer (ENOTCONN).
        if up.local {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes
            .push(LinkAttribute::IfName(local.name.clone()));
        msg.attributes.extend(single_queue());
        if let Some(mac) = local.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        let what = format!(
            "creating veth {} (peer {} in {peer_label})",
            local.name, peer.name
        );
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    /// Brings up the link with interface index `index` (`name` is for errors).
    pub fn set_up_at(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        msg.header.flags = LinkFlags::Up;
        self.change(
            RouteNetlinkMessage::SetLink(msg),
            0,
            format!("setting link {name} up"),
        )
    }

    /// Renames a link of this namespace (it must be down).
    pub fn rename_link(&mut self, from: &str, to: &str) -> Result<()> {
        let what = format!("renaming link {from} to {to}");
        let mut msg = LinkMessage::default();
        let index = self.require_index(from, &what)?;
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(to.to_string()));
        self.index.remove(from);
        self.index.insert(to.to_string(), index);
        self.change(RouteNetlinkMessage::SetLink(msg), 0, what)
    }

    /// Applies master, mtu and up/down in one request.
    pub fn apply_setting(&mut self, s: &LinkSetting) -> Result<()> {
        self.set_link(&s.name, s.master.as_deref(), s.mtu, Some(s.up))
    }

    /// Changes what is given of a link: master, mtu, administrative state.
    pub fn set_link(
        &mut self,
        name: &str,
        master: Option<&str>,
        mtu: Option<u32>,
        up: Option<bool>,
    ) -> Result<()> {
        let mut parts = Vec::new();
        if let Some(m) = master {
            parts.push(format!("master {m}"));
        }
        if let Some(m) = mtu {
            parts.push(format!("mtu {m}"));
        }
        if let Some(u) = up {
            parts.push(if u {
                "up".to_string()
            } else {
                "down".to_string()
            });
        }
        let what = format!("setting link {name} {}", parts.join(" "));
        let mut msg = LinkMessage::default();
        msg.header.index = self.require_index(name, &what)?;
        if let Some(m) = master {
            let idx = self.require_index(m, &what)?;
            msg.attributes.push(LinkAttribute::Controller(idx));
        }
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(u) = up {
            msg.header.change_mask = LinkFlags::Up;
            msg.header.flags = if u { LinkFlags::Up } else { LinkFlags::empty() };
        }
        self.change(RouteNetlinkMessage::SetLink(msg), 0, what)
    }

    /// A bridge port's hairpin mode, as `bridge link set dev NAME hairpin
    /// on|off` sends it: RTM_SETLINK in family AF_BRIDGE with
    /// IFLA_PROTINFO { IFLA_BRPORT_MODE }. The link must be a bridge port.
    pub fn set_hairpin(&mut self, name: &str, on: bool) -> Result<()> {
        const IFLA_BRPORT_MODE: u16 = 4;
        let what = format!(
            "setting hairpin {} on bridge port {name}",
            if on { "on" } else { "off" }
        );
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = self.require_index(name, &what)?;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(vec![
            LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![u8::from(on)])),
        ]));
        self.change(RouteNetlinkMessage::SetLink(msg), 0, what)
    }

    // ---- addresses, routes, rules, neighbours -----------------------------

    pub fn add_addr(&mut self, a: &AddrPlan) -> Result<()> {
        let what = format!("adding address {} to {}", a.addr, a.dev);
        let mut msg = AddressMessage::default();
        msg.header.index = self.require_index(&a.dev, &what)?;
        msg.header.prefix_len = a.addr.prefix_len();
        msg.header.scope = match a.scope {
            Scope::Global => AddressScope::Universe,
            Scope::Link => AddressScope::Link,
            Scope::Host => AddressScope::Host,
        };
        let ip = a.addr.addr();
        match ip {
            IpAddr::V4(_) => {
                msg.header.family = AddressFamily::Inet;
                msg.attributes.push(AddressAttribute::Local(ip));
                msg.attributes.push(AddressAttribute::Address(ip));
            }
            IpAddr::V6(_) => {
                msg.header.family = AddressFamily::Inet6;
                msg.attributes.push(AddressAttribute::Address(ip));
            }
        }
        if a.noprefixroute {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
        }
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    fn route_message(&mut self, r: &RoutePlan, what: &str) -> Result<RouteMessage> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family_of(&r.dst);
        msg.header.destination_prefix_length = r.dst.prefix_len();
        // Tables above 255 only fit the RTA_TABLE attribute; the header
        // then carries RT_TABLE_COMPAT (252), as iproute2 does.
        msg.header.table = u8::try_from(r.table).unwrap_or(252);
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = match r.scope {
            Scope::Global => RouteScope::Universe,
            Scope::Link => RouteScope::Link,
            Scope::Host => RouteScope::Host,
        };
        msg.header.kind = match r.kind {
            RouteType::Unicast => NlRouteType::Unicast,
            RouteType::Local => NlRouteType::Local,
            RouteType::Blackhole => NlRouteType::BlackHole,
            RouteType::Unreachable => NlRouteType::Unreachable,
        };
        if r.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        msg.attributes.push(RouteAttribute::Table(r.table));
        msg.attributes
            .push(RouteAttribute::Destination(r.dst.network().into()));
        if let Some(gw) = r.via {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(dev) = &r.dev {
            let idx = self.require_index(dev, what)?;
            msg.attributes.push(RouteAttribute::Oif(idx));
        }
        if let Some(src) = r.src {
            msg.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
        }
        if let Some(m) = r.metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        Ok(msg)
    }

    pub fn add_route(&mut self, r: &RoutePlan) -> Result<()> {
        let what = format!("adding route {}", describe_route(r));
        let msg = self.route_message(r, &what)?;
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    /// `ip route replace`: as `add_route`, or in place of the route the
    /// kernel has for the same destination, table and metric.
    pub fn replace_route(&mut self, r: &RoutePlan) -> Result<()> {
        let what = format!("replacing route {}", describe_route(r));
        let msg = self.route_message(r, &what)?;
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            what,
        )
    }

    pub fn del_route(&mut self, r: &RoutePlan) -> Result<()> {
        let what = format!("deleting route {}", describe_route(r));
        let mut msg = self.route_message(r, &what)?;
        // On delete the kernel compares the scope unless it is "nowhere"
        // (255), which matches any; iproute2 sends the same.
        msg.header.scope = RouteScope::NoWhere;
        self.change(RouteNetlinkMessage::DelRoute(msg), 0, what)
    }

    /// `ip route get`: asks the kernel for its decision on `msg` (an
    /// RTM_GETROUTE request); the answer is the route it chose.
    pub fn get_route(&mut self, msg: RouteMessage, what: &str) -> Result<Vec<RouteMessage>> {
        let seq = self.encode(RouteNetlinkMessage::GetRoute(msg), NLM_F_ACK);
        self.send_out()?;
        Ok(self
            .wait(seq, what)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// Every policy routing rule of this namespace (`ip rule`).
    pub fn rules(&mut self) -> Result<Vec<RuleMessage>> {
        let mut req = RuleMessage::default();
        req.header.family = AddressFamily::Inet;
        Ok(self
            .dump(RouteNetlinkMessage::GetRule(req), "listing rules")?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    pub fn add_rule(&mut self, r: &RulePlan) -> Result<()> {
        let what = format!("adding rule {}", describe_rule(r));
        let mut msg = RuleMessage::default();
        msg.header.family = r
            .from
            .or(r.to)
            .map(|n| family_of(&n))
            .unwrap_or(AddressFamily::Inet);
        msg.header.table = u8::try_from(r.table).unwrap_or(0);
        msg.header.action = RuleAction::ToTable;
        msg.attributes.push(RuleAttribute::Priority(r.priority));
        msg.attributes.push(RuleAttribute::Table(r.table));
        if let Some(from) = r.from {
            msg.header.src_len = from.prefix_len();
            msg.attributes.push(RuleAttribute::Source(from.network()));
        }
        if let Some(to) = r.to {
            msg.header.dst_len = to.prefix_len();
            msg.attributes
                .push(RuleAttribute::Destination(to.network()));
        }
        if let Some(i) = &r.iif {
            msg.attributes.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &r.oif {
            msg.attributes.push(RuleAttribute::Oifname(o.clone()));
        }
        if let Some((mark, mask)) = r.fwmark {
            msg.attributes.push(RuleAttribute::FwMark(mark));
            msg.attributes.push(RuleAttribute::FwMask(mask));
        }
        self.change(
            RouteNetlinkMessage::NewRule(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    /// A permanent ARP entry (`ip neigh replace IP lladdr MAC dev DEV nud permanent`).
    pub fn add_neigh(&mut self, n: &NeighPlan) -> Result<()> {
        let what = format!(
            "adding neighbour {} lladdr {} dev {}",
            n.ip,
            fmt_mac(&n.mac),
            n.dev
        );
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.require_index(&n.dev, &what)?;
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = NlRouteType::Unicast;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                n.ip,
            )));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(n.mac.to_vec()));
        self.change(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            what,
        )
    }

    /// `ip link del NAME`. Deleting one end of a veth deletes both.
    pub fn del_link(&mut self, name: &str) -> Result<()> {
        let what = format!("deleting link {name}");
        let mut msg = LinkMessage::default();
        msg.header.index = self.require_index(name, &what)?;
        self.index.remove(name);
        self.change(RouteNetlinkMessage::DelLink(msg), 0, what)
    }

    /// `ip neigh del IP dev DEV`; an entry (or link) already gone is fine.
    pub fn del_neigh(&mut self, dev: &str, ip: std::net::Ipv4Addr) -> Result<()> {
        let what = format!("deleting neighbour {ip} dev {dev}");
        let Some(index) = self.link_index(dev)? else {
            return Ok(());
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.change(RouteNetlinkMessage::DelNeighbour(msg), 0, what) {
            Err(_) if self.last_errno == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// A static vxlan FDB entry (`bridge fdb append MAC dev VX dst IP self permanent`).
    pub fn add_fdb(&mut self, f: &FdbPlan) -> Result<()> {
        let what = format!("adding fdb {} dst {} dev {}", fmt_mac(&f.mac), f.dst, f.dev);
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = self.require_index(&f.dev, &what)?;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(f.mac.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                f.dst,
            )));
        self.change(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_APPEND,
            what,
        )
    }
}

/// A tc hook of a link: the clsact qdisc's ingress or egress side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcHook {
    Ingress,
    Egress,
}

impl TcHook {
    fn parent(self) -> TcHandle {
        TcHandle {
            major: TcHandle::CLSACT.major,
            minor: match self {
                TcHook::Ingress => TcHandle::MIN_INGRESS,
                TcHook::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TcHook::Ingress => "ingress",
            TcHook::Egress => "egress",
        }
    }
}

/// A cls_bpf filter as `tc filter show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfFilter {
    pub prog_name: String,
    pub prio: u16,
    pub handle: u32,
}

/// `tcm_info` of a filter: priority and protocol (all, network order).
fn filter_info(prio: u16) -> u32 {
    (u32::from(prio) << 16) | u32::from((libc::ETH_P_ALL as u16).to_be())
}

/// The header and kind of a cls_bpf filter message: one place for add and del.
fn bpf_filter_msg(ifindex: u32, hook: TcHook, prio: u16, handle: u32) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex as i32;
    msg.header.parent = hook.parent();
    msg.header.handle = TcHandle::from(handle);
    msg.header.info = filter_info(prio);
    msg.attributes
        .push(TcAttribute::Kind(TcFilterBpf::KIND.into()));
    msg
}

impl Netlink {
    // ---- tc (cls_bpf on clsact) ------------------------------------------

    /// `tc qdisc replace dev <ifindex> clsact`: creates it, or leaves an
    /// existing one alone (no NLM_F_EXCL, no options: a no-op change).
    pub fn add_clsact(&mut self, ifindex: u32) -> Result<()> {
        let what = format!("adding clsact qdisc to link {ifindex}");
        let mut msg = TcMessage::default();
        msg.header.index = ifindex as i32;
        msg.header.parent = TcHandle::CLSACT;
        msg.header.handle = TcHandle {
            major: TcHandle::CLSACT.major,
            minor: 0,
        };
        msg.attributes.push(TcAttribute::Kind("clsact".into()));
        self.change(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE,
            what,
        )
    }

    /// `tc filter add dev <ifindex> <hook> prio P handle H bpf da fd F`.
    /// The filter holds its own reference to the program and lives as long
    /// as the link (not the process).
    pub fn add_bpf_filter(
        &mut self,
        ifindex: u32,
        hook: TcHook,
        prog: BorrowedFd<'_>,
        prog_name: &str,
        prio: u16,
        handle: u32,
    ) -> Result<()> {
        let what = format!(
            "adding cls_bpf filter {prog_name} on link {ifindex} ({})",
            hook.name()
        );
        let mut msg = bpf_filter_msg(ifindex, hook, prio, handle);
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(prog_name.into())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.change(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    /// `tc filter del dev <ifindex> <hook> prio P handle H bpf`.
    pub fn del_bpf_filter(
        &mut self,
        ifindex: u32,
        hook: TcHook,
        prio: u16,
        handle: u32,
    ) -> Result<()> {
        let what = format!(
            "deleting cls_bpf filter prio {prio} on link {ifindex} ({})",
            hook.name()
        );
        let msg = bpf_filter_msg(ifindex, hook, prio, handle);
        self.change(RouteNetlinkMessage::DelTrafficFilter(msg), 0, what)
    }

    /// The cls_bpf filters on one hook of a link (`tc filter show dev X ingress`).
    pub fn bpf_filters(&mut self, ifindex: u32, hook: TcHook) -> Result<Vec<BpfFilter>> {
        let what = format!("listing tc filters of link {ifindex} ({})", hook.name());
        let mut msg = TcMessage::default();
        msg.header.index = ifindex as i32;
        msg.header.parent = hook.parent();
        let answers = self.dump(RouteNetlinkMessage::GetTrafficFilter(msg), &what)?;
        let mut out = Vec::new();
        for a in answers {
            let RouteNetlinkMessage::NewTrafficFilter(m) = a else {
                continue;
            };
            let is_bpf = m
                .attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == TcFilterBpf::KIND));
            let name = m.attributes.iter().find_map(|a| match a {
                TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                    TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => Some(n.clone()),
                    _ => None,
                }),
                _ => None,
            });
            // The dump also lists each priority's (handle-less) chain head.
            if let (true, Some(prog_name), h) = (is_bpf, name, u32::from(m.header.handle)) {
                if h != 0 {
                    out.push(BpfFilter {
                        prog_name,
                        prio: (m.header.info >> 16) as u16,
                        handle: h,
                    });
                }
            }
        }
        Ok(out)
    }
}

fn nack_of(code: i32, flags: u16, payload: &[u8]) -> Nack {
    let errno = code.checked_neg().unwrap_or(code);
    let mut text = strerror(errno);
    if let Some(m) = extack_message(flags, payload) {
        text.push_str(&format!(" ({m})"));
    }
    Nack { errno, text }
}

/// The kernel's extended-ack text (NLMSGERR_ATTR_MSG) after the echoed
/// request header, if the error carries TLVs.
fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize
    };
    let mut off = (echoed + 3) & !3;
    while off + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[off], payload[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let s = &payload[off + 4..off + len];
            let s = s.split(|b| *b == 0).next().unwrap_or(s);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        off += (len + 3) & !3;
    }
    None
}

/// `strerror` text ("File exists"), without std's " (os error N)" suffix.
pub(crate) fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn family_of(n: &IpNet) -> AddressFamily {
    match n {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

fn macvlan_mode(m: MacvlanMode) -> NlMacVlanMode {
    match m {
        MacvlanMode::Bridge => NlMacVlanMode::Bridge,
        MacvlanMode::Private => NlMacVlanMode::Private,
        MacvlanMode::Vepa => NlMacVlanMode::Vepa,
        MacvlanMode::Passthru => NlMacVlanMode::Passthrough,
    }
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn describe_route(r: &RoutePlan) -> String {
    let mut s = r.dst.to_string();
    if r.kind != RouteType::Unicast {
        s = format!("{:?} {s}", r.kind).to_lowercase();
    }
    if let Some(v) = r.via {
        s.push_str(&format!(" via {v}"));
    }
    if let Some(d) = &r.dev {
        s.push_str(&format!(" dev {d}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    if let Some(src) = r.src {
        s.push_str(&format!(" src {src}"));
    }
    if let Some(m) = r.metric {
        s.push_str(&format!(" metric {m}"));
    }
    s.push_str(&format!(" table {}", r.table));
    s
}

fn describe_rule(r: &RulePlan) -> String {
    let mut s = format!("pref {}", r.priority);
    if let Some(f) = r.from {
        s.push_str(&format!(" from {f}"));
    }
    if let Some(t) = r.to {
        s.push_str(&format!(" to {t}"));
    }
    if let Some(i) = &r.iif {
        s.push_str(&format!(" iif {i}"));
    }
    if let Some(o) = &r.oif {
        s.push_str(&format!(" oif {o}"));
    }
    if let Some((m, k)) = r.fwmark {
        s.push_str(&format!(" fwmark {m:#x}/{k:#x}"));
    }
    s.push_str(&format!(" lookup {}", r.table));
    s
}

/// Whether the local end of a new veth pair comes up in the request that
/// creates it (see `kernel::build::create_veths` for why).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpAtCreation {
    pub local: bool,
}

/// The queue counts of a device created with one TX and one RX queue.
fn single_queue() -> [LinkAttribute; 2] {
    [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extack_text_after_capped_header() {
        let mut p = vec![0u8; 16];
        let msg = b"Unknown device type\0";
        let len = (4 + msg.len()) as u16;
        p.extend_from_slice(&len.to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(msg);
        assert_eq!(
            extack_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, &p).as_deref(),
            Some("Unknown device type")
        );
        assert_eq!(extack_message(NLM_F_CAPPED, &p), None);
    }

    #[test]
    fn route_description_names_everything() {
        let r = RoutePlan::via(
            "10.1.0.0/16".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            "eth0",
            true,
        )
        .in_table(100);
        assert_eq!(
            describe_route(&r),
            "10.1.0.0/16 via 10.0.0.1 dev eth0 onlink table 100"
        );
    }
}
