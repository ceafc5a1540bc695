//! `cnlab pod restart`: a pod's namespace is recreated and re-plumbed from
//! the plan in every CNI mode; the pod keeps its address (a Fixed
//! PodNetworking pod must) and every expectation holds again — with packets.

use cnlab::check;
use cnlab::lab::{Lab, UpOptions};
use cnlab_suites::topology;

fn pod_ipv4(lab: &Lab, pod: &str) -> Vec<String> {
    let ns = lab
        .netns_by_key(pod)
        .expect("the pod has a namespace")
        .name()
        .to_string();
    let out = std::process::Command::new("ip")
        .args(["-n", &ns, "-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains(" lo "))
        .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn restarted_pods_keep_their_address_and_every_expectation_holds() {
    assert!(cnlab::lab::is_root(), "run as root (sudo -E cargo test)");
    for (file, pod) in [
        ("scenarios/m5-terway-trunking.yaml", "pod/default/db"), // Fixed PodNetworking, member ENI
        ("scenarios/t4-trunk-cross-node.yaml", "pod/trunking/nginx-a"),
        ("scenarios/m2-terway-eni.yaml", "pod/default/nginx-b"), // exclusive ENI moved into the pod
        ("scenarios/m3-terway-eniip.yaml", "pod/default/nginx-b"),
        (
            "scenarios/m4-terway-eniip-ipvlan.yaml",
            "pod/default/nginx-b",
        ),
        ("scenarios/f1-flannel-vpc-routes.yaml", "pod/default/web"),
    ] {
        let r = topology(file);
        let mut lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let Some(_) = lab.netns_by_key(pod) else {
            panic!(
                "{file}: no {pod} in the plan; keys: {:?}",
                lab.plan()
                    .namespaces
                    .iter()
                    .map(|n| &n.key)
                    .collect::<Vec<_>>()
            )
        };
        let before = pod_ipv4(&lab, pod);
        let old_ns = lab.netns_by_key(pod).unwrap().name().to_string();
        lab.restart_pod(pod)
            .unwrap_or_else(|e| panic!("{file}: restarting {pod}: {e}"));
        assert_eq!(
            lab.netns_by_key(pod).unwrap().name(),
            old_ns,
            "{file}: same namespace name"
        );
        assert_eq!(
            pod_ipv4(&lab, pod),
            before,
            "{file}: {pod} keeps its address"
        );
        let results = check::run(&lab, &r.topo.expect, 4);
        let failed: Vec<_> = results
            .iter()
            .filter(|r| !r.passed())
            .map(|r| (r.expect.name.clone(), r.failures.clone()))
            .collect();
        assert!(
            failed.is_empty(),
            "{file}: after restarting {pod}: {failed:?}"
        );
        lab.down();
    }
}
