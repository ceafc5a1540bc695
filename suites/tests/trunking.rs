//! ENI-Trunking facts that must be visible on the wire and in the security
//! groups' counters, not only in verdicts.

use cnlab::check::{self, counters};
use cnlab::lab::{Lab, UpOptions};
use cnlab::plan::podeni::podenis;
use cnlab::topology::model::{Proto, Verdict};

fn topology(rel: &str) -> cnlab::topology::Resolved {
    cnlab_suites::topology(&format!("scenarios/{rel}"))
}

/// Every trunk pod's VLAN id, as a tap on its node's trunk decodes it from
/// the 802.1Q header, is the one its PodENI record holds.
#[test]
fn vlan_ids_on_the_trunk_match_the_podeni_records() {
    let r = topology("t4-trunk-cross-node.yaml");
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let records = podenis(lab.plan());
    assert!(records.len() >= 4, "T4 has trunk pods: {records:?}");
    let centos = records
        .iter()
        .find(|p| p.pod == "trunking/centos")
        .expect("centos has a PodENI");
    for target in [("nginx-a", 80), ("busybox", 8080), ("centos-b", 8080)] {
        let rec = records
            .iter()
            .find(|p| p.pod == format!("trunking/{}", target.0))
            .expect("PodENI");
        let to = format!("pod/trunking/{}:{}", target.0, target.1);
        let o = check::observe(
            &lab,
            "vlan",
            "pod/trunking/centos",
            &to,
            Proto::Tcp,
            check::DEFAULT_DEADLINE,
            true,
        );
        let node_of = |instance: &str| format!("trunk/{instance}");
        let seen = |point: &str, hops: &[cnlab::probe::Hop]| -> Option<u16> {
            hops.iter().find(|h| h.point == point).and_then(|h| h.vlan)
        };
        assert_eq!(
            seen(&node_of(&centos.instance_id), &o.request),
            Some(centos.vlan_id),
            "{to}: request on the client's trunk; hops {:?}",
            o.request
        );
        assert_eq!(
            seen(&node_of(&rec.instance_id), &o.request),
            Some(rec.vlan_id),
            "{to}: request on the server's trunk; hops {:?}",
            o.request
        );
        assert_eq!(
            seen(&node_of(&rec.instance_id), &o.reply),
            Some(rec.vlan_id),
            "{to}: reply on the server's trunk; hops {:?}",
            o.reply
        );
    }
    lab.down();
}

/// Probes one expectation of `file` and returns the counters that moved in
/// ENI namespaces.
fn sg_counters_moved_by(file: &str) -> (Lab, cnlab::check::CheckResult, Vec<counters::Moved>) {
    let r = topology(file);
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let e = r.topo.expect.first().expect("an expectation").clone();
    let (before, _) = counters::snapshot(&lab).unwrap();
    let res = check::check_one(&lab, &e);
    let (after, verdicts) = counters::snapshot(&lab).unwrap();
    let moved = counters::moved(&before, &after, &verdicts)
        .into_iter()
        .filter(|m| m.ns.starts_with("eni/"))
        .collect();
    (lab, res, moved)
}

fn member_ns(lab: &Lab, pod: &str) -> String {
    let eni = lab
        .plan()
        .enis
        .iter()
        .find(|e| e.pod.as_deref() == Some(pod))
        .unwrap_or_else(|| panic!("{pod} has a member ENI"));
    format!("eni/{}", eni.id)
}

#[test]
fn the_rule_that_dropped_t5_and_t4b_is_the_servers_default_ingress_drop() {
    for (file, server) in [
        ("t5-trunk-strict-sg.yaml", "trunking/nginx-b"),
        ("t4b-trunk-same-sg-rule-removed.yaml", "trunking/nginx-a"),
    ] {
        let (lab, res, moved) = sg_counters_moved_by(file);
        assert_eq!(
            res.observed.outcome.verdict,
            Verdict::Timeout,
            "{file}: {:?}",
            res.failures
        );
        let ns = member_ns(&lab, server);
        let drop = moved
            .iter()
            .find(|m| m.ns == ns && m.verdict.as_deref() == Some("drop"));
        assert!(
            drop.is_some_and(|m| m.rule == "default ingress drop"),
            "{file}: {server}'s member ENI default drop did not move; moved: {moved:?}"
        );
        lab.down();
    }
}

#[test]
fn same_node_traffic_t3_moves_no_security_group_counter() {
    let (lab, res, moved) = sg_counters_moved_by("t3-same-node-different-sg.yaml");
    assert!(res.passed(), "{:?}", res.failures);
    assert!(
        moved.is_empty(),
        "T3 never meets a security group, yet counters moved: {moved:?}"
    );
    lab.down();
}
