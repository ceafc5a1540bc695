//! Native IPVS: virtual services and real servers programmed through the
//! kernel's IPVS generic-netlink family, the way kube-proxy's IPVS proxier
//! does (it uses moby/ipvs, which speaks exactly this family), and read back
//! for `cnlab rules` (`ipvsadm -Ln`).
//!
//! Why hand-written: no maintained Rust crate speaks the IPVS family, and
//! `netlink-packet-generic` would add only the 4-byte genl header and the
//! controller's family lookup, pinned to its own `netlink-packet-core`
//! version. The family is small: four commands (`IPVS_CMD_NEW_SERVICE`,
//! `IPVS_CMD_NEW_DEST`, `IPVS_CMD_GET_SERVICE`, `IPVS_CMD_GET_DEST`) with two
//! nested attribute sets modelled on include/uapi/linux/ip_vs.h. Framing and
//! attribute parsing reuse `netlink-sys` and `netlink-packet-core`'s NLA
//! buffers already in the workspace.
//!
//! IPVS state is per network namespace: a socket opened on a thread that
//! entered a node's namespace programs that node's table only.

use std::net::Ipv4Addr;

use netlink_packet_core::{NlaBuffer, NlasIterator, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use super::netlink::strerror;
use super::KernelError;
use crate::plan::types::{IpvsDest, IpvsForward, IpvsProto, IpvsService};

/// Everything that can go wrong talking to IPVS, errno kept.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error("opening a generic netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("this kernel has no IP_VS (generic netlink family \"IPVS\" not registered)")]
    NoIpvs,
    #[error("{what}: {text} (errno {errno})")]
    Kernel {
        what: String,
        errno: i32,
        text: String,
    },
    #[error("{what}: {detail}")]
    Decode { what: String, detail: String },
}

impl IpvsError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            IpvsError::Kernel { errno, .. } => Some(*errno),
            IpvsError::Socket(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

impl From<IpvsError> for KernelError {
    fn from(e: IpvsError) -> Self {
        KernelError::new(e.to_string())
    }
}

type Result<T> = std::result::Result<T, IpvsError>;

// ---- include/uapi/linux/genetlink.h ----------------------------------------
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

// ---- include/uapi/linux/ip_vs.h ---------------------------------------------
const IPVS_GENL_NAME: &str = "IPVS";
const IPVS_GENL_VERSION: u8 = 1;
const IPVS_CMD_NEW_SERVICE: u8 = 1;
const IPVS_CMD_GET_SERVICE: u8 = 4;
const IPVS_CMD_NEW_DEST: u8 = 5;
const IPVS_CMD_GET_DEST: u8 = 8;
const IPVS_CMD_FLUSH: u8 = 17;

const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;

const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;

const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;

const IP_VS_SVC_F_PERSISTENT: u32 = 0x0001;
const IP_VS_CONN_F_FWD_MASK: u32 = 0x0007;
const IP_VS_CONN_F_MASQ: u32 = 0x0000;
const NLA_F_NESTED: u16 = 0x8000;

const AF_INET: u16 = libc::AF_INET as u16;
const RECV_BUF: usize = 64 * 1024;

/// A real server as the kernel reports it, with its connection counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestState {
    pub dest: IpvsDest,
    pub active: u32,
    pub inactive: u32,
}

/// A virtual service read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub service: IpvsService,
    pub dests: Vec<DestState>,
}

/// A generic-netlink socket bound to the IPVS family of the current
/// thread's network namespace.
pub struct Ipvs {
    genl: Genl,
    family: u16,
}

/// Resolves the family id of `name` (CTRL_CMD_GETFAMILY). `None`: the
/// kernel has no such family. Asking for "IPVS" makes a kernel with IP_VS
/// built as a module load it (genl's request_module on lookup).
pub fn family_id(name: &str) -> Result<Option<u16>> {
    let mut g = Genl::open()?;
    g.family_id(name)
}

impl Ipvs {
    /// Opens the IPVS family in this thread's namespace.
    pub fn open() -> Result<Ipvs> {
        let mut genl = Genl::open()?;
        let family = genl.family_id(IPVS_GENL_NAME)?.ok_or(IpvsError::NoIpvs)?;
        Ok(Ipvs { genl, family })
    }

    /// `ipvsadm -A -t addr:port -s rr [-p timeout]`.
    pub fn add_service(&mut self, s: &IpvsService) -> Result<()> {
        let mut attrs = Vec::new();
        nested(&mut attrs, IPVS_CMD_ATTR_SERVICE, &service_attrs(s, true));
        let what = format!("adding IPVS service {}", svc_label(s));
        let family = self.family;
        self.genl
            .request(family, IPVS_CMD_NEW_SERVICE, NLM_F_ACK, &attrs, &what)
            .map(|_| ())
    }

    /// `ipvsadm -a -t addr:port -r dest -m -w weight`.
    pub fn add_dest(&mut self, s: &IpvsService, d: &IpvsDest) -> Result<()> {
        let mut attrs = Vec::new();
        nested(&mut attrs, IPVS_CMD_ATTR_SERVICE, &service_attrs(s, false));
        nested(&mut attrs, IPVS_CMD_ATTR_DEST, &dest_attrs(d));
        let what = format!(
            "adding real server {}:{} to IPVS service {}",
            d.addr,
            d.port,
            svc_label(s)
        );
        let family = self.family;
        self.genl
            .request(family, IPVS_CMD_NEW_DEST, NLM_F_ACK, &attrs, &what)
            .map(|_| ())
    }

    /// Adds every service with its real servers.
    pub fn program(&mut self, services: &[IpvsService]) -> Result<()> {
        for s in services {
            self.add_service(s)?;
            for d in &s.dests {
                self.add_dest(s, d)?;
            }
        }
        Ok(())
    }

    /// `ipvsadm -C`.
    pub fn flush(&mut self) -> Result<()> {
        let family = self.family;
        self.genl
            .request(family, IPVS_CMD_FLUSH, NLM_F_ACK, &[], "flushing IPVS")
            .map(|_| ())
    }

    /// Every virtual service with its real servers, sorted like
    /// `ipvsadm -Ln` (by protocol, address, port).
    pub fn list(&mut self) -> Result<Vec<ServiceState>> {
        let family = self.family;
        let answers = self.genl.request(
            family,
            IPVS_CMD_GET_SERVICE,
            NLM_F_DUMP,
            &[],
            "listing IPVS services",
        )?;
        let mut out = Vec::new();
        for a in answers {
            let Some(svc) = attr(&a, IPVS_CMD_ATTR_SERVICE) else {
                continue;
            };
            let Some(mut service) = parse_service(svc)? else {
                continue; // fwmark or IPv6 services: not the lab's
            };
            let mut req = Vec::new();
            nested(
                &mut req,
                IPVS_CMD_ATTR_SERVICE,
                &service_attrs(&service, false),
            );
            let what = format!("listing real servers of {}", svc_label(&service));
            let dests = self
                .genl
                .request(family, IPVS_CMD_GET_DEST, NLM_F_DUMP, &req, &what)?;
            let mut states = Vec::new();
            for d in dests {
                if let Some(raw) = attr(&d, IPVS_CMD_ATTR_DEST) {
                    states.push(parse_dest(raw, &what)?);
                }
            }
            states.sort_by_key(|d| (d.dest.addr, d.dest.port));
            service.dests = states.iter().map(|d| d.dest.clone()).collect();
            out.push(ServiceState {
                service,
                dests: states,
            });
        }
        out.sort_by_key(|s| (s.service.proto, s.service.addr, s.service.port));
        Ok(out)
    }
}

fn svc_label(s: &IpvsService) -> String {
    format!("{} {}:{}", s.proto.label(), s.addr, s.port)
}

/// `ipvsadm -Ln` as it prints the table (without the version line).
pub fn render(states: &[ServiceState]) -> String {
    let mut o = String::from(
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    );
    for s in states {
        let svc = &s.service;
        let persistent = svc
            .persistence_timeout
            .map(|t| format!(" persistent {t}"))
            .unwrap_or_default();
        o += &format!(
            "{:<4} {}:{} {}{persistent}\n",
            svc.proto.label(),
            svc.addr,
            svc.port,
            svc.scheduler
        );
        for d in &s.dests {
            let fwd = match d.dest.forward {
                IpvsForward::Masq => "Masq",
            };
            o += &format!(
                "  -> {:<28} {fwd:<7} {:<6} {:<10} {}\n",
                format!("{}:{}", d.dest.addr, d.dest.port),
                d.dest.weight,
                d.active,
                d.inactive
            );
        }
    }
    o
}

// ---- attributes --------------------------------------------------------------

fn put(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize((buf.len() + 3) & !3, 0);
}

fn nested(buf: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    put(buf, kind | NLA_F_NESTED, inner);
}

/// The service's identity (AF, protocol, address, port); with `full`, also
/// what `IPVS_CMD_NEW_SERVICE` requires (scheduler, flags, timeout, netmask:
/// the kernel refuses a new service missing any of them).
fn service_attrs(s: &IpvsService, full: bool) -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, IPVS_SVC_ATTR_AF, &AF_INET.to_ne_bytes());
    put(
        &mut b,
        IPVS_SVC_ATTR_PROTOCOL,
        &s.proto.number().to_ne_bytes(),
    );
    put(&mut b, IPVS_SVC_ATTR_ADDR, &s.addr.octets());
    put(&mut b, IPVS_SVC_ATTR_PORT, &s.port.to_be_bytes());
    if full {
        let mut name = s.scheduler.as_bytes().to_vec();
        name.push(0);
        put(&mut b, IPVS_SVC_ATTR_SCHED_NAME, &name);
        let flags = if s.persistence_timeout.is_some() {
            IP_VS_SVC_F_PERSISTENT
        } else {
            0
        };
        // struct ip_vs_flags { flags, mask }
        let mut f = flags.to_ne_bytes().to_vec();
        f.extend_from_slice(&u32::MAX.to_ne_bytes());
        put(&mut b, IPVS_SVC_ATTR_FLAGS, &f);
        put(
            &mut b,
            IPVS_SVC_ATTR_TIMEOUT,
            &s.persistence_timeout.unwrap_or(0).to_ne_bytes(),
        );
        // kube-proxy (pkg/util/ipvs toIPVSService): 0xffffffff for IPv4,
        // so persistence is per client address.
        put(&mut b, IPVS_SVC_ATTR_NETMASK, &u32::MAX.to_be_bytes());
    }
    b
}

fn dest_attrs(d: &IpvsDest) -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, IPVS_DEST_ATTR_ADDR, &d.addr.octets());
    put(&mut b, IPVS_DEST_ATTR_PORT, &d.port.to_be_bytes());
    let fwd = match d.forward {
        IpvsForward::Masq => IP_VS_CONN_F_MASQ,
    };
    put(&mut b, IPVS_DEST_ATTR_FWD_METHOD, &fwd.to_ne_bytes());
    put(&mut b, IPVS_DEST_ATTR_WEIGHT, &d.weight.to_ne_bytes());
    put(&mut b, IPVS_DEST_ATTR_U_THRESH, &0u32.to_ne_bytes());
    put(&mut b, IPVS_DEST_ATTR_L_THRESH, &0u32.to_ne_bytes());
    put(&mut b, IPVS_DEST_ATTR_ADDR_FAMILY, &AF_INET.to_ne_bytes());
    b
}

/// The attributes of `raw` as `(kind without flags, value)`.
fn attrs(raw: &[u8]) -> Vec<(u16, &[u8])> {
    NlasIterator::new(raw)
        .filter_map(|a| a.ok())
        .filter_map(|a: NlaBuffer<&[u8]>| {
            let (kind, len) = (a.kind() & !0xC000, a.value_length());
            a.into_inner().get(4..4 + len).map(|v| (kind, v))
        })
        .collect()
}

fn attr(raw: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(raw)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|x| x.1)
}

fn u16_ne(v: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?))
}
fn u32_ne(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}
fn port_be(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}
fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    let o: [u8; 4] = v.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// An IPv4 address:port service, or `None` for a fwmark or IPv6 one.
fn parse_service(raw: &[u8]) -> Result<Option<IpvsService>> {
    let bad = |detail: &str| IpvsError::Decode {
        what: "decoding an IPVS service".into(),
        detail: detail.into(),
    };
    let a = attrs(raw);
    let get = |k: u16| a.iter().find(|(kind, _)| *kind == k).map(|x| x.1);
    if get(IPVS_SVC_ATTR_AF).and_then(u16_ne) != Some(AF_INET) {
        return Ok(None);
    }
    let Some(addr) = get(IPVS_SVC_ATTR_ADDR).and_then(ipv4) else {
        return Ok(None);
    };
    let Some(port) = get(IPVS_SVC_ATTR_PORT).and_then(port_be) else {
        return Ok(None);
    };
    let proto_no = get(IPVS_SVC_ATTR_PROTOCOL)
        .and_then(u16_ne)
        .ok_or_else(|| bad("no protocol"))?;
    let proto = IpvsProto::from_number(proto_no)
        .ok_or_else(|| bad(&format!("unknown protocol {proto_no}")))?;
    let scheduler = get(IPVS_SVC_ATTR_SCHED_NAME)
        .map(|v| {
            let v = v.split(|b| *b == 0).next().unwrap_or(v);
            String::from_utf8_lossy(v).into_owned()
        })
        .unwrap_or_default();
    let flags = get(IPVS_SVC_ATTR_FLAGS).and_then(u32_ne).unwrap_or(0);
    let timeout = get(IPVS_SVC_ATTR_TIMEOUT).and_then(u32_ne).unwrap_or(0);
    Ok(Some(IpvsService {
        addr,
        port,
        proto,
        scheduler,
        persistence_timeout: (flags & IP_VS_SVC_F_PERSISTENT != 0).then_some(timeout),
        dests: Vec::new(),
    }))
}

fn parse_dest(raw: &[u8], what: &str) -> Result<DestState> {
    let bad = |detail: &str| IpvsError::Decode {
        what: what.into(),
        detail: detail.into(),
    };
    let a = attrs(raw);
    let get = |k: u16| a.iter().find(|(kind, _)| *kind == k).map(|x| x.1);
    let addr = get(IPVS_DEST_ATTR_ADDR)
        .and_then(ipv4)
        .ok_or_else(|| bad("real server without an address"))?;
    let port = get(IPVS_DEST_ATTR_PORT)
        .and_then(port_be)
        .ok_or_else(|| bad("real server without a port"))?;
    let fwd = get(IPVS_DEST_ATTR_FWD_METHOD).and_then(u32_ne).unwrap_or(0);
    let forward = match fwd & IP_VS_CONN_F_FWD_MASK {
        IP_VS_CONN_F_MASQ => IpvsForward::Masq,
        other => return Err(bad(&format!("forwarding method {other}, not masquerading"))),
    };
    Ok(DestState {
        dest: IpvsDest {
            addr,
            port,
            weight: get(IPVS_DEST_ATTR_WEIGHT).and_then(u32_ne).unwrap_or(0),
            forward,
        },
        active: get(IPVS_DEST_ATTR_ACTIVE_CONNS)
            .and_then(u32_ne)
            .unwrap_or(0),
        inactive: get(IPVS_DEST_ATTR_INACT_CONNS)
            .and_then(u32_ne)
            .unwrap_or(0),
    })
}

// ---- generic netlink framing ----------------------------------------------

/// A generic netlink socket: one request at a time, answered in order.
struct Genl {
    sock: Socket,
    seq: u32,
    rbuf: Vec<u8>,
}

impl Genl {
    fn open() -> Result<Genl> {
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
        sock.bind_auto().map_err(IpvsError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(IpvsError::Socket)?;
        let _ = sock.set_ext_ack(true);
        Ok(Genl {
            sock,
            seq: 0,
            rbuf: Vec::with_capacity(RECV_BUF),
        })
    }

    fn family_id(&mut self, name: &str) -> Result<Option<u16>> {
        let mut attrs = Vec::new();
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        put(&mut attrs, CTRL_ATTR_FAMILY_NAME, &n);
        let what = format!("looking up generic netlink family {name}");
        match self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0, &attrs, &what) {
            Ok(answers) => Ok(answers
                .iter()
                .find_map(|a| attr(a, CTRL_ATTR_FAMILY_ID).and_then(u16_ne))),
            Err(IpvsError::Kernel { errno, .. }) if errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one request and collects the attribute payloads of its answers
    /// (one for a plain request, many for a dump) until its ack or DONE.
    fn request(
        &mut self,
        family: u16,
        cmd: u8,
        flags: u16,
        attrs: &[u8],
        what: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let io = |e: std::io::Error| IpvsError::Kernel {
            what: what.into(),
            errno: e.raw_os_error().unwrap_or(0),
            text: e.to_string(),
        };
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let msg = frame(family, NLM_F_REQUEST | flags, seq, cmd, attrs);
        self.sock.send(&msg, 0).map_err(io)?;
        // A plain GET without ACK is answered by one message.
        let single = flags & (NLM_F_DUMP | NLM_F_ACK) == 0;
        let mut out = Vec::new();
        loop {
            self.rbuf.clear();
            let n = self.sock.recv(&mut self.rbuf, 0).map_err(io)?;
            let buf = &self.rbuf[..n.min(self.rbuf.len())];
            let mut off = 0;
            let mut finished = false;
            while off + 16 <= buf.len() {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                if len < 16 || off + len > buf.len() {
                    break;
                }
                let raw = &buf[off..off + len];
                off += (len + 3) & !3;
                let kind = u16::from_ne_bytes([raw[4], raw[5]]);
                let mseq = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = raw
                            .get(16..20)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EPROTO);
                        if code != 0 {
                            return Err(IpvsError::Kernel {
                                what: what.into(),
                                errno: -code,
                                text: strerror(-code),
                            });
                        }
                        finished = true;
                    }
                    NLMSG_DONE => finished = true,
                    _ => {
                        // nlmsghdr (16) + genlmsghdr (4), then attributes.
                        if raw.len() >= 20 {
                            out.push(raw[20..].to_vec());
                        }
                        finished |= single;
                    }
                }
            }
            if finished {
                return Ok(out);
            }
        }
    }
}

/// nlmsghdr + genlmsghdr + attributes.
fn frame(family: u16, flags: u16, seq: u32, cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let total = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, IPVS_GENL_VERSION, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(persist: Option<u32>) -> IpvsService {
        IpvsService {
            addr: Ipv4Addr::new(192, 168, 1, 200),
            port: 80,
            proto: IpvsProto::Tcp,
            scheduler: "rr".into(),
            persistence_timeout: persist,
            dests: vec![],
        }
    }

    #[test]
    fn service_attributes_round_trip() {
        for p in [None, Some(10800)] {
            let raw = service_attrs(&svc(p), true);
            assert_eq!(raw.len() % 4, 0);
            assert_eq!(parse_service(&raw).unwrap(), Some(svc(p)));
        }
    }

    #[test]
    fn service_address_and_port_are_network_order() {
        let raw = service_attrs(&svc(None), false);
        assert_eq!(
            attr(&raw, IPVS_SVC_ATTR_ADDR),
            Some(&[192, 168, 1, 200][..])
        );
        assert_eq!(
            attr(&raw, IPVS_SVC_ATTR_PORT).map(|v| &v[..2]),
            Some(&[0, 80][..])
        );
        // An identity carries no scheduler (the kernel wants it only on NEW).
        assert_eq!(attr(&raw, IPVS_SVC_ATTR_SCHED_NAME), None);
    }

    #[test]
    fn dest_attributes_round_trip() {
        let d = IpvsDest {
            addr: Ipv4Addr::new(10, 0, 4, 30),
            port: 8080,
            weight: 1,
            forward: IpvsForward::Masq,
        };
        let st = parse_dest(&dest_attrs(&d), "t").unwrap();
        assert_eq!(st.dest, d);
    }

    #[test]
    fn frames_carry_genl_header_and_nested_service() {
        let mut attrs = Vec::new();
        nested(
            &mut attrs,
            IPVS_CMD_ATTR_SERVICE,
            &service_attrs(&svc(None), true),
        );
        let m = frame(
            0x1234,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            IPVS_CMD_NEW_SERVICE,
            &attrs,
        );
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x1234);
        assert_eq!(&m[16..18], &[IPVS_CMD_NEW_SERVICE, IPVS_GENL_VERSION]);
        let kind = u16::from_ne_bytes([m[22], m[23]]);
        assert_eq!(kind, IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED);
        let inner = attr(&m[20..], IPVS_CMD_ATTR_SERVICE).unwrap();
        assert_eq!(parse_service(inner).unwrap(), Some(svc(None)));
    }

    #[test]
    fn listing_looks_like_ipvsadm() {
        let st = ServiceState {
            service: svc(Some(10800)),
            dests: vec![DestState {
                dest: IpvsDest {
                    addr: Ipv4Addr::new(10, 0, 4, 30),
                    port: 80,
                    weight: 1,
                    forward: IpvsForward::Masq,
                },
                active: 0,
                inactive: 2,
            }],
        };
        let out = render(&[st]);
        assert!(
            out.contains("TCP  192.168.1.200:80 rr persistent 10800\n"),
            "{out}"
        );
        assert!(out.contains("  -> 10.0.4.30:80"), "{out}");
        assert!(out.contains("Masq    1      0          2"), "{out}");
    }
}
