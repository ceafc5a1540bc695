//! ENI trunking with the tc eBPF programs, proven with real packets (root).
//!
//! ```text
//!  node: lo 10.0.1.10 (A, VLAN 1027) 10.0.2.20 (B, VLAN 1028) 10.0.1.30 (C, VLAN 1099: no member)
//!        `from X lookup T` → `default via <member gateway> dev trunk onlink`
//!    trunk ══ veth ══ trunk   hv ── m1 ══ eth0  m1ns: 10.0.1.1/24, 192.168.100.1 on lo
//!                                ── m2 ══ eth0  m2ns: 10.0.2.1/24, 192.168.100.1 on lo
//! ```
//!
//! Both member namespaces own the same service address 192.168.100.1, so
//! only the VLAN id decides where a datagram lands.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
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

/// (namespace, link, hook, program) of every program hooked on the
/// test's links, however attached (cls_bpf filter or TCX).
fn hooked(lab: &Lab) -> Vec<String> {
    let mut out = Vec::new();
    for (ns, link, hook) in [
        (&lab.node, "trunk", TcHook::Egress),
        (&lab.node, "trunk", TcHook::Ingress),
        (&lab.hv, "trunk", TcHook::Ingress),
        (&lab.hv, "m1", TcHook::Ingress),
        (&lab.hv, "m2", TcHook::Ingress),
    ] {
        for p in tc::hooked_programs(ns, link, hook).unwrap() {
            out.push(p);
        }
    }
    out.sort();
    out
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
        "{}: attach_trunk (3 pods, 2 hooks): {trunk_time:?}; attach_hv (2 members, 3 hooks): {hv_time:?}",
        mode.name()
    );
    assert_eq!(
        hooked(&lab),
        ["hv_demux", "hv_mux", "hv_mux", "trunk_egress", "vlan_pop"],
        "tc filter show / bpftool net"
    );

    // A → VLAN 1027 → m1 only; the echo comes back through the mux.
    let cap = Capture::start(&lab.hv, "trunk");
    assert_eq!(exchange(&lab, A, "from A"), (Some("m1"), true));
    let seen = cap.stop();
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
    eprintln!("{}: detaching 5 hooks: {:?}", mode.name(), t.elapsed());
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
