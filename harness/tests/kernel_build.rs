//! `kernel::build` executes a hand-made plan of three namespaces (root only):
//!
//! ```text
//!  h1 ─eth0══r-h1─ r ─br0─┬─ r-h2══eth0─ h2
//!   vx0 ~~~~~~~~~~~ vx0 ──┘               (policy rule + table 100)
//! ```
//! h1 reaches h2 routed through r (10.1.0.2 → 10.2.0.2) and over a vxlan
//! bridged to h2 (10.50.0.1 → 10.50.0.2). The root namespace must not change.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use cnlab::kernel::netlink::Netlink;
use cnlab::kernel::{build, netns, nft, sysctl, NetNs};
use cnlab::plan::types::*;
use cnlab::topology::model::{Cni, ProxyMode};

fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "kernel tests need root: run them with sudo"
    );
}

static N: AtomicU32 = AtomicU32::new(0);

/// Namespaces of one test, deleted on drop (also when an assertion fails).
struct Guard(Vec<String>);

impl Guard {
    fn new(count: usize) -> (Guard, Vec<NetNs>) {
        require_root();
        let pid = std::process::id();
        let names: Vec<String> = (0..count)
            .map(|_| format!("cnl-t{pid}-b{}", N.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let guard = Guard(names.clone());
        let ns = netns::create_all(&names).unwrap();
        (guard, ns)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = build::teardown(&self.0);
    }
}

const R_H1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const H1_VX_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const H2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn addr(dev: &str, a: &str) -> AddrPlan {
    AddrPlan {
        dev: dev.into(),
        addr: net(a),
        scope: Scope::Global,
        noprefixroute: false,
    }
}

fn up(name: &str) -> LinkSetting {
    LinkSetting {
        name: name.into(),
        master: None,
        mtu: None,
        up: true,
        hairpin: false,
    }
}

fn plan() -> LabPlan {
    let (h1, r, h2) = (0, 1, 2);
    let vx = |local: [u8; 4], dev: &str| LinkPlan {
        name: "vx0".into(),
        kind: LinkKind::Vxlan {
            vni: 42,
            local: local.into(),
            port: 4789,
            dev: Some(dev.into()),
            learning: false,
        },
        mac: None,
    };
    let ns_h1 = NsPlan {
        key: "node/h1".into(),
        short: "h1".into(),
        links: vec![LinkPlan {
            mac: Some(H1_VX_MAC),
            ..vx([10, 1, 0, 2], "eth0")
        }],
        link_settings: vec![up("lo"), up("eth0"), up("vx0")],
        addrs: vec![addr("eth0", "10.1.0.2/24"), addr("vx0", "10.50.0.1/24")],
        routes: vec![RoutePlan::via(
            net("0.0.0.0/0"),
            "10.1.0.1".parse().unwrap(),
            "eth0",
            false,
        )],
        neighs: vec![NeighPlan {
            dev: "eth0".into(),
            ip: "10.1.0.1".parse().unwrap(),
            mac: R_H1_MAC,
        }],
        fdbs: vec![
            FdbPlan {
                dev: "vx0".into(),
                mac: [0; 6],
                dst: "10.1.0.1".parse().unwrap(),
            },
            FdbPlan {
                dev: "vx0".into(),
                mac: H2_MAC,
                dst: "10.1.0.1".parse().unwrap(),
            },
        ],
        ..Default::default()
    };
    let ns_r = NsPlan {
        key: "vpc".into(),
        short: "r".into(),
        links: vec![vx([10, 1, 0, 1], "r-h1"), LinkPlan { name: "br0".into(), kind: LinkKind::Bridge, mac: None }],
        link_settings: vec![
            up("lo"),
            up("r-h1"),
            LinkSetting { name: "r-h2".into(), master: Some("br0".into()), mtu: None, up: true, hairpin: false },
            LinkSetting { name: "vx0".into(), master: Some("br0".into()), mtu: None, up: true, hairpin: false },
            up("br0"),
        ],
        addrs: vec![addr("r-h1", "10.1.0.1/24"), addr("br0", "10.2.0.1/24")],
        fdbs: vec![FdbPlan { dev: "vx0".into(), mac: [0; 6], dst: "10.1.0.2".parse().unwrap() }],
        sysctls: vec![
            ("net/ipv4/ip_forward".into(), "1".into()),
            ("net/ipv4/conf/r-h1/accept_local".into(), "1".into()),
        ],
        nft: Some(
            "table inet lab {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n    \
             ip saddr 10.1.0.2 ip daddr 10.2.0.2 counter\n  }\n}\n"
                .into(),
        ),
        ..Default::default()
    };
    let ns_h2 = NsPlan {
        key: "node/h2".into(),
        short: "h2".into(),
        links: vec![LinkPlan {
            name: "kube-ipvs0".into(),
            kind: LinkKind::Dummy,
            mac: None,
        }],
        link_settings: vec![up("lo"), up("eth0"), up("kube-ipvs0")],
        addrs: vec![
            addr("eth0", "10.2.0.2/24"),
            addr("eth0", "10.50.0.2/24"),
            addr("kube-ipvs0", "10.96.0.10/32"),
        ],
        // No route back to 10.1.0.0/24 in main: only the rule makes replies work.
        routes: vec![RoutePlan::via(
            net("10.1.0.0/24"),
            "10.2.0.1".parse().unwrap(),
            "eth0",
            true,
        )
        .in_table(100)],
        rules: vec![RulePlan {
            priority: 100,
            from: Some(net("10.2.0.2/32")),
            to: Some(net("10.1.0.0/24")),
            table: 100,
            ..Default::default()
        }],
        sysctls: vec![("net/ipv4/conf/all/rp_filter".into(), "0".into())],
        ..Default::default()
    };
    LabPlan {
        namespaces: vec![ns_h1, ns_r, ns_h2],
        veths: vec![
            VethPlan {
                a: VethEnd {
                    ns: h1,
                    name: "eth0".into(),
                    mac: None,
                },
                b: VethEnd {
                    ns: r,
                    name: "r-h1".into(),
                    mac: Some(R_H1_MAC),
                },
            },
            VethPlan {
                a: VethEnd {
                    ns: r,
                    name: "r-h2".into(),
                    mac: None,
                },
                b: VethEnd {
                    ns: h2,
                    name: "eth0".into(),
                    mac: Some(H2_MAC),
                },
            },
        ],
        notes: vec![],
        ..LabPlan::empty(
            "kernel-build-test",
            Cni::FlannelVxlan,
            ProxyMode::Iptables,
            "1.24",
            Backends::PORTABLE,
        )
    }
}

/// `ip -j` output without lifetimes (DHCP addresses count down).
fn ip_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip").arg("-j").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    strip(&mut v);
    v
}

fn strip(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for k in ["valid_life_time", "preferred_life_time", "expires"] {
                m.remove(k);
            }
            m.values_mut().for_each(strip);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

fn root_state() -> Vec<String> {
    let mut v: Vec<String> = [&["link"][..], &["addr"], &["route"], &["rule"]]
        .iter()
        .map(|a| ip_json(a).to_string())
        .collect();
    let nft = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    v.push(String::from_utf8_lossy(&nft.stdout).into_owned());
    v
}

fn ping(ns: &NetNs, dst: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            dst,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

fn ip_in(ns: &NetNs, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns.name()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn builds_a_three_namespace_lab_and_leaves_root_alone() {
    require_root();
    let root_before = root_state();
    let (guard, ns) = Guard::new(3);
    let plan = plan();
    build::build(&plan, &ns).unwrap();
    let (h1, r, h2) = (&ns[0], &ns[1], &ns[2]);

    // Netlink read-back.
    let rl = r.run(|| Netlink::open()?.links()).unwrap().unwrap();
    let find = |links: &[cnlab::kernel::netlink::LinkInfo], n: &str| {
        links.iter().find(|l| l.name == n).cloned().unwrap()
    };
    let br0 = find(&rl, "br0");
    assert_eq!(br0.kind.as_deref(), Some("bridge"));
    assert!(br0.up);
    assert_eq!(find(&rl, "r-h2").master, Some(br0.index));
    assert_eq!(find(&rl, "vx0").master, Some(br0.index));
    assert_eq!(find(&rl, "vx0").kind.as_deref(), Some("vxlan"));
    assert_eq!(find(&rl, "r-h1").mac, Some(R_H1_MAC));
    let h2l = h2.run(|| Netlink::open()?.links()).unwrap().unwrap();
    assert_eq!(find(&h2l, "eth0").mac, Some(H2_MAC));
    assert_eq!(
        find(&h2l, "kube-ipvs0").kind.as_deref(),
        Some("bridge"),
        "portable dummy"
    );
    assert_eq!(find(&ns_links(h1), "vx0").mac, Some(H1_VX_MAC));

    // Sysctls, neighbours, fdb, rules as the kernel reports them.
    let (fwd, local) = r
        .run(|| {
            (
                sysctl::read("net/ipv4/ip_forward").unwrap(),
                sysctl::read("net/ipv4/conf/r-h1/accept_local").unwrap(),
            )
        })
        .unwrap();
    assert_eq!((fwd.as_str(), local.as_str()), ("1", "1"));
    let neigh = ip_in(h1, &["neigh", "show", "dev", "eth0"]);
    assert!(
        neigh.contains("10.1.0.1 lladdr 02:00:00:00:01:01 PERMANENT"),
        "{neigh}"
    );
    let fdb = Command::new("bridge")
        .args(["-n", h1.name(), "fdb", "show", "dev", "vx0"])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        fdb.contains("00:00:00:00:00:00 dst 10.1.0.1 self permanent"),
        "{fdb}"
    );
    assert!(
        fdb.contains("02:00:00:00:02:02 dst 10.1.0.1 self permanent"),
        "{fdb}"
    );
    let rules = ip_in(h2, &["rule", "show"]);
    assert!(
        rules.contains("100:\tfrom 10.2.0.2 to 10.1.0.0/24 lookup 100"),
        "{rules}"
    );
    let t100 = ip_in(h2, &["route", "show", "table", "100"]);
    assert!(t100.contains("10.1.0.0/24 via 10.2.0.1 dev eth0"), "{t100}");
    assert!(!ip_in(h2, &["route", "show"]).contains("10.1.0.0/24"));

    // Packets: routed through r (replies need h2's policy rule) and bridged
    // over the vxlan.
    assert!(ping(h1, "10.2.0.2"), "routed ping h1 → h2");
    assert!(ping(h1, "10.50.0.2"), "vxlan ping h1 → h2");
    assert!(
        !ping(h1, "10.50.0.9"),
        "nobody has 10.50.0.9: ping must fail"
    );

    // TCP: a listener opened inside h2, a client inside h1; no NAT on the way.
    let listener = h2.run(|| TcpListener::bind("10.2.0.2:0")).unwrap().unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::thread::spawn({
        let h1 = NetNs::open(h1.name()).unwrap();
        move || {
            h1.run(|| {
                let mut s = TcpStream::connect(("10.2.0.2", port)).unwrap();
                s.write_all(b"hi").unwrap();
            })
            .unwrap()
        }
    });
    let (mut conn, peer) = listener.accept().unwrap();
    let mut buf = [0u8; 2];
    conn.read_exact(&mut buf).unwrap();
    client.join().unwrap();
    assert_eq!(&buf, b"hi");
    assert_eq!(peer.ip().to_string(), "10.1.0.2");

    // The forward counter in r saw the traffic.
    let json = nft::list_ruleset_json(r).unwrap();
    let packets: u64 = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum();
    assert!(packets >= 2, "counter saw {packets} packets: {json}");

    drop(guard);
    for n in ns.iter().map(|n| n.name()) {
        assert!(!NetNs::path_of(n).exists(), "{n} not deleted");
    }
    assert_eq!(root_before, root_state(), "root namespace changed");
}

fn ns_links(ns: &NetNs) -> Vec<cnlab::kernel::netlink::LinkInfo> {
    ns.run(|| Netlink::open()?.links()).unwrap().unwrap()
}

#[test]
fn build_errors_name_the_namespace_and_object() {
    let (_guard, ns) = Guard::new(3);
    let mut p = plan();
    p.namespaces[1].links.push(LinkPlan {
        name: "mv0".into(),
        kind: LinkKind::Macvlan {
            parent: "missing0".into(),
            mode: MacvlanMode::Bridge,
        },
        mac: None,
    });
    let err = build::build(&p, &ns).unwrap_err();
    assert!(
        err.0
            .contains(&format!("in namespace {} (vpc)", ns[1].name())),
        "{err}"
    );
    assert!(
        err.0
            .contains("creating macvlan mv0 on missing0: no link named missing0"),
        "{err}"
    );

    let (_guard2, ns2) = Guard::new(3);
    let mut p = plan();
    p.namespaces[2].nft = Some("table inet broken {\n  chain c {\n    bogus\n  }\n}\n".into());
    let err = build::build(&p, &ns2).unwrap_err();
    assert!(
        err.0.contains("applying nft ruleset") && err.0.contains("Error"),
        "{err}"
    );
}

/// libnftables in-process must mean what the `nft` program means: a ruleset
/// applied through the library lists the same through the `nft` binary, and
/// JSON listing and errors come back too.
#[test]
fn nft_library_matches_the_nft_program() {
    let (_guard, ns) = Guard::new(1);
    let script = "table inet cnlab_sg {\n  set grp_1 {\n    type ipv4_addr\n    flags interval\n    elements = { 10.0.4.24, 10.0.4.26/31, 10.0.5.18 }\n  }\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n    ct state established,related accept\n    iifname \"vpc\" ip saddr @grp_1 counter accept comment \"sg-open inner_access\"\n    iifname \"vpc\" counter drop comment \"default ingress drop\"\n  }\n}\n";
    nft::apply(&ns[0], script).unwrap();
    let by_lib = nft::list_ruleset(&ns[0]).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ns[0].name(), "nft", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(by_lib, String::from_utf8_lossy(&out.stdout));
    assert!(by_lib.contains("10.0.4.26/31"), "{by_lib}");
    let json = nft::list_ruleset_json(&ns[0]).unwrap();
    let rules = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count();
    assert_eq!(rules, 3, "{json}");
    // A bad script is refused as a whole, with nft's own message.
    let err = nft::apply(&ns[0], "add rule inet cnlab_sg forward bogus\n").unwrap_err();
    assert!(err.0.contains("Error"), "{err}");
    assert_eq!(nft::list_ruleset(&ns[0]).unwrap(), by_lib);
}

/// Rulesets applied from many threads at once each land in their own
/// namespace (the library's socket joins the calling thread's namespace).
#[test]
fn nft_library_from_many_threads_lands_in_each_namespace() {
    let (_guard, ns) = Guard::new(12);
    std::thread::scope(|s| {
        for (i, n) in ns.iter().enumerate() {
            s.spawn(move || {
                nft::apply(n, &format!("table ip t{i} {{\n  chain c {{\n    type filter hook input priority 0; policy accept;\n  }}\n}}\n"))
                    .unwrap()
            });
        }
    });
    for (i, n) in ns.iter().enumerate() {
        let l = nft::list_ruleset(n).unwrap();
        assert!(l.contains(&format!("table ip t{i} ")), "{}: {l}", n.name());
        assert_eq!(l.matches("table ").count(), 1, "{}: {l}", n.name());
    }
}
