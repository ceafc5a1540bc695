//! Lab behaviour that no single topology shows: verdicts follow the
//! dataplane, labs run side by side, nothing outlives a lab.

use cnlab_suites::topology;
use std::path::Path;

use cnlab::check::{self, check_one};
use cnlab::cloud::{CloudApi, MockCloud};
use cnlab::lab::{Lab, UpOptions};
use cnlab::topology::model::Verdict;

/// M1: the cross-node expectation holds because of the VPC route entry for
/// the peer node's pod CIDR. Deleting the entry must turn it into a timeout,
/// restoring it must bring it back.
#[test]
fn m1_cross_node_follows_the_vpc_route_entry() {
    let r = topology("scenarios/m1-terway-vpc.yaml");
    let cross = r
        .topo
        .expect
        .iter()
        .find(|e| e.name == "cross-node")
        .expect("m1 has an expectation named cross-node")
        .clone();
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let before = check_one(&lab, &cross);
    assert_eq!(
        before.observed.outcome.verdict,
        Verdict::Connected,
        "{:?}",
        before.failures
    );

    // The route entry whose destination holds the server pod's address.
    let (dst, _) = check::observe::resolve_target(lab.plan(), &cross.to).unwrap();
    let mut cloud = MockCloud::new(&lab);
    let entry = cloud
        .describe_route_entries()
        .into_iter()
        .find(|e| e.dest.contains(&dst))
        .expect("a route entry covers the server pod");
    cloud.delete_route_entry(entry.dest).unwrap();
    let without = check_one(&lab, &cross);
    assert_eq!(
        without.observed.outcome.verdict,
        Verdict::Timeout,
        "with {} deleted: {:?}",
        entry.dest,
        without.observed.outcome
    );

    cloud
        .create_route_entry(entry.dest, &entry.next_hop)
        .unwrap();
    let restored = check_one(&lab, &cross);
    assert_eq!(
        restored.observed.outcome.verdict,
        Verdict::Connected,
        "restored: {:?}",
        restored.failures
    );
    lab.down();
}

/// Two labs from the same YAML in one process, probed at the same time.
#[test]
fn two_labs_from_one_file_do_not_interfere() {
    let r = topology("scenarios/f3-pod-to-pod-no-nat.yaml");
    let a = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let b = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a.id(), b.id());
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| check::run(&a, &r.topo.expect, 4));
        let hb = s.spawn(|| check::run(&b, &r.topo.expect, 4));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    for res in ra.iter().chain(rb.iter()) {
        assert!(res.passed(), "{}: {:?}", res.expect.name, res.failures);
    }
    let names_a = a.namespace_names().to_vec();
    a.down();
    // b is untouched by a's teardown.
    let again = check::run(&b, &r.topo.expect, 4);
    assert!(again.iter().all(|r| r.passed()));
    for n in names_a {
        assert!(
            !Path::new("/run/netns").join(&n).exists(),
            "{n} outlived its lab"
        );
    }
    b.down();
}

/// A probe's outcome does not depend on how many probes came before it.
#[test]
fn outcomes_are_stable_across_repeats() {
    let r = topology("scenarios/f1-flannel-vpc-routes.yaml");
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let first = check::run(&lab, &r.topo.expect, 8);
    for _ in 0..5 {
        let again = check::run(&lab, &r.topo.expect, 8);
        for (x, y) in first.iter().zip(again.iter()) {
            assert_eq!(
                x.observed.outcome.verdict, y.observed.outcome.verdict,
                "{}",
                x.expect.name
            );
            assert_eq!(
                x.observed.outcome.seen_peer.map(|s| *s.ip()),
                y.observed.outcome.seen_peer.map(|s| *s.ip()),
                "{}",
                x.expect.name
            );
        }
    }
    lab.down();
}

/// A lab resolves no address by ARP: every neighbour is pinned up front, so
/// labs never compete for the host-wide neighbour table (1024 dynamic
/// entries shared by all namespaces).
#[test]
fn probing_leaves_no_dynamic_neighbour_entries() {
    for file in [
        "scenarios/f1-flannel-vpc-routes.yaml",
        "scenarios/k-local-traffic-policy.yaml",
        "scenarios/m3-terway-eniip.yaml",
    ] {
        let r = topology(file);
        let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let results = check::run(&lab, &r.topo.expect, 4);
        assert!(
            results.iter().all(|r| r.passed()),
            "{file}: {:?}",
            results
                .iter()
                .flat_map(|r| r.failures.clone())
                .collect::<Vec<_>>()
        );
        for name in lab.namespace_names() {
            let out = std::process::Command::new("ip")
                .args(["-n", name, "neigh", "show"])
                .output()
                .unwrap();
            let dynamic: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.contains("PERMANENT"))
                .map(String::from)
                .collect();
            assert!(
                dynamic.is_empty(),
                "{file}: {name} resolved by ARP: {dynamic:?}"
            );
        }
        lab.down();
    }
}
