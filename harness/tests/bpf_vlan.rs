//! ENI trunking with the tc eBPF programs, proven with real packets (root).
//!
//! ```text
//!  node: lo 10.0.1.10 (A, VLAN 1027) 10.0.2.20 (B, VLAN 1028) 10.0.1.30 (C, VLAN 1099: no member)
//!        `from X lookup T` → `default via <member gateway> dev trunk onlink` (ARP, answered by hv_demux)
//!    trunk ══ veth ══ trunk   hv ── m1 ══ eth0  m1ns: 10.0.1.1/24, 192.168.100.1 on lo
//!    02:..:01       ee:ff:ff:ff:ff:ff ── m2 ══ eth0  m2ns: 10.0.2.1/24, 192.168.100.1 on lo
//! ```
//!
//! hv routes, as `hv/<node>` of a lab does: `ip_forward=1`, rp_filter off,
//! `pref 100 iif trunk fwmark <vid> lookup <1000+vid>` with
//! `default via <gw> dev m<n> onlink` (a permanent neighbour for the
//! gateway), and `<pod>/32 dev trunk` with a permanent neighbour to the
//! node's trunk MAC for the way back. The member namespaces play the VPC
//! router behind each member ENI link; hv answers their ARP for pod
//! addresses (proxy ARP, no delay). `hv_demux` (trunk ingress) pops the tag
//! and marks the packet with its VLAN id, `hv_mux` (trunk egress) tags what
//! hv forwards from a member link; member links carry no program.
//!
//! Both member namespaces own the same service address 192.168.100.1, so
//! only the VLAN id decides where a datagram lands.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cnlab::kernel::netlink::TcHook;
use cnlab::kernel::netns::{self, NetNs};
use cnlab::kernel::tc::{self, TcAttach};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 20);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 30);
const D: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 40);
const SERVICE: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
const PORT: u16 = 7000;
const GW1: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const GW2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
/// The node's trunk link.
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The vSwitch gateway MAC: the hv end of the trunk, every ARP answer.
const VSWITCH_MAC: [u8; 6] = [0xee, 0xff, 0xff, 0xff, 0xff, 0xff];
const VSWITCH: &str = "ee:ff:ff:ff:ff:ff";
/// (member link in hv, VLAN id, gateway, the member namespace's eth0 MAC).
const MEMBERS: [(&str, u16, Ipv4Addr, &str); 2] = [
    ("m1", 1027, GW1, "02:00:00:00:10:27"),
    ("m2", 1028, GW2, "02:00:00:00:10:28"),
];

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn assert_root() {
    assert!(
        cnlab::lab::is_root(),
        "these tests attach eBPF programs in namespaces: run them as root (sudo -E cargo test)"
    );
}

/// Deletes the namespaces when dropped, even when an assertion failed.
struct NsGuard(Vec<String>);

impl Drop for NsGuard {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = netns::delete(n);
        }
    }
}

struct Lab {
    node: NetNs,
    hv: NetNs,
    m1: NetNs,
    m2: NetNs,
    _guard: NsGuard,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &NetNs, cmd: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} in {}: {}",
        cmd.join(" "),
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn quiet_ns(ns: &NetNs) {
    // No IPv6 chatter (router solicitations, MLD) in the captures.
    in_ns(
        ns,
        &[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    );
}

fn build_lab(tag: &str) -> Lab {
    let base = format!("cnl-t{}-{tag}", std::process::id());
    let names: Vec<String> = ["node", "hv", "m1", "m2"]
        .iter()
        .map(|r| format!("{base}-{r}"))
        .collect();
    let guard = NsGuard(names.clone());
    let nss = netns::create_all(&names).unwrap();
    let mut it = nss.into_iter();
    let (node, hv, m1, m2) = (
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
    );
    for ns in [&node, &hv, &m1, &m2] {
        quiet_ns(ns);
    }
    // Links are created directly inside the lab namespaces (`ip -n`), never in the root one.
    ip(&[
        "-n",
        node.name(),
        "link",
        "add",
        "trunk",
        "type",
        "veth",
        "peer",
        "name",
        "trunk",
        "netns",
        hv.name(),
    ]);
    ip(&[
        "-n",
        hv.name(),
        "link",
        "add",
        "m1",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        m1.name(),
    ]);
    ip(&[
        "-n",
        hv.name(),
        "link",
        "add",
        "m2",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        m2.name(),
    ]);
    // Fixed MACs, set while the links are down: the hv end of the trunk is
    // the vSwitch gateway, the others are what hv's neighbours name.
    ip(&[
        "-n",
        node.name(),
        "link",
        "set",
        "trunk",
        "address",
        &mac_str(&NODE_MAC),
    ]);
    ip(&["-n", hv.name(), "link", "set", "trunk", "address", VSWITCH]);
    for (ns, (_, _, _, mac)) in [&m1, &m2].into_iter().zip(MEMBERS) {
        ip(&["-n", ns.name(), "link", "set", "eth0", "address", mac]);
    }
    for (ns, links) in [
        (&node, &["lo", "trunk"][..]),
        (&hv, &["lo", "trunk", "m1", "m2"]),
        (&m1, &["lo", "eth0"]),
        (&m2, &["lo", "eth0"]),
    ] {
        for l in links {
            ip(&["-n", ns.name(), "link", "set", l, "up"]);
        }
    }
    // hv routes: by mark (the VLAN id hv_demux found) to the member's link,
    // by destination back to the pods on the trunk.
    in_ns(
        &hv,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.trunk.rp_filter=0",
            "net.ipv4.conf.m1.rp_filter=0",
            "net.ipv4.conf.m2.rp_filter=0",
            // The VPC side ARPs for pod addresses in its subnet: hv answers
            // for those it routes to the trunk, at once.
            "net.ipv4.conf.m1.proxy_arp=1",
            "net.ipv4.conf.m2.proxy_arp=1",
            "net.ipv4.neigh.m1.proxy_delay=0",
            "net.ipv4.neigh.m2.proxy_delay=0",
        ],
    );
    for (link, vid, gw, mac) in MEMBERS {
        let table = (1000 + u32::from(vid)).to_string();
        let gw = gw.to_string();
        let hvn = hv.name();
        ip(&[
            "-n",
            hvn,
            "neigh",
            "add",
            &gw,
            "lladdr",
            mac,
            "dev",
            link,
            "nud",
            "permanent",
        ]);
        ip(&[
            "-n",
            hvn,
            "rule",
            "add",
            "pref",
            "100",
            "iif",
            "trunk",
            "fwmark",
            &vid.to_string(),
            "lookup",
            &table,
        ]);
        ip(&[
            "-n", hvn, "route", "add", "default", "via", &gw, "dev", link, "onlink", "table",
            &table,
        ]);
    }
    for pod in [A, B, C, D] {
        let hvn = hv.name();
        ip(&[
            "-n",
            hvn,
            "route",
            "add",
            &format!("{pod}/32"),
            "dev",
            "trunk",
        ]);
        ip(&[
            "-n",
            hvn,
            "neigh",
            "add",
            &pod.to_string(),
            "lladdr",
            &mac_str(&NODE_MAC),
            "dev",
            "trunk",
            "nud",
            "permanent",
        ]);
    }
    for (pod, table, gw) in [
        (A, "101", "10.0.1.1"),
        (B, "102", "10.0.2.1"),
        (C, "103", "10.0.1.1"),
    ] {
        ip(&[
            "-n",
            node.name(),
            "addr",
            "add",
            &format!("{pod}/32"),
            "dev",
            "lo",
        ]);
        ip(&[
            "-n",
            node.name(),
            "rule",
            "add",
            "from",
            &pod.to_string(),
            "lookup",
            table,
            "pref",
            "2048",
        ]);
        ip(&[
            "-n",
            node.name(),
            "route",
            "add",
            "default",
            "via",
            gw,
            "dev",
            "trunk",
            "onlink",
            "table",
            table,
        ]);
    }
    for (ns, gw) in [(&m1, "10.0.1.1/24"), (&m2, "10.0.2.1/24")] {
        ip(&["-n", ns.name(), "addr", "add", gw, "dev", "eth0"]);
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("{SERVICE}/32"),
            "dev",
            "lo",
        ]);
    }
    Lab {
        node,
        hv,
        m1,
        m2,
        _guard: guard,
    }
}

fn udp_in(ns: &NetNs, addr: Ipv4Addr, port: u16) -> UdpSocket {
    let s = ns
        .run(|| UdpSocket::bind(SocketAddr::from((addr, port))))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    s
}

/// One datagram, if any arrives before the socket's timeout.
fn recv(s: &UdpSocket) -> Option<(String, SocketAddr)> {
    let mut buf = [0u8; 1500];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

/// Sends from `src` to the service and reports which member namespace got it
/// and whether its echo made it back to the node.
fn exchange(lab: &Lab, src: Ipv4Addr, msg: &str) -> (Option<&'static str>, bool) {
    let s1 = udp_in(&lab.m1, SERVICE, PORT);
    let s2 = udp_in(&lab.m2, SERVICE, PORT);
    let client = udp_in(&lab.node, src, 0);
    // The first datagram may wait for ARP on the trunk; send a few.
    let mut got = None;
    for _ in 0..3 {
        client.send_to(msg.as_bytes(), (SERVICE, PORT)).unwrap();
        for (name, s) in [("m1", &s1), ("m2", &s2)] {
            if let Some((m, from)) = recv(s) {
                assert_eq!(m, msg);
                assert_eq!(from.ip(), src, "the member ENI side saw another source");
                s.send_to(format!("echo {m}").as_bytes(), from).unwrap();
                got = Some(name);
            }
        }
        if got.is_some() {
            break;
        }
    }
    if got.is_none() {
        return (None, false);
    }
    let echoed = recv(&client).is_some_and(|(m, from)| {
        m == format!("echo {msg}") && from == SocketAddr::from((SERVICE, PORT))
    });
    // Nothing may land in the other member namespace either.
    for (name, s) in [("m1", &s1), ("m2", &s2)] {
        if Some(name) != got {
            assert!(recv(s).is_none(), "{msg}: also reached {name}");
        }
    }
    (got, echoed)
}

/// `tcpdump -e` on a link inside a namespace, stopped with SIGTERM.
/// Keeps tcpdump's stderr open until it exits (it reports its counters there).
struct Capture(
    Child,
    #[allow(dead_code)] BufReader<std::process::ChildStderr>,
);

impl Capture {
    fn start(ns: &NetNs, ifname: &str) -> Capture {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "tcpdump",
                "-l",
                "-n",
                "-e",
                "-U",
                "-i",
                ifname,
                "udp or arp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "listening on ..." so no packet is sent before it captures.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        while !said.contains("listening on") {
            let n = err.read_line(&mut said).unwrap();
            assert!(n > 0, "tcpdump in {} ended: {said}", ns.name());
        }
        Capture(child, err)
    }

    fn stop(mut self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut out = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = self.0.wait();
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn lines_with<'a>(capture: &'a str, needle: &str) -> Vec<&'a str> {
    capture.lines().filter(|l| l.contains(needle)).collect()
}

/// "<namespace> <link> <hook> <program>" of every program hooked on the
/// test's links, however attached (cls_bpf filter or TCX).
fn hooked(lab: &Lab) -> Vec<String> {
    let mut out = Vec::new();
    for (role, ns, link) in [
        ("node", &lab.node, "trunk"),
        ("hv", &lab.hv, "trunk"),
        ("hv", &lab.hv, "m1"),
        ("hv", &lab.hv, "m2"),
    ] {
        for hook in [TcHook::Ingress, TcHook::Egress] {
            for p in tc::hooked_programs(ns, link, hook).unwrap() {
                out.push(format!("{role} {link} {} {p}", hook.name()));
            }
        }
    }
    out.sort();
    out
}

/// `setsockopt(fd, level, opt, value)`.
fn set_opt<T>(fd: &OwnedFd, level: i32, opt: i32, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An AF_PACKET socket on one link of a namespace: sends whole frames and
/// receives them with the VLAN tag the kernel keeps in metadata
/// (`PACKET_AUXDATA`).
struct RawLink(OwnedFd);

/// A frame as a packet socket got it.
struct RawFrame {
    outgoing: bool,
    /// The tag from metadata (auxdata), if any.
    vlan: Option<u16>,
    bytes: Vec<u8>,
}

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct Auxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

impl RawLink {
    fn open(ns: &NetNs, ifname: &str) -> RawLink {
        let name = std::ffi::CString::new(ifname).unwrap();
        let fd = ns
            .run(move || -> std::io::Result<OwnedFd> {
                let err = std::io::Error::last_os_error;
                let proto = (libc::ETH_P_ALL as u16).to_be();
                // SAFETY: plain socket calls on a descriptor we own, with
                // arguments of the sizes passed.
                unsafe {
                    let fd = libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        i32::from(proto),
                    );
                    if fd < 0 {
                        return Err(err());
                    }
                    let fd = OwnedFd::from_raw_fd(fd);
                    let ifindex = libc::if_nametoindex(name.as_ptr());
                    if ifindex == 0 {
                        return Err(err());
                    }
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    sll.sll_family = libc::AF_PACKET as u16;
                    sll.sll_protocol = proto;
                    sll.sll_ifindex = ifindex as i32;
                    if libc::bind(
                        fd.as_raw_fd(),
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    ) < 0
                    {
                        return Err(err());
                    }
                    set_opt(
                        &fd,
                        libc::SOL_PACKET,
                        libc::PACKET_AUXDATA,
                        &(1 as libc::c_int),
                    )?;
                    let tv = libc::timeval {
                        tv_sec: 0,
                        tv_usec: 100_000,
                    };
                    set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
                    Ok(fd)
                }
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("packet socket on {ifname} in {}: {e}", ns.name()));
        RawLink(fd)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is valid for its length; the socket is bound.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame, or None after the receive timeout.
    fn recv(&self) -> Option<RawFrame> {
        let mut buf = [0u8; 2048];
        let mut ctrl = [0u64; 32];
        // SAFETY: every pointer in `msg` points at a live local of the
        // length given; cmsg headers are walked with the libc macros.
        unsafe {
            let mut from: libc::sockaddr_ll = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctrl.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&ctrl);
            let n = libc::recvmsg(self.0.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                let e = std::io::Error::last_os_error();
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ),
                    "recvmsg: {e}"
                );
                return None;
            }
            let mut vlan = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: Auxdata = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                        vlan = Some(aux.tp_vlan_tci & 0x0fff);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            Some(RawFrame {
                outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
                vlan,
                bytes: buf[..n as usize].to_vec(),
            })
        }
    }

    /// The first ARP reply received within `wait`.
    fn arp_reply(&self, wait: Duration) -> Option<Arp> {
        let end = Instant::now() + wait;
        while Instant::now() < end {
            if let Some(f) = self.recv() {
                if f.outgoing {
                    continue;
                }
                if let Some(a) = Arp::parse(&f) {
                    if a.op == 2 {
                        return Some(a);
                    }
                }
            }
        }
        None
    }
}

/// An Ethernet/IPv4 ARP frame, with its VLAN tag (metadata or in-frame).
#[derive(Debug, PartialEq)]
struct Arp {
    vlan: Option<u16>,
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
}

impl Arp {
    fn parse(f: &RawFrame) -> Option<Arp> {
        let b = &f.bytes;
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let mac = |i: usize| -> [u8; 6] { b[i..i + 6].try_into().unwrap() };
        let ip4 = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        if b.len() < 14 {
            return None;
        }
        let mut vlan = f.vlan;
        let mut l3 = 14;
        if be16(12) == 0x8100 {
            if vlan.is_some() || b.len() < 18 {
                return None; // two tags: not what this test looks for
            }
            vlan = Some(be16(14) & 0x0fff);
            l3 = 18;
        }
        if be16(l3 - 2) != 0x0806 || b.len() < l3 + 28 {
            return None;
        }
        if be16(l3) != 1 || be16(l3 + 2) != 0x0800 || b[l3 + 4] != 6 || b[l3 + 5] != 4 {
            return None;
        }
        Some(Arp {
            vlan,
            eth_dst: mac(0),
            eth_src: mac(6),
            op: be16(l3 + 6),
            sha: mac(l3 + 8),
            spa: ip4(l3 + 14),
            tha: mac(l3 + 18),
            tpa: ip4(l3 + 24),
        })
    }
}

/// A broadcast ARP request from the node's trunk MAC, with the 802.1Q
/// headers `tags` (outermost first) inside the frame.
fn arp_request(tags: &[u16], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&NODE_MAC);
    for vid in tags {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

#[test]
fn trunk_vlans_carry_pods_to_their_member_enis_and_back_cls_bpf() {
    trunk_vlans(TcAttach::Netlink, "bv");
}

/// TCX where the kernel has it (Linux >= 6.6); elsewhere the attach must
/// fail saying so.
#[test]
fn trunk_vlans_carry_pods_to_their_member_enis_and_back_tcx() {
    assert_root();
    let caps = cnlab::lab::capabilities().unwrap();
    if !caps.tcx {
        let lab = build_lab("bx");
        let err = tc::attach_trunk_with(TcAttach::Tcx, &lab.node, "trunk", &[(A, 1027)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TCX needs Linux >= 6.6"), "{err}");
        return;
    }
    trunk_vlans(TcAttach::Tcx, "bt");
}

fn trunk_vlans(mode: TcAttach, tag: &str) {
    assert_root();
    let lab = build_lab(tag);
    assert!(hooked(&lab).is_empty());

    let t = Instant::now();
    let mut trunk =
        tc::attach_trunk_with(mode, &lab.node, "trunk", &[(A, 1027), (B, 1028), (C, 1099)])
            .unwrap();
    let trunk_time = t.elapsed();
    let t = Instant::now();
    let mut hv = tc::attach_hv_with(
        mode,
        &lab.hv,
        "trunk",
        &[("m1".to_string(), 1027), ("m2".to_string(), 1028)],
    )
    .unwrap();
    let hv_time = t.elapsed();
    eprintln!(
        "{}: attach_trunk (3 pods, 2 hooks): {trunk_time:?}; attach_hv (2 members, 2 hooks): {hv_time:?}",
        mode.name()
    );
    assert_eq!(
        hooked(&lab),
        [
            "hv trunk egress hv_mux",
            "hv trunk ingress hv_demux",
            "node trunk egress trunk_egress",
            "node trunk ingress vlan_pop",
        ],
        "tc filter show / bpftool net: nothing on the member links"
    );

    // A → VLAN 1027 → (popped, marked 1027, routed by hv) m1 only; the echo
    // comes back forwarded by hv and tagged by the mux on trunk egress.
    let cap = Capture::start(&lab.hv, "trunk");
    let cap_m1 = Capture::start(&lab.hv, "m1");
    assert_eq!(exchange(&lab, A, "from A"), (Some("m1"), true));
    let seen_m1 = cap_m1.stop();
    let seen = cap.stop();
    let on_m1 = lines_with(&seen_m1, &format!("{A}."));
    assert!(!on_m1.is_empty(), "no frame of A on hv:m1:\n{seen_m1}");
    assert!(
        on_m1.iter().all(|l| !l.contains("vlan")),
        "A's frames should cross hv:m1 untagged:\n{seen_m1}"
    );
    let a_frames = lines_with(&seen, &format!("{A}.")); // "10.0.1.10.<port> > ..." and "> 10.0.1.10.<port>"
    assert!(!a_frames.is_empty(), "no frame of A on hv:trunk:\n{seen}");
    for l in &a_frames {
        assert!(
            l.contains("vlan 1027"),
            "A's frame not tagged 1027 on hv:trunk: {l}\n{seen}"
        );
    }
    assert!(
        lines_with(&seen, "ARP")
            .iter()
            .any(|l| l.contains("vlan 1027") && l.contains(&format!("tell {A}"))),
        "the node's ARP for the gateway should carry A's VLAN:\n{seen}"
    );
    assert!(
        lines_with(&seen, "ARP").iter().any(|l| l.contains("vlan 1027")
            && l.contains(&format!("Reply {GW1} is-at {VSWITCH}"))),
        "hv_demux should answer it on VLAN 1027 with the vSwitch MAC:\n{seen}"
    );

    // B → VLAN 1028 → m2 only.
    assert_eq!(exchange(&lab, B, "from B"), (Some("m2"), true));

    // C's VLAN 1099 has no member ENI: it reaches the hv side tagged and is dropped there.
    let cap = Capture::start(&lab.hv, "trunk");
    assert_eq!(exchange(&lab, C, "from C"), (None, false));
    let seen = cap.stop();
    assert!(
        lines_with(&seen, &C.to_string())
            .iter()
            .any(|l| l.contains("vlan 1099")),
        "C's frames should reach hv:trunk as vlan 1099:\n{seen}"
    );

    // Map updates: a pod added later, a pod remapped, a member disconnected.
    ip(&[
        "-n",
        lab.node.name(),
        "addr",
        "add",
        &format!("{D}/32"),
        "dev",
        "lo",
    ]);
    ip(&[
        "-n",
        lab.node.name(),
        "rule",
        "add",
        "from",
        &D.to_string(),
        "lookup",
        "101",
        "pref",
        "2048",
    ]);
    assert_eq!(exchange(&lab, D, "D untagged"), (None, false));
    trunk.add_pod(D, 1027).unwrap();
    assert_eq!(exchange(&lab, D, "D on 1027"), (Some("m1"), true));
    trunk.add_pod(B, 1099).unwrap();
    assert_eq!(exchange(&lab, B, "B on 1099"), (None, false));
    trunk.add_pod(B, 1028).unwrap();
    assert_eq!(exchange(&lab, B, "B on 1028 again"), (Some("m2"), true));
    assert!(hv.remove_member("m1").unwrap());
    assert_eq!(exchange(&lab, A, "A without m1"), (None, false));
    // Nor does what arrives on m1's link reach the node, tagged or not.
    {
        let node_side = udp_in(&lab.node, A, 40123);
        let far = udp_in(&lab.m1, SERVICE, 0);
        for _ in 0..3 {
            far.send_to(b"stray", (A, 40123)).unwrap();
        }
        assert!(
            recv(&node_side).is_none(),
            "a removed member's traffic reached the node"
        );
    }
    hv.add_member("m1", 1027).unwrap();
    assert_eq!(exchange(&lab, A, "A with m1 again"), (Some("m1"), true));
    assert!(trunk.remove_pod(C).unwrap());
    assert!(!trunk.remove_pod(C).unwrap());
    assert_eq!(trunk.pods().len(), 3);
    assert_eq!(hv.members().len(), 2);
    // Bad input is refused with the object named.
    let err = hv.add_member("m2", 1028).unwrap_err().to_string();
    assert!(err.contains("m2 is already connected"), "{err}");
    assert!(hv.remove_member("m2").unwrap());
    let err = hv.add_member("m2", 1027).unwrap_err().to_string();
    assert!(err.contains("VLAN 1027") && err.contains("m1"), "{err}");
    hv.add_member("m2", 1028).unwrap();
    assert_eq!(exchange(&lab, B, "B with m2 again"), (Some("m2"), true));
    let err = hv.add_member("nosuch", 5).unwrap_err().to_string();
    assert!(
        err.contains("nosuch") && err.contains(lab.hv.name()),
        "{err}"
    );
    assert!(trunk.add_pod(A, 4095).is_err());

    // Detaching removes every hook: A's frames leave untagged and no longer
    // reach a member ENI.
    let t = Instant::now();
    trunk.detach().unwrap();
    hv.detach().unwrap();
    eprintln!("{}: detaching 4 hooks: {:?}", mode.name(), t.elapsed());
    let left = hooked(&lab);
    assert!(left.is_empty(), "hooks left after detach: {left:?}");
    let cap = Capture::start(&lab.hv, "trunk");
    assert_eq!(exchange(&lab, A, "A after drop"), (None, false));
    let seen = cap.stop();
    let a_frames = lines_with(&seen, &A.to_string());
    assert!(
        !a_frames.is_empty(),
        "A's frames should still reach hv:trunk, untagged:\n{seen}"
    );
    assert!(
        a_frames.iter().all(|l| !l.contains("vlan")),
        "tagged after drop:\n{seen}"
    );
}

/// The vSwitch answers ARP: a tagged request on a member's VLAN comes back
/// from `hv_demux` as a reply from ee:ff:ff:ff:ff:ff on the same VLAN; an
/// unknown VLAN, gratuitous ARP, a double tag and untagged native ARP get
/// no answer.
#[test]
fn hv_answers_tagged_arp_requests_like_the_vswitch() {
    assert_root();
    let lab = build_lab("ba");
    let _trunk = tc::attach_trunk(&lab.node, "trunk", &[(A, 1027), (B, 1028)]).unwrap();
    let mut hv = tc::attach_hv(
        &lab.hv,
        "trunk",
        &[("m1".to_string(), 1027), ("m2".to_string(), 1028)],
    )
    .unwrap();
    let raw = RawLink::open(&lab.node, "trunk");
    let wait = Duration::from_millis(800);
    let quiet = Duration::from_millis(400);
    let reply = |vlan: u16, gw: Ipv4Addr, asker: Ipv4Addr| Arp {
        vlan: Some(vlan),
        eth_dst: NODE_MAC,
        eth_src: VSWITCH_MAC,
        op: 2,
        sha: VSWITCH_MAC,
        spa: gw,
        tha: NODE_MAC,
        tpa: asker,
    };

    // A hand-tagged request (the tag inside the frame, as a VLAN device's
    // stack would hand it over; veth delivers it to hv as metadata).
    let other = Ipv4Addr::new(10, 0, 1, 77);
    raw.send(&arp_request(&[1027], other, GW1));
    assert_eq!(
        raw.arp_reply(wait),
        Some(reply(1027, GW1, other)),
        "tagged ARP request on VLAN 1027"
    );
    raw.send(&arp_request(&[1028], B, GW2));
    assert_eq!(
        raw.arp_reply(wait),
        Some(reply(1028, GW2, B)),
        "tagged ARP request on VLAN 1028"
    );
    // Untagged from a pod address: trunk_egress tags it by its sender (the
    // node's own ARP for a gateway); answered the same way.
    raw.send(&arp_request(&[], A, GW1));
    assert_eq!(
        raw.arp_reply(wait),
        Some(reply(1027, GW1, A)),
        "the node's ARP from A"
    );

    // No member ENI on VLAN 1099: dropped in hv, no answer.
    raw.send(&arp_request(&[1099], C, GW1));
    assert_eq!(raw.arp_reply(quiet), None, "VLAN 1099 has no member");
    // Gratuitous ARP announces, asks nobody.
    raw.send(&arp_request(&[1027], other, other));
    assert_eq!(raw.arp_reply(quiet), None, "gratuitous ARP");
    // An address probe (RFC 5227, sender 0.0.0.0): a reply would be a conflict.
    raw.send(&arp_request(&[1027], Ipv4Addr::UNSPECIFIED, other));
    assert_eq!(raw.arp_reply(quiet), None, "ARP probe");
    // A second tag inside: no ARP frame for hv_demux (not mis-parsed).
    raw.send(&arp_request(&[1027, 5], other, GW1));
    assert_eq!(raw.arp_reply(quiet), None, "QinQ 1027/5");
    // Untagged from an address no pod has: native traffic for the hv stack,
    // which owns no such address.
    raw.send(&arp_request(&[], other, GW1));
    assert_eq!(raw.arp_reply(quiet), None, "untagged ARP");

    // A disconnected member's VLAN is unknown: no answer; back once reconnected.
    assert!(hv.remove_member("m1").unwrap());
    raw.send(&arp_request(&[1027], other, GW1));
    assert_eq!(raw.arp_reply(quiet), None, "VLAN 1027 without m1");
    hv.add_member("m1", 1027).unwrap();
    raw.send(&arp_request(&[1027], other, GW1));
    assert_eq!(
        raw.arp_reply(wait),
        Some(reply(1027, GW1, other)),
        "VLAN 1027 with m1 again"
    );
}

#[test]
fn errors_name_namespace_and_interface() {
    assert_root();
    let lab = build_lab("be");
    let err = tc::attach_trunk(&lab.node, "nosuch0", &[(A, 1027)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nosuch0") && err.contains(lab.node.name()),
        "{err}"
    );
    let err = tc::attach_hv(&lab.hv, "trunk", &[("m9".to_string(), 1027)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("m9") && err.contains(lab.hv.name()), "{err}");
    let err = tc::attach_hv(
        &lab.hv,
        "trunk",
        &[("m1".to_string(), 1027), ("m2".to_string(), 1027)],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("VLAN 1027") && err.contains("m1"), "{err}");
    let err = tc::attach_hv(&lab.hv, "nosuch1", &[("m1".to_string(), 1027)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nosuch1") && err.contains(lab.hv.name()),
        "{err}"
    );
    let err = tc::attach_trunk(&lab.node, "trunk", &[(A, 0)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VLAN id 0") && err.contains("10.0.1.10"),
        "{err}"
    );
}

#[test]
fn cls_bpf_probe_attaches_on_lo_of_a_scratch_namespace() {
    assert_root();
    let name = format!("cnl-t{}-bp", std::process::id());
    let _guard = NsGuard(vec![name.clone()]);
    let ns = NetNs::create(&name).unwrap();
    let t = Instant::now();
    tc::probe_cls_bpf(&ns).unwrap();
    eprintln!("cls_bpf probe: {:?}", t.elapsed());
    assert!(tc::cls_bpf_available(&ns));
    // The probe leaves nothing on lo.
    assert!(tc::hooked_programs(&ns, "lo", TcHook::Ingress)
        .unwrap()
        .is_empty());
}
