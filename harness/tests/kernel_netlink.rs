//! The netlink socket, sysctls and nft against the real kernel (root only),
//! always inside namespaces this test creates and deletes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cnlab::kernel::netlink::Netlink;
use cnlab::kernel::{netns, nft, sysctl, NetNs};
use cnlab::plan::types::{
    AddrPlan, Backends, LinkKind, LinkPlan, LinkSetting, RoutePlan, Scope, VethEnd,
};

fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "kernel tests need root: run them with sudo"
    );
}

static N: AtomicU32 = AtomicU32::new(0);

/// Namespaces deleted on drop, even when an assertion failed.
struct Lab(Vec<NetNs>);

impl Lab {
    fn new(count: usize) -> Lab {
        require_root();
        let pid = std::process::id();
        let names: Vec<String> = (0..count)
            .map(|_| format!("cnl-t{pid}-{}", N.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let mut lab = Lab(Vec::new());
        for n in names {
            lab.0.push(NetNs::create(&n).unwrap());
        }
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netns::delete(ns.name());
        }
    }
}

fn end(ns: usize, name: &str) -> VethEnd {
    VethEnd {
        ns,
        name: name.into(),
        mac: None,
    }
}

fn addr(dev: &str, a: &str) -> AddrPlan {
    AddrPlan {
        dev: dev.into(),
        addr: a.parse().unwrap(),
        scope: Scope::Global,
        noprefixroute: false,
    }
}

#[test]
fn sysctl_in_a_namespace_leaves_the_root_namespace_alone() {
    let lab = Lab::new(1);
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want = if root_before.trim() == "1" { "0" } else { "1" };
    let inside = lab.0[0]
        .run(|| {
            sysctl::write("net/ipv4/ip_forward", want)?;
            sysctl::read("net/ipv4/ip_forward")
        })
        .unwrap()
        .unwrap();
    assert_eq!(inside, want);
    let root_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(root_before, root_after);
    let err = lab.0[0]
        .run(|| sysctl::write("net/ipv4/no_such_knob", "1"))
        .unwrap()
        .unwrap_err();
    assert!(err.0.contains("net/ipv4/no_such_knob"), "{err}");
}

#[test]
fn a_private_procfs_writes_the_threads_namespace_only() {
    let lab = Lab::new(2);
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let (private, first) = lab.0[0]
        .run(|| {
            let p = sysctl::ProcSys::open();
            p.write("net/ipv4/ip_forward", "1")?;
            Ok::<_, cnlab::kernel::KernelError>((
                p.is_private(),
                sysctl::read("net/ipv4/ip_forward")?,
            ))
        })
        .unwrap()
        .unwrap();
    assert!(
        private,
        "fsopen/fsmount of a procfs was refused: build falls back to /proc/sys (slow with many namespaces)"
    );
    assert_eq!(first, "1");
    let second = lab.0[1]
        .run(|| sysctl::read("net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    assert_eq!(second, "0", "a new namespace starts with forwarding off");
    let root_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(root_before, root_after);
}

#[test]
fn veth_across_namespaces_with_macs_and_readback() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.0[0], &lab.0[1]);
    let mac_a = [0x02, 0, 0, 0, 0, 0xa1];
    let mac_b = [0x02, 0, 0, 0, 0, 0xb1];
    let la = VethEnd {
        ns: 0,
        name: "eth0".into(),
        mac: Some(mac_a),
    };
    let lb = VethEnd {
        ns: 1,
        name: "inst".into(),
        mac: Some(mac_b),
    };
    a.run(|| {
        let mut nl = Netlink::open()?;
        nl.add_veth_to(&la, &lb, b)?;
        nl.add_link(
            &LinkPlan {
                name: "br0".into(),
                kind: LinkKind::Bridge,
                mac: None,
            },
            &Backends::PORTABLE,
        )?;
        nl.add_link(
            &LinkPlan {
                name: "kube-ipvs0".into(),
                kind: LinkKind::Dummy,
                mac: None,
            },
            &Backends::PORTABLE,
        )?;
        nl.apply_setting(&LinkSetting {
            name: "eth0".into(),
            master: Some("br0".into()),
            mtu: Some(1400),
            up: true,
            hairpin: false,
        })?;
        nl.apply_setting(&LinkSetting {
            name: "br0".into(),
            master: None,
            mtu: None,
            up: true,
            hairpin: false,
        })?;
        nl.add_addr(&addr("br0", "10.9.0.1/24"))?;
        nl.add_route(&RoutePlan::via(
            "10.10.0.0/16".parse().unwrap(),
            "10.9.0.2".parse().unwrap(),
            "br0",
            false,
        ))?;
        let dup = nl.add_veth_to(&la, &lb, b).unwrap_err();
        assert!(
            dup.0.contains("creating veth eth0 (peer inst in cnl-t"),
            "{dup}"
        );
        assert!(dup.0.contains("File exists"), "{dup}");
        let missing = nl.add_addr(&addr("nope0", "10.9.9.1/24")).unwrap_err();
        assert!(
            missing
                .0
                .contains("adding address 10.9.9.1/24 to nope0: no link named nope0"),
            "{missing}"
        );
        let links = nl.links()?;
        let eth0 = links.iter().find(|l| l.name == "eth0").unwrap();
        let br0 = links.iter().find(|l| l.name == "br0").unwrap();
        assert_eq!(eth0.mac, Some(mac_a));
        assert_eq!(eth0.kind.as_deref(), Some("veth"));
        assert!(eth0.up && br0.up);
        assert_eq!(eth0.master, Some(br0.index));
        let ipvs = links.iter().find(|l| l.name == "kube-ipvs0").unwrap();
        assert_eq!(
            ipvs.kind.as_deref(),
            Some("bridge"),
            "portable dummy is a bridge"
        );
        assert_eq!(nl.link_index("eth0")?, Some(eth0.index));
        assert_eq!(nl.link_index("nope0")?, None);
        nl.del_route(&RoutePlan::via(
            "10.10.0.0/16".parse().unwrap(),
            "10.9.0.2".parse().unwrap(),
            "br0",
            false,
        ))?;
        let gone = nl.del_route(&RoutePlan::via(
            "10.10.0.0/16".parse().unwrap(),
            "10.9.0.2".parse().unwrap(),
            "br0",
            false,
        ));
        assert!(gone.is_err());
        Ok::<_, cnlab::kernel::KernelError>(())
    })
    .unwrap()
    .unwrap();
    let peer = b.run(|| Netlink::open()?.links()).unwrap().unwrap();
    let inst = peer
        .iter()
        .find(|l| l.name == "inst")
        .expect("peer end placed in namespace b");
    assert_eq!(inst.mac, Some(mac_b));
    let out = std::process::Command::new("ip")
        .args(["-n", a.name(), "-j", "link", "show", "eth0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"mtu\":1400"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn batch_failures_name_their_request() {
    let lab = Lab::new(1);
    lab.0[0]
        .run(|| {
            let mut nl = Netlink::open().unwrap();
            nl.begin_batch();
            nl.add_link(
                &LinkPlan {
                    name: "br0".into(),
                    kind: LinkKind::Bridge,
                    mac: None,
                },
                &Backends::PORTABLE,
            )
            .unwrap();
            nl.add_link(
                &LinkPlan {
                    name: "br0".into(),
                    kind: LinkKind::Bridge,
                    mac: None,
                },
                &Backends::PORTABLE,
            )
            .unwrap();
            // Resolving br0 mid-batch sees the first creation (in order).
            nl.add_addr(&addr("br0", "10.1.0.1/24")).unwrap();
            nl.add_addr(&addr("br0", "10.1.0.1/24")).unwrap();
            let err = nl.finish_batch().unwrap_err();
            assert!(
                err.0.starts_with("creating bridge br0: File exists"),
                "{err}"
            );
            assert!(err.0.contains("1 more failed"), "{err}");
            // Batch mode is over; the socket still works.
            assert!(nl.link_index("br0").unwrap().is_some());
        })
        .unwrap();
}

#[test]
fn nft_applies_inside_the_namespace_and_reports_stderr() {
    let lab = Lab::new(1);
    let ns = &lab.0[0];
    nft::apply(ns, "table inet cnltest {\n  chain input {\n    type filter hook input priority 0;\n    counter\n  }\n}\n").unwrap();
    let text = nft::list_ruleset(ns).unwrap();
    assert!(text.contains("table inet cnltest"), "{text}");
    let json = nft::list_ruleset_json(ns).unwrap();
    assert!(json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o.get("counter").is_some()
            || o["rule"]["expr"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x.get("counter").is_some()))));
    let err = nft::apply(
        ns,
        "table inet broken {\n  chain c {\n    nonsense\n  }\n}\n",
    )
    .unwrap_err();
    assert!(
        err.0.contains(ns.name()) && err.0.contains("Error"),
        "{err}"
    );
    let root = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&root.stdout).contains("cnltest"));
}

/// 200 veth pairs between two namespaces plus an address on each end.
fn veths_and_addrs(batched: bool) -> Duration {
    let lab = Lab::new(2);
    let (a, b) = (&lab.0[0], &lab.0[1]);
    let start = Instant::now();
    a.run(|| {
        let mut nl = Netlink::open().unwrap();
        if batched {
            nl.begin_batch();
        }
        for i in 0..200u32 {
            nl.add_veth_to(&end(0, &format!("va{i}")), &end(1, &format!("vb{i}")), b)
                .unwrap();
        }
        for i in 0..200u32 {
            let a = format!("10.{}.{}.1/30", 100 + i / 64, (i % 64) * 4);
            nl.add_addr(&addr(&format!("va{i}"), &a)).unwrap();
        }
        if batched {
            nl.finish_batch().unwrap();
        }
    })
    .unwrap();
    b.run(|| {
        let mut nl = Netlink::open().unwrap();
        if batched {
            nl.begin_batch();
        }
        for i in 0..200u32 {
            let a = format!("10.{}.{}.2/30", 100 + i / 64, (i % 64) * 4);
            nl.add_addr(&addr(&format!("vb{i}"), &a)).unwrap();
        }
        if batched {
            nl.finish_batch().unwrap();
        }
    })
    .unwrap();
    let took = start.elapsed();
    let n = b.run(|| Netlink::open().unwrap().links().unwrap()).unwrap();
    assert_eq!(n.iter().filter(|l| l.name.starts_with("vb")).count(), 200);
    took
}

#[test]
fn batched_requests_measure() {
    // Interleaved, with a pause: the kernel frees a deleted namespace's
    // veths in the background, which would otherwise slow the next round.
    let (mut one, mut batched) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        one = one.min(veths_and_addrs(false));
        std::thread::sleep(Duration::from_millis(700));
        batched = batched.min(veths_and_addrs(true));
        std::thread::sleep(Duration::from_millis(700));
    }
    println!("200 veth pairs + 400 addresses (best of 3): one-by-one {one:?}, batched {batched:?}");
}
