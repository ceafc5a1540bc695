//! Probes, echo servers and taps against real namespaces (root only).
//!
//! Each test wires its own namespaces `cnl-t<pid>-<tag>-<x>` with `ip`; the
//! library under test never shells out. A guard deletes them on drop, also
//! when an assertion fails.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnlab::kernel::netns;
use cnlab::kernel::NetNs;
use cnlab::plan::ServerPlan;
use cnlab::probe::{
    hops, probe, send_raw_frame, Capture, EchoServers, Hop, ProbeOutcome, ProbeSpec, TapPoint, Taps,
};
use cnlab::topology::model::{Proto, RefusedBy, Verdict};

fn require_root() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests create network namespaces: run them as root (sudo -E cargo test -p cnlab --test probe_lab)");
    }
}

/// Namespaces of one test; deleted on drop.
struct Lab {
    nss: Vec<NetNs>,
}

impl Lab {
    fn new(tag: &str, shorts: &[&str]) -> Lab {
        require_root();
        let mut lab = Lab { nss: Vec::new() };
        for s in shorts {
            let name = format!("cnl-t{}-{tag}-{s}", std::process::id());
            let _ = netns::delete(&name);
            lab.nss.push(NetNs::create(&name).unwrap());
            lab.ip(s, &["link", "set", "lo", "up"]);
        }
        lab
    }

    fn ns(&self, short: &str) -> &NetNs {
        self.nss
            .iter()
            .find(|n| n.name().ends_with(&format!("-{short}")))
            .unwrap()
    }

    fn name(&self, short: &str) -> String {
        self.ns(short).name().to_string()
    }

    fn ip(&self, short: &str, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(self.name(short))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name(short),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn exec(&self, short: &str, cmd: &[&str], stdin: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name(short)])
            .args(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} in {}: {}",
            cmd.join(" "),
            self.name(short),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn nft(&self, short: &str, script: &str) {
        self.exec(short, &["nft", "-f", "-"], script);
    }

    fn forwarding(&self, short: &str) {
        self.exec(short, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], "");
    }

    /// veth `a_if` in `a` ↔ `b_if` in `b`, both up.
    fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        self.ip(
            a,
            &[
                "link",
                "add",
                a_if,
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                &self.name(b),
            ],
        );
        self.ip(a, &["link", "set", a_if, "up"]);
        self.ip(b, &["link", "set", b_if, "up"]);
    }

    /// Client `a` (10.77.1.2) — router `r` — server `b` (10.77.2.2).
    fn three(tag: &str) -> Lab {
        let lab = Lab::new(tag, &["a", "r", "b"]);
        lab.veth("a", "eth0", "r", "ra");
        lab.veth("b", "eth0", "r", "rb");
        lab.ip("a", &["addr", "add", "10.77.1.2/24", "dev", "eth0"]);
        lab.ip("r", &["addr", "add", "10.77.1.1/24", "dev", "ra"]);
        lab.ip("r", &["addr", "add", "10.77.2.1/24", "dev", "rb"]);
        lab.ip("b", &["addr", "add", "10.77.2.2/24", "dev", "eth0"]);
        lab.ip("a", &["route", "add", "default", "via", "10.77.1.1"]);
        lab.ip("b", &["route", "add", "default", "via", "10.77.2.1"]);
        lab.forwarding("r");
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.nss.drain(..) {
            let name = ns.name().to_string();
            drop(ns);
            let _ = netns::delete(&name);
        }
    }
}

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const R_B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

fn server(identity: &str, port: u16) -> ServerPlan {
    ServerPlan {
        identity: identity.into(),
        port,
        tcp: true,
        udp: true,
        bind: None,
        http: None,
    }
}

fn spec(
    id: &str,
    proto: Proto,
    dst: Ipv4Addr,
    port: u16,
    src_port: Option<u16>,
    deadline_ms: u64,
) -> ProbeSpec {
    ProbeSpec {
        id: id.into(),
        proto,
        dst,
        port,
        src_port,
        deadline: Duration::from_millis(deadline_ms),
        http: false,
    }
}

fn expect(out: &ProbeOutcome, verdict: Verdict, what: &str) {
    assert_eq!(out.verdict, verdict, "{what}: {out:?}");
}

#[test]
fn tcp_and_udp_connect_refuse_and_time_out() {
    let lab = Lab::three("basic");
    let _servers = EchoServers::start(&[(lab.ns("b"), server("pod/t/b", 8080))]).unwrap();

    for proto in [Proto::Tcp, Proto::Udp] {
        let out = probe(lab.ns("a"), &spec("c1", proto, B, 8080, Some(40001), 2000));
        expect(&out, Verdict::Connected, "to the echo server");
        assert_eq!(out.served_by.as_deref(), Some("pod/t/b"));
        assert_eq!(out.local, Some(SocketAddrV4::new(A, 40001)));
        assert_eq!(
            out.seen_peer, out.local,
            "no NAT in between: the server sees the client's socket"
        );

        // Kernel-chosen source port: still reported back.
        let out = probe(lab.ns("a"), &spec("c2", proto, B, 8080, None, 2000));
        expect(&out, Verdict::Connected, "without a source port");
        assert_eq!(out.seen_peer, out.local);

        // Closed port: TCP answers RST, UDP ICMP port-unreachable, and the
        // outcome says which (the error queue holds the ICMP one).
        let out = probe(lab.ns("a"), &spec("closed", proto, B, 8081, None, 2000));
        expect(&out, Verdict::Refused, "closed port");
        let want = if proto == Proto::Tcp {
            RefusedBy::Rst
        } else {
            RefusedBy::Icmp
        };
        assert_eq!(out.refused_by, Some(want), "{out:?}");
        if proto == Proto::Udp {
            assert!(out.detail.contains(&format!("from {B}")), "{out:?}");
        }
        // Well before the 2 s deadline (a loaded CI machine is slow, not 4× slow).
        assert!(
            out.elapsed < Duration::from_millis(1500),
            "refusal does not wait for the deadline: {out:?}"
        );

        // No route at the router: ICMP net unreachable comes back.
        let out = probe(
            lab.ns("a"),
            &spec(
                "noroute",
                proto,
                Ipv4Addr::new(10, 200, 0, 1),
                80,
                None,
                1500,
            ),
        );
        expect(&out, Verdict::Timeout, "no route at the router");
        assert!(out.detail.contains("unreachable"), "{out:?}");

        // No route in the client itself.
        let out = probe(
            lab.ns("r"),
            &spec(
                "noroute2",
                proto,
                Ipv4Addr::new(10, 200, 0, 1),
                80,
                None,
                1500,
            ),
        );
        expect(&out, Verdict::Timeout, "no route in the client");
        assert!(out.detail.contains("unreachable"), "{out:?}");
        assert!(
            out.elapsed < Duration::from_millis(1200),
            "not the 1.5 s deadline: {out:?}"
        );
    }

    let out = probe(lab.ns("a"), &spec("ping", Proto::Icmp, B, 0, None, 2000));
    expect(&out, Verdict::Connected, "ping");
    assert_eq!(out.local, Some(SocketAddrV4::new(A, 0)));
    // The router's own address answers too; nothing in 10.77.3.0/24 does.
    expect(
        &probe(
            lab.ns("a"),
            &spec("ping-r", Proto::Icmp, R_B, 0, Some(77), 2000),
        ),
        Verdict::Connected,
        "ping router",
    );
    lab.ip("r", &["route", "add", "10.77.3.0/24", "dev", "rb"]);
    let out = probe(
        lab.ns("a"),
        &spec(
            "ping-lost",
            Proto::Icmp,
            Ipv4Addr::new(10, 77, 3, 9),
            0,
            None,
            400,
        ),
    );
    expect(&out, Verdict::Timeout, "ping of nobody");
}

#[test]
fn router_rules_refuse_drop_and_masquerade() {
    let lab = Lab::three("nft");
    let _servers = EchoServers::start(&[
        (lab.ns("b"), server("pod/t/rej", 9090)),
        (lab.ns("b"), server("pod/t/drop", 9191)),
        (lab.ns("b"), server("pod/t/ok", 9292)),
    ])
    .unwrap();
    lab.nft(
        "r",
        "table ip t {
           chain forward_filter { type filter hook forward priority 0;
             tcp dport 9090 reject with icmp type port-unreachable
             udp dport 9090 reject with icmp type port-unreachable
             tcp dport 9191 drop
             udp dport 9191 drop
             icmp type echo-request drop
           }
         }",
    );
    for proto in [Proto::Tcp, Proto::Udp] {
        let out = probe(lab.ns("a"), &spec("rej", proto, B, 9090, None, 2000));
        expect(&out, Verdict::Refused, "nft reject on the router");
        // TCP too: ICMP port-unreachable, as IPVS sends it, not a RST; the
        // router sent it.
        assert_eq!(out.refused_by, Some(RefusedBy::Icmp), "{out:?}");
        assert!(out.detail.contains("type 3 code 3"), "{out:?}");

        let out = probe(lab.ns("a"), &spec("drop", proto, B, 9191, None, 300));
        expect(&out, Verdict::Timeout, "nft drop on the router");
        assert!(
            out.elapsed >= Duration::from_millis(290) && out.elapsed < Duration::from_millis(1800),
            "deadline respected: {out:?}"
        );
        assert!(out.detail.contains("300 ms"), "{out:?}");

        expect(
            &probe(lab.ns("a"), &spec("ok", proto, B, 9292, None, 2000)),
            Verdict::Connected,
            "an allowed port",
        );
    }
    let out = probe(lab.ns("a"), &spec("ping", Proto::Icmp, B, 0, None, 300));
    expect(&out, Verdict::Timeout, "ping dropped by the router");

    // SNAT on the router: the server sees the router's address.
    lab.nft("r", "table ip nat {\n chain post { type nat hook postrouting priority 100; oifname \"rb\" masquerade; }\n}");
    for proto in [Proto::Tcp, Proto::Udp] {
        let out = probe(
            lab.ns("a"),
            &spec("snat", proto, B, 9292, Some(40100), 2000),
        );
        expect(&out, Verdict::Connected, "through masquerade");
        assert_eq!(out.local, Some(SocketAddrV4::new(A, 40100)));
        assert_eq!(out.seen_peer.map(|p| *p.ip()), Some(R_B), "{out:?}");
    }
}

fn points(h: &[Hop]) -> Vec<&str> {
    h.iter().map(|h| h.point.as_str()).collect()
}

fn tap_three(lab: &Lab) -> Taps {
    let p = |id: &str, ifname: Option<&str>| TapPoint {
        id: id.into(),
        ifname: ifname.map(String::from),
    };
    Taps::open(&[
        (lab.ns("a"), vec![p("a", None)]),
        (
            lab.ns("r"),
            vec![p("r/ra", Some("ra")), p("r/rb", Some("rb"))],
        ),
        (lab.ns("b"), vec![p("b", None)]),
    ])
    .unwrap()
}

#[test]
fn taps_order_hops_both_ways() {
    let lab = Lab::three("taps");
    let _servers = EchoServers::start(&[(lab.ns("b"), server("pod/t/b", 8080))]).unwrap();
    // Resolve ARP first, so the probes below are the only traffic.
    expect(
        &probe(lab.ns("a"), &spec("warm", Proto::Icmp, B, 0, None, 2000)),
        Verdict::Connected,
        "warm-up",
    );

    let taps = tap_three(&lab);
    let tcp = probe(
        lab.ns("a"),
        &spec("t", Proto::Tcp, B, 8080, Some(41000), 2000),
    );
    let udp = probe(
        lab.ns("a"),
        &spec("u", Proto::Udp, B, 8080, Some(41001), 2000),
    );
    let icmp = probe(
        lab.ns("a"),
        &spec("i", Proto::Icmp, B, 0, Some(41002), 2000),
    );
    let caps: Vec<Capture> = taps.stop();
    for o in [&tcp, &udp, &icmp] {
        expect(o, Verdict::Connected, "probe under taps");
    }
    assert!(
        caps.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
        "captures come ordered by time"
    );
    assert!(
        caps.iter().any(|c| c.outgoing && c.point == "a"),
        "the client's outgoing packets are seen"
    );

    for (proto, port) in [
        (Proto::Tcp, 41000),
        (Proto::Udp, 41001),
        (Proto::Icmp, 41002),
    ] {
        if std::env::var("CNLAB_DUMP").is_ok() {
            for c in caps
                .iter()
                .filter(|c| c.sport == port || c.dport == port || c.icmp_id == Some(port))
            {
                eprintln!(
                    "{} {} {} out={} {}:{}->{}:{} flags={:?} id={}",
                    c.ts_ns,
                    c.point,
                    c.ifname,
                    c.outgoing,
                    c.src,
                    c.sport,
                    c.dst,
                    c.dport,
                    c.tcp_flags,
                    c.ip_id
                );
            }
        }
        let (req, rep) = hops(&caps, proto, port);
        assert_eq!(
            points(&req),
            ["a", "r/ra", "r/rb", "b"],
            "{proto:?} request: {req:?}"
        );
        assert_eq!(
            points(&rep),
            ["b", "r/rb", "r/ra", "a"],
            "{proto:?} reply: {rep:?}"
        );
        assert!(
            req.iter()
                .all(|h| h.src == A && h.dst == B && h.vlan.is_none() && h.encap.is_none()),
            "{req:?}"
        );
        assert!(rep.iter().all(|h| h.src == B && h.dst == A), "{rep:?}");
    }
    // Another port's packets are not this probe's.
    assert_eq!(hops(&caps, Proto::Tcp, 41999), (vec![], vec![]));
}

#[test]
fn taps_report_vlan_tags() {
    let lab = Lab::new("vlan", &["x", "y"]);
    lab.veth("x", "eth0", "y", "eth0");
    let taps = Taps::open(&[
        (
            lab.ns("x"),
            vec![TapPoint {
                id: "x".into(),
                ifname: Some("eth0".into()),
            }],
        ),
        (
            lab.ns("y"),
            vec![TapPoint {
                id: "y".into(),
                ifname: None,
            }],
        ),
    ])
    .unwrap();
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
        .single_vlan(etherparse::VlanId::try_new(5).unwrap())
        .ipv4([10, 88, 0, 1], [10, 88, 0, 2], 64)
        .udp(5555, 6666)
        .write(&mut frame, b"CNLAB vlan\n")
        .unwrap();
    lab.ns("x")
        .run(|| send_raw_frame("eth0", &frame))
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let caps = taps.stop();
    let at = |point: &str| {
        caps.iter()
            .find(|c| c.point == point && c.sport == 5555)
            .cloned()
    };
    let y = at("y").unwrap_or_else(|| panic!("the peer saw the tagged frame: {caps:?}"));
    assert_eq!(
        (y.vlan, y.src, y.dst, y.dport),
        (
            Some(5),
            Ipv4Addr::new(10, 88, 0, 1),
            Ipv4Addr::new(10, 88, 0, 2),
            6666
        )
    );
    assert!(!y.outgoing);
    let x = at("x").unwrap_or_else(|| panic!("the sender saw its frame leave: {caps:?}"));
    assert_eq!((x.vlan, x.outgoing), (Some(5), true));
}

#[test]
fn taps_see_inside_vxlan() {
    let lab = Lab::new("vxlan", &["x", "y"]);
    lab.veth("x", "eth0", "y", "eth0");
    lab.ip("x", &["addr", "add", "192.168.77.1/24", "dev", "eth0"]);
    lab.ip("y", &["addr", "add", "192.168.77.2/24", "dev", "eth0"]);
    for (me, local, remote, overlay) in [
        ("x", "192.168.77.1", "192.168.77.2", "10.99.0.1/24"),
        ("y", "192.168.77.2", "192.168.77.1", "10.99.0.2/24"),
    ] {
        lab.ip(
            me,
            &[
                "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "4789", "local",
                local, "remote", remote, "dev", "eth0",
            ],
        );
        lab.ip(me, &["addr", "add", overlay, "dev", "vx0"]);
        lab.ip(me, &["link", "set", "vx0", "up"]);
    }
    let _servers = EchoServers::start(&[(lab.ns("y"), server("pod/t/y", 8080))]).unwrap();
    let taps = Taps::open(&[
        (
            lab.ns("x"),
            vec![TapPoint {
                id: "x".into(),
                ifname: None,
            }],
        ),
        (
            lab.ns("y"),
            vec![TapPoint {
                id: "y/underlay".into(),
                ifname: Some("eth0".into()),
            }],
        ),
    ])
    .unwrap();
    let out = probe(
        lab.ns("x"),
        &spec(
            "vx",
            Proto::Tcp,
            Ipv4Addr::new(10, 99, 0, 2),
            8080,
            Some(42000),
            3000,
        ),
    );
    let caps = taps.stop();
    expect(&out, Verdict::Connected, "across vxlan");
    assert_eq!(
        out.seen_peer,
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 42000))
    );

    let encap = "vxlan 192.168.77.1→192.168.77.2:4789 vni 1";
    let (req, rep) = hops(&caps, Proto::Tcp, 42000);
    assert_eq!(points(&req), ["x", "y/underlay"], "{req:?}");
    for h in &req {
        assert_eq!(
            (h.src, h.dst),
            (Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 2)),
            "inner flow: {h:?}"
        );
        assert_eq!(h.encap.as_deref(), Some(encap), "{h:?}");
    }
    assert_eq!(points(&rep), ["y/underlay", "x"], "{rep:?}");
    assert_eq!(
        rep[0].encap.as_deref(),
        Some("vxlan 192.168.77.2→192.168.77.1:4789 vni 1")
    );
    // x sees the SYN on vx0 in the clear, then on eth0 encapsulated.
    let syn_at_x: Vec<&Capture> = caps
        .iter()
        .filter(|c| c.point == "x" && c.sport == 42000 && c.tcp_flags == Some(0x02))
        .collect();
    assert!(
        syn_at_x
            .iter()
            .any(|c| c.ifname == "vx0" && c.encap.is_none()),
        "{syn_at_x:?}"
    );
    assert!(
        syn_at_x
            .iter()
            .any(|c| c.ifname == "eth0" && c.encap.as_deref() == Some(encap)),
        "{syn_at_x:?}"
    );
}

#[test]
fn two_hundred_servers_and_parallel_probes() {
    let lab = Lab::three("scale");
    let plans: Vec<ServerPlan> = (0..200)
        .map(|i| server(&format!("pod/scale/s{i}"), 20000 + i))
        .collect();
    let t0 = Instant::now();
    let servers = EchoServers::start(
        &plans
            .iter()
            .map(|p| (lab.ns("b"), p.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let started = t0.elapsed();
    assert_eq!(servers.len(), 200);

    let t1 = Instant::now();
    let outcomes: Vec<(u16, ProbeOutcome)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8u16)
            .map(|w| {
                let lab = &lab;
                s.spawn(move || {
                    (0..25u16)
                        .map(|k| {
                            let i = w * 25 + k;
                            let proto = if i % 2 == 0 { Proto::Tcp } else { Proto::Udp };
                            (
                                i,
                                probe(
                                    lab.ns("a"),
                                    &spec(&format!("s{i}"), proto, B, 20000 + i, None, 3000),
                                ),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let probed = t1.elapsed();
    assert_eq!(outcomes.len(), 200);
    for (i, o) in &outcomes {
        expect(o, Verdict::Connected, &format!("server {i}"));
        assert_eq!(
            o.served_by.as_deref(),
            Some(format!("pod/scale/s{i}").as_str())
        );
    }
    eprintln!("200 echo servers (tcp+udp) started in {started:?}; 200 probes on 8 threads took {probed:?}");
    drop(servers);
    // Dropped servers are closed: the same port is refused now.
    expect(
        &probe(lab.ns("a"), &spec("gone", Proto::Tcp, B, 20000, None, 1000)),
        Verdict::Refused,
        "after drop",
    );
}

/// kube-proxy's own health server answers with the time of each request:
/// two requests a second apart carry different `currentTime`s, of today's
/// UTC date (asked of `date -u`, not of the code under test); `/livez`
/// from 1.28; anything else 404.
#[test]
fn proxier_health_server_answers_live() {
    use cnlab::plan::{HttpServe, ProxierHealth};
    use std::io::Read;
    let lab = Lab::new("phz", &["a"]);
    let plan = ServerPlan {
        identity: "node/a (kube-proxy healthz)".into(),
        port: 10256,
        tcp: true,
        udp: false,
        bind: None,
        http: Some(HttpServe::ProxierHealth(ProxierHealth {
            node_eligible: true,
            livez: true,
        })),
    };
    let _servers = EchoServers::start(&[(lab.ns("a"), plan)]).unwrap();
    let get = |path: &str| -> String {
        lab.ns("a")
            .run(|| {
                let mut s = std::net::TcpStream::connect("127.0.0.1:10256").unwrap();
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
            .unwrap()
    };
    let current = |r: &str| -> String {
        let at = r.find("\"currentTime\": \"").expect(r) + 16;
        r[at..].split('"').next().unwrap().to_string()
    };
    let today = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y-%m-%d"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let first = get("/healthz");
    std::thread::sleep(Duration::from_millis(1100));
    let second = get("/healthz");
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("\"nodeEligible\": true}"), "{first}");
    assert!(
        first.contains("X-Content-Type-Options: nosniff\r\n"),
        "{first}"
    );
    assert!(
        current(&first).starts_with(today.trim()),
        "{first} vs {today}"
    );
    assert_ne!(
        current(&first),
        current(&second),
        "timestamps are made per request"
    );
    let livez = get("/livez");
    assert!(
        livez.starts_with("HTTP/1.1 200 OK\r\n") && !livez.contains("nodeEligible"),
        "{livez}"
    );
    assert!(get("/metrics").starts_with("HTTP/1.1 404 Not Found\r\n"));
}
