//! Services in front of trunk pods (T6, T6c): the IPVS re-routing quirk
//! proven from the hops each way, and the security-group rule that turns
//! it into a failure proven from the nft counter that moved.
//! Needs root (`sudo -E cargo test -p cnlab-suites --test trunk_services`).

use cnlab::check::{self, counters, observe::canonical_point};
use cnlab::lab::{Lab, UpOptions};
use cnlab::probe::Hop;
use cnlab::topology::model::{Expectation, Verdict};

const NODE_20: &str = "cn-hongkong.10.0.4.20";

fn topology(rel: &str) -> cnlab::topology::Resolved {
    cnlab_suites::topology(&format!("scenarios/{rel}"))
}

fn up(r: &cnlab::topology::Resolved) -> Lab {
    assert!(
        cnlab::lab::is_root(),
        "run as root (sudo -E cargo test -p cnlab-suites --test trunk_services)"
    );
    Lab::up(r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn expectation<'a>(r: &'a cnlab::topology::Resolved, to: &str) -> &'a Expectation {
    r.topo
        .expect
        .iter()
        .find(|e| e.to == to)
        .unwrap_or_else(|| panic!("the scenario probes {to}"))
}

fn crosses(lab: &Lab, hops: &[Hop], point: &str) -> bool {
    let id = canonical_point(lab.plan(), point);
    hops.iter().any(|h| h.point == id)
}

/// T6: the SYN leaves node .20 through its primary ENI and never touches
/// centos's member ENI; the SYN-ACK comes back through that member ENI.
#[test]
fn t6_request_leaves_by_eth0_and_the_reply_returns_by_the_member_eni() {
    let r = topology("t6-trunk-clusterip-asymmetric.yaml");
    let lab = up(&r);
    let e = expectation(&r, "service/trunking/nginx-a:80");
    let o = check::observe(
        &lab,
        &e.name,
        &e.from,
        &e.to,
        e.proto,
        check::DEFAULT_DEADLINE,
        true,
    );
    assert_eq!(
        o.outcome.verdict,
        Verdict::Connected,
        "{}",
        o.outcome.detail
    );
    let eth0 = format!("eth0/{NODE_20}");
    let member = "eni/member:trunking/centos";
    let trunk = format!("trunk/{NODE_20}");
    let (req, rep) = (&o.request, &o.reply);
    assert!(crosses(&lab, req, &eth0), "request avoided {eth0}: {req:?}");
    assert!(
        !crosses(&lab, req, member),
        "request crossed {member}: {req:?}"
    );
    assert!(
        !crosses(&lab, req, &trunk),
        "request crossed {trunk}: {req:?}"
    );
    assert!(
        crosses(&lab, rep, member),
        "reply avoided {member}: {rep:?}"
    );
    assert!(crosses(&lab, rep, &trunk), "reply avoided {trunk}: {rep:?}");
    assert!(!crosses(&lab, rep, &eth0), "reply crossed {eth0}: {rep:?}");
    // The pod's address left the node unchanged: the request at eth0 still
    // carries it as source (no masquerade), with the backend as destination.
    let at_eth0 = req
        .iter()
        .find(|h| h.point == canonical_point(lab.plan(), &eth0))
        .expect("hop at eth0");
    assert_eq!(at_eth0.src.to_string(), "10.0.4.27", "{at_eth0:?}");
    assert_eq!(at_eth0.dst.to_string(), "10.0.4.30", "{at_eth0:?}");
    lab.down();
}

/// T6c: the ClusterIP probe dies on centos's member ENI by its default
/// ingress drop (the reply is a new flow there); the pod-IP probe in the
/// same lab (probed first) moves no drop counter on that ENI.
#[test]
fn t6c_timeout_is_the_client_member_enis_default_ingress_drop() {
    let r = topology("t6c-trunk-clusterip-client-sg-no-inbound.yaml");
    let lab = up(&r);
    let member_ns = {
        let eni = lab
            .plan()
            .enis
            .iter()
            .find(|e| e.pod.as_deref() == Some("trunking/centos"))
            .expect("centos has a member ENI");
        format!("eni/{}", eni.id)
    };
    let drops_on_member = |to: &str| {
        let e = expectation(&r, to);
        let (before, _) = counters::snapshot(&lab).unwrap();
        let res = check::check_one(&lab, e);
        let (after, verdicts) = counters::snapshot(&lab).unwrap();
        let moved = counters::moved(&before, &after, &verdicts);
        let drop = moved
            .iter()
            .find(|m| m.ns == member_ns && m.rule == "default ingress drop")
            .map(|m| m.packets);
        (res, drop, moved)
    };

    // First: once the ClusterIP probe has failed, nginx-a keeps retransmitting
    // its SYN-ACK into that drop rule for seconds.
    let (res, drop, moved) = drops_on_member("pod/trunking/nginx-a:80");
    assert!(res.passed(), "{:?}", res.failures);
    assert_eq!(
        drop, None,
        "the pod-IP reply is part of a known flow on {member_ns}; moved: {moved:?}"
    );

    let (res, drop, moved) = drops_on_member("service/trunking/nginx-a:80");
    assert_eq!(
        res.observed.outcome.verdict,
        Verdict::Timeout,
        "{:?}",
        res.failures
    );
    assert!(res.passed(), "{:?}", res.failures);
    assert!(
        drop.is_some_and(|n| n > 0),
        "centos's member ENI ({member_ns}) default ingress drop did not move; moved: {moved:?}"
    );
    // The request itself was admitted by nginx-a's group (sg-server).
    assert!(
        moved
            .iter()
            .any(|m| m.rule == "sg-server rule 0" && m.verdict.as_deref() == Some("accept")),
        "nginx-a's group did not admit the request; moved: {moved:?}"
    );
    lab.down();
}
