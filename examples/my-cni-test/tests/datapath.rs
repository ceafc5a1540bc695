//! "My CNI plugin" under test: every pod is plumbed by the plugin chain in
//! the conflist below (`bin_dir` is where your build puts the plugin), the
//! rest (VPC, ENIs, security groups, kube-proxy) is cnlab's.
//! Needs root: `sudo -E cargo test -p my-cni-test`.

use cnlab::{Lab, Verdict};

const TOPOLOGY: &str = r#"
name: my-cni
cluster:
  kubernetes: "1.30"
  cni: plugins
  proxy: iptables
  service_cidr: 192.168.0.0/16
  cni_plugins:
    bin_dir: /usr/lib/cni
vpc:
  cidr: 10.0.0.0/8
  vswitches: [{id: vsw-a, cidr: 10.0.4.0/24}]
  route_entries:
    - {dest: 172.20.1.0/24, next_hop: node-1}
    - {dest: 172.20.2.0/24, next_hop: node-2}
  security_groups:
    - id: sg-node
      rules:
        - {direction: ingress, action: accept, cidr: 10.0.0.0/8}
        - {direction: ingress, action: accept, cidr: 172.20.0.0/16}
nodes:
  - name: node-1
    vswitch: vsw-a
    security_groups: [sg-node]
    cni_plugins:
      bin_dir: /usr/lib/cni
      conflist:
        cniVersion: 1.0.0
        name: podnet
        plugins:
          - type: bridge
            bridge: cni0
            isGateway: true
            isDefaultGateway: true
            ipam: {type: host-local, ranges: [[{subnet: 172.20.1.0/24}]]}
  - name: node-2
    vswitch: vsw-a
    security_groups: [sg-node]
    cni_plugins:
      bin_dir: /usr/lib/cni
      conflist:
        cniVersion: 1.0.0
        name: podnet
        plugins:
          - type: bridge
            bridge: cni0
            isGateway: true
            isDefaultGateway: true
            ipam: {type: host-local, ranges: [[{subnet: 172.20.2.0/24}]]}
kubernetes:
  - apiVersion: v1
    kind: Pod
    metadata: {name: client}
    spec: {nodeName: node-1, containers: [{name: shell}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: web, labels: {app: web}}
    spec: {nodeName: node-2, containers: [{name: nginx, ports: [{containerPort: 80}]}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: 80}]
"#;

#[test]
fn my_plugin_carries_a_pod_to_a_service_on_another_node() {
    let lab = Lab::from_yaml(TOPOLOGY).expect("the lab comes up (run as root)");

    // Through the Service's cluster IP: kube-proxy (iptables mode) DNATs to
    // the pod on node-2; the pod sees the client's own address.
    let r = lab
        .probe("pod/default/client", "service/default/web:80")
        .expect_connected()
        .source_seen("pod/default/client")
        .served_by("pod/default/web")
        .through(&["eth0/node-1", "vpc", "eth0/node-2", "pod/default/web"])
        .assert();
    println!("{r}");
    assert_eq!(r.source_seen(), lab.ip_of("pod/default/client"));
    assert!(r.crossed("eni/primary:node-2"), "{r}");
    // The first hop is the client pod's interface the plugin made (found
    // after ADD); the pod's id covers each of its interfaces.
    assert_eq!(
        r.request_hops().first().map(String::as_str),
        Some("pod/default/client:eth0")
    );
    assert!(r.crossed("pod/default/client"), "{r}");

    // Nothing listens on 8080: the pod's kernel resets the connection.
    let refused = lab
        .probe("pod/default/client", "pod/default/web:8080")
        .expect_refused()
        .assert();
    assert_eq!(refused.verdict(), Verdict::Refused);

    // Nothing in the VPC has this address: the request dies in the VPC
    // router, which the explanation of a (deliberately) wrong expectation shows.
    let lost = lab
        .probe("pod/default/client", "ip/10.0.4.250:80")
        .timeout(std::time::Duration::from_millis(500))
        .expect_connected()
        .send();
    assert!(!lost.passed());
    assert_eq!(lost.verdict(), Verdict::Timeout);
    println!("{lost}");
    let why = lost.explanation().expect("a failing probe explains itself");
    let last = why.last_seen.as_ref().expect("the taps saw the request");
    assert_eq!(
        last.point, "vpc",
        "the VPC router is where it stops: {lost}"
    );
    assert!(lost.crossed("eni/primary:node-1"), "{lost}");
    assert!(!lost.crossed("eth0/node-2"), "{lost}");
    println!("last seen: {} ({})", last.point, last.ns);
}

#[test]
fn a_panicking_test_still_tears_its_lab_down() {
    let id = std::sync::Mutex::new(String::new());
    let caught = std::panic::catch_unwind(|| {
        let lab = Lab::from_yaml(TOPOLOGY).expect("the lab comes up (run as root)");
        *id.lock().unwrap() = lab.id().to_string();
        // A wrong expectation: the client is not refused.
        lab.probe("pod/default/client", "pod/default/web:80")
            .expect_refused()
            .assert();
    });
    assert!(caught.is_err(), "the wrong expectation panicked");
    let id = id.into_inner().unwrap();
    assert!(!id.is_empty());
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("cnl-{id}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left after the panic: {left:?}");
}
