//! Loading and validating topology files: every rule, with its exact path,
//! line and message. Each case edits the valid example; a `# here` comment in
//! the edit marks the line the problem must point at.

use cnlab::topology::model::Topology;
use cnlab::topology::{load_file, load_str, Loaded, Problem, Report};

const EXAMPLE: &str = include_str!("topology_example.yaml");

/// The example with `old` (which must occur) replaced by `new`.
fn with(old: &str, new: &str) -> String {
    assert!(EXAMPLE.contains(old), "example lacks {old:?}");
    EXAMPLE.replacen(old, new, 1)
}

/// The example with `extra` inserted before the line starting with `before`.
fn insert(before: &str, extra: &str) -> String {
    with(before, &format!("{extra}{before}"))
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line contains {needle:?}"))
}

fn report(text: &str) -> Report {
    match load_str(text, "t.yaml") {
        Ok(l) => panic!(
            "expected problems, got none (warnings {:?})\n{text}",
            l.warnings
        ),
        Err(r) => r,
    }
}

fn loads(text: &str) -> Loaded {
    match load_str(text, "t.yaml") {
        Ok(l) => l,
        Err(r) => panic!("{r}"),
    }
}

fn find<'a>(problems: &'a [Problem], path: &str, line: usize, frag: &str) -> Option<&'a Problem> {
    problems
        .iter()
        .find(|p| p.path == path && p.line == Some(line) && p.message.contains(frag))
}

/// `text` has, among its errors, one at `path` on the line holding `needle`
/// whose message contains `frag`.
fn has(text: &str, path: &str, needle: &str, frag: &str) -> Report {
    let r = report(text);
    let line = line_of(text, needle);
    assert!(
        find(&r.errors, path, line, frag).is_some(),
        "wanted {path} (line {line}) ~ {frag:?}\n{r}"
    );
    r
}

/// As `has`, and it is the only error.
fn only(text: &str, path: &str, needle: &str, frag: &str) {
    let r = has(text, path, needle, frag);
    assert_eq!(r.errors.len(), 1, "expected exactly one error\n{r}");
}

fn warns(text: &str, path: &str, needle: &str, frag: &str) {
    let l = loads(text);
    let line = line_of(text, needle);
    assert!(
        find(&l.warnings, path, line, frag).is_some(),
        "wanted warning {path} (line {line}) ~ {frag:?}: {:#?}",
        l.warnings
    );
}

// ---------------------------------------------------------------- the example

#[test]
fn example_loads_without_problems() {
    let loaded = loads(EXAMPLE);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = &loaded.resolved;
    assert_eq!(r.topo.nodes.len(), 2);
    assert_eq!(r.pods.len(), 2);
    assert_eq!(
        r.pods[1].status.pod_ip,
        Some("172.16.1.10".parse().unwrap())
    );
    assert_eq!(r.services.len(), 1);
    assert_eq!(r.services[0].spec.ports[0].node_port, Some(30080));
    // The field-by-field reader agrees with plain serde on a valid file.
    let serde: Topology = serde_yaml_ng::from_str(EXAMPLE).unwrap();
    assert_eq!(r.topo, serde);
}

#[test]
fn load_file_reads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, EXAMPLE).unwrap();
    assert!(load_file(&good).is_ok());
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, with("    vswitch: vsw-b\n", "    vswitch: vsw-x\n")).unwrap();
    let r = load_file(&bad).unwrap_err();
    assert!(
        r.to_string()
            .starts_with(&format!("{}: 1 problem(s)", bad.display())),
        "{r}"
    );
    let missing = load_file(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(
        missing.errors[0].message.contains("cannot read"),
        "{missing}"
    );
}

#[test]
fn problem_display_matches_the_spec() {
    let text = with("    vswitch: vsw-b\n", "    vswitch: vsw-x\n");
    let r = report(&text);
    let line = line_of(&text, "vsw-x");
    assert_eq!(
        r.errors[0].to_string(),
        format!("nodes[1].vswitch: unknown vswitch \"vsw-x\" (line {line})")
    );
    let shown = r.to_string();
    assert!(
        shown.starts_with("t.yaml: 1 problem(s)\n  nodes[1].vswitch"),
        "{shown}"
    );
}

#[test]
fn report_lists_every_problem_sorted_by_line() {
    let text = with("    vswitch: vsw-b\n", "    vswitch: vsw-x\n")
        .replace("  cni: flannel\n", "  cni: calico\n");
    let r = report(&text);
    let shown = r.to_string();
    let first = shown.find("cluster.cni").unwrap();
    let second = shown.find("nodes[1].vswitch").unwrap();
    assert!(first < second, "{shown}");
    assert!(shown.starts_with("t.yaml: 2 problem(s)"), "{shown}");
    let _: &dyn std::error::Error = &r;
}

#[test]
fn five_problems_are_reported_at_once() {
    let text = EXAMPLE
        .replace("  cni: flannel\n", "  cni: calico\n")
        .replace("    vswitch: vsw-b\n", "    vswitch: vsw-x\n")
        .replace("priority: 10}", "priority: 0}")
        .replace("      nodeName: node-a\n", "      nodeName: node-z\n")
        .replace(
            "    to: service/demo/nginx:80\n",
            "    to: service/demo/nginx\n",
        );
    let r = report(&text);
    let paths: Vec<&str> = r.errors.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        {
            let mut p = paths.clone();
            p.sort();
            p
        },
        vec![
            "cluster.cni",
            "expect[1].to",
            "kubernetes[0].spec.nodeName",
            "nodes[1].vswitch",
            "vpc.security_groups[0].rules[1].priority",
        ],
        "{r}"
    );
    assert!(r.errors.iter().all(|p| p.line.is_some()), "{r}");
}

// ---------------------------------------------------------------- YAML syntax and shape

#[test]
fn yaml_syntax_error_has_a_line() {
    let text = with("  cni: flannel\n", "  cni: [flannel\n");
    let r = report(&text);
    assert_eq!(r.errors.len(), 1, "{r}");
    assert!(r.errors[0].message.contains("YAML syntax"), "{r}");
    assert!(r.errors[0].line.is_some(), "{r}");
}

#[test]
fn a_document_that_is_no_mapping_is_an_error() {
    for text in ["", "- a\n- b\n", "just text\n"] {
        let r = report(text);
        assert_eq!(r.errors.len(), 1, "{r}");
        assert!(r.errors[0].message.contains("expected a topology"), "{r}");
    }
}

#[test]
fn sections_of_the_wrong_shape() {
    let text = with(
        "externals:\n  - {name: office-ecs, ip: 10.0.4.72, vswitch: vsw-a, security_groups: [sg-node], ports: [443]}\n",
        "externals: 3 # here\n",
    );
    // References to externals are not checked against a list that could not be read.
    only(
        &text,
        "externals",
        "# here",
        "expected a list, found the number 3",
    );
    only(
        &with(
            "  - name: node-b\n",
            "  - node-b # here\n  - name: node-c\n",
        ),
        "nodes[1]",
        "# here",
        "expected a node",
    );
}

#[test]
fn missing_required_keys_point_at_their_mapping() {
    let text = with(
        "    ip: 10.0.5.20\n    vswitch: vsw-b\n",
        "    ip: 10.0.5.20\n",
    );
    only(
        &text,
        "nodes[1].vswitch",
        "name: node-b",
        "missing required key `vswitch`",
    );
}

#[test]
fn wrong_value_types() {
    only(
        &with("    ip: 10.0.5.20\n", "    ip: 10.0.5.300 # here\n"),
        "nodes[1].ip",
        "# here",
        "\"10.0.5.300\" is not an IPv4 address",
    );
    only(
        &with("cidr: 10.0.5.0/24}", "cidr: 10.0.5.0}"),
        "vpc.vswitches[1].cidr",
        "vsw-b",
        "is not an IPv4 CIDR",
    );
    only(
        &with("ports: [22]", "ports: [22, 0]"),
        "nodes[1].ports[1]",
        "ports: [22",
        "1..=65535",
    );
    only(
        &with("enis: {max: 3,", "enis: {max: lots,"),
        "nodes[1].enis.max",
        "enis:",
        "whole number",
    );
}

// ---------------------------------------------------------------- enums list accepted values

#[test]
fn enum_errors_list_the_accepted_values() {
    only(
        &with("  cni: flannel\n", "  cni: calico\n"),
        "cluster.cni",
        "calico",
        "unknown cni \"calico\" (accepted: flannel, flannel-vxlan, terway-vpc, terway-eni, terway-eniip, terway-eniip-ipvlan, terway-trunking, plugins)",
    );
    only(
        &with("  proxy: ipvs\n", "  proxy: nft\n"),
        "cluster.proxy",
        "nft",
        "accepted: ipvs, iptables",
    );
    only(
        &with(
            "    result: connected\n    source: client\n",
            "    result: works\n",
        ),
        "expect[0].result",
        "works",
        "accepted: connected, refused, timeout",
    );
    only(
        &with("    proto: icmp\n", "    proto: sctp\n"),
        "expect[3].proto",
        "sctp",
        "accepted: tcp, udp, icmp",
    );
    only(
        &with("{direction: egress,", "{direction: out,"),
        "vpc.security_groups[0].rules[2].direction",
        "direction: out",
        "accepted: ingress, egress",
    );
    only(
        &with(
            "{direction: egress, action: accept",
            "{direction: egress, action: allow",
        ),
        "vpc.security_groups[0].rules[2].action",
        "action: allow",
        "accepted: accept, drop",
    );
    only(
        &with("proto: tcp, ports:", "proto: gre, ports:"),
        "vpc.security_groups[0].rules[1].proto",
        "proto: gre",
        "accepted: tcp, udp, icmp, all",
    );
}

// ---------------------------------------------------------------- unknown keys and kinds

#[test]
fn unknown_topology_keys_are_errors_with_a_suggestion() {
    only(
        &with("description:", "colour: red\ndescription:"),
        "colour",
        "colour",
        "unknown key `colour` (known here: name, description",
    );
    only(
        &with("    enis: {max: 3,", "    zonee: x\n    enis: {max: 3,"),
        "nodes[1].zonee",
        "zonee",
        "unknown key",
    );
    // The misspellings a support engineer makes: each names the right key.
    for (old, new, path, want) in [
        (
            "vpc:\n",
            "vpc:\n  secuirty_groups: []\n",
            "vpc.secuirty_groups",
            "security_groups",
        ),
        (
            "    result: connected",
            "    result: connected\n    sorce: client",
            "expect[0].sorce",
            "source",
        ),
    ] {
        let text = with(old, new);
        let needle = path.rsplit('.').next().unwrap();
        only(&text, path, needle, &format!("did you mean `{want}`?"));
    }
}

#[test]
fn kubectl_lists_and_further_documents_are_kubernetes_objects() {
    let text = format!(
        "{EXAMPLE}---\napiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    \
         metadata: {{name: extra, namespace: demo}}\n    spec: {{nodeName: node-a, restartPolicy: Always}}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: more, namespace: demo}}\nspec: {{nodeName: nowhere}}\n"
    );
    let r = report(&text);
    // The error and the warning name where the object is written.
    assert!(
        find(
            &r.errors,
            "document3.spec.nodeName",
            line_of(&text, "nodeName: nowhere"),
            "unknown node"
        )
        .is_some(),
        "{r}"
    );
    assert!(
        find(
            &r.warnings,
            "document2.items[0].spec.restartPolicy",
            line_of(&text, "restartPolicy: Always"),
            "not modelled"
        )
        .is_some(),
        "{r}"
    );
    let ok = loads(&text.replace("nodeName: nowhere", "nodeName: node-b"));
    let names: Vec<&str> = ok
        .resolved
        .pods
        .iter()
        .map(|p| p.metadata.name.as_str())
        .collect();
    assert!(
        names.contains(&"extra") && names.contains(&"more"),
        "{names:?}"
    );
    // `kind: List` inside `kubernetes:` too.
    let inner = with(
        "kubernetes:\n",
        "kubernetes:\n  - apiVersion: v1\n    kind: List\n    items:\n      - {apiVersion: v1, kind: Pod, metadata: {name: listed, namespace: demo}, spec: {nodeName: node-a}}\n",
    );
    let l = loads(&inner);
    assert!(l.resolved.pods.iter().any(|p| p.metadata.name == "listed"));
}

#[test]
fn byte_order_mark_duplicate_keys_and_tabs() {
    loads(&format!("\u{feff}{EXAMPLE}"));
    let dup = with("description:", "name: again\ndescription:");
    let r = report(&dup);
    assert_eq!(r.errors.len(), 1, "{r}");
    assert_eq!(r.errors[0].line, Some(line_of(&dup, "name: again")));
    assert!(
        r.errors[0]
            .message
            .contains("first at line 1, again at line"),
        "{r}"
    );
    let tab = with("vpc:\n  ", "vpc:\n\t");
    let r = report(&tab);
    assert!(r.errors[0].message.contains("tab"), "{r}");
}

#[test]
fn services_without_endpoints_warn() {
    warns(
        &insert(
            "expect:\n",
            "  - apiVersion: v1\n    kind: Service\n    metadata: {name: lonely, namespace: demo}\n    \
             spec: {selector: {app: nobody}, ports: [{port: 80}]}\n",
        ),
        "kubernetes[3].spec.selector",
        "app: nobody",
        "matches no pod",
    );
    warns(
        &with("targetPort: 80,", "targetPort: http,"),
        "kubernetes[2].spec.ports[0].targetPort",
        "targetPort: http",
        "defines a port named \"http\"",
    );
}

#[test]
fn unmodelled_kubernetes_fields_warn_but_status_and_bookkeeping_do_not() {
    let text = with(
        "      nodeName: node-a\n",
        "      nodeName: node-a\n      restartPolicy: Always\n",
    )
    .replace(
        "    status: {podIP: 172.16.1.10}\n",
        "    status: {podIP: 172.16.1.10, phase: Running, hostIP: 10.0.5.20}\n",
    )
    .replace(
        "      name: nginx\n      namespace: demo\n",
        "      name: nginx\n      namespace: demo\n      uid: 1234\n      resourceVersion: \"99\"\n      \
         creationTimestamp: \"2024-01-01T00:00:00Z\"\n      generation: 2\n      selfLink: /x\n      \
         managedFields: [{manager: kubectl}]\n      ownerReferences: []\n      finalizers: []\n      generateName: nginx-\n",
    );
    let l = loads(&text);
    let paths: Vec<&str> = l.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "kubernetes[0].spec.restartPolicy",
            "kubernetes[2].metadata.generateName"
        ],
        "{:#?}",
        l.warnings
    );
    assert_eq!(l.warnings[0].line, Some(line_of(&text, "restartPolicy")));
}

#[test]
fn unknown_kinds_warn_and_are_skipped() {
    let text = insert(
        "expect:\n",
        "  - apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: web}\n",
    );
    let l = loads(&text);
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!(l.warnings[0].path, "kubernetes[3].kind");
    assert!(l.warnings[0].message.contains("Deployment"));
    assert_eq!(l.resolved.pods.len(), 2);
}

#[test]
fn kubernetes_objects_need_a_kind() {
    only(
        &insert("expect:\n", "  - {apiVersion: v1} # here\n"),
        "kubernetes[3].kind",
        "# here",
        "missing required key `kind`",
    );
}

#[test]
fn every_bad_field_of_a_kubernetes_object_is_reported() {
    let text = with("{containerPort: 80}", "{containerPort: http}").replace(
        "    status: {podIP: 172.16.1.10}\n",
        "    status: {podIP: not-an-ip}\n",
    );
    let r = report(&text);
    assert_eq!(r.errors.len(), 2, "{r}");
    assert!(
        find(
            &r.errors,
            "kubernetes[1].spec.containers[0].ports[0].containerPort",
            line_of(&text, "http"),
            "invalid"
        )
        .is_some(),
        "{r}"
    );
    assert!(
        find(
            &r.errors,
            "kubernetes[1].status.podIP",
            line_of(&text, "not-an-ip"),
            ""
        )
        .is_some(),
        "{r}"
    );
}

// ---------------------------------------------------------------- duplicates

#[test]
fn duplicate_names_and_ids() {
    has(
        &with("  - name: node-b\n", "  - name: node-a # here\n"),
        "nodes[1].name",
        "# here",
        "duplicate node \"node-a\" (first at nodes[0].name, line 25)",
    );
    only(
        &with(
            "load_balancers:\n",
            "  - {name: office-ecs, ip: 10.0.4.73, vswitch: vsw-a} # here\nload_balancers:\n",
        ),
        "externals[1].name",
        "# here",
        "duplicate external \"office-ecs\"",
    );
    has(
        &with("{id: vsw-b,", "{id: vsw-a,"),
        "vpc.vswitches[1].id",
        "cn-hongkong-c",
        "duplicate vswitch \"vsw-a\"",
    );
    only(
        &with("nodes:\n", "    - {id: sg-node} # here\nnodes:\n"),
        "vpc.security_groups[1].id",
        "# here",
        "duplicate security group \"sg-node\"",
    );
    only(
        &insert(
            "kubernetes:\n",
            "  - {id: lb-clb1, ip: 192.0.2.11} # here\n",
        ),
        "load_balancers[1].id",
        "# here",
        "duplicate load balancer \"lb-clb1\"",
    );
    only(
        &insert("expect:\n", "  - apiVersion: v1\n    kind: Pod\n    metadata: {name: nginx, namespace: demo} # here\n    spec: {nodeName: node-a}\n"),
        "kubernetes[3].metadata.name",
        "# here",
        "duplicate pod \"demo/nginx\" (first at kubernetes[1].metadata.name",
    );
    only(
        &insert("expect:\n", "  - apiVersion: v1\n    kind: Service\n    metadata: {name: nginx, namespace: demo} # here\n"),
        "kubernetes[3].metadata.name",
        "# here",
        "duplicate service \"demo/nginx\"",
    );
    // Same name in another namespace is fine, and expectation names may repeat.
    loads(&insert("expect:\n", "  - apiVersion: v1\n    kind: Pod\n    metadata: {name: nginx, namespace: other}\n    spec: {nodeName: node-a}\n"));
    loads(&with(
        "  - name: clusterip\n",
        "  - name: pod to pod across nodes\n",
    ));
}

// ---------------------------------------------------------------- references

#[test]
fn unknown_references() {
    only(
        &with("    vswitch: vsw-b\n", "    vswitch: vsw-x\n"),
        "nodes[1].vswitch",
        "vsw-x",
        "unknown vswitch \"vsw-x\"",
    );
    only(
        &with(
            "    security_groups: [sg-node]\n    enis",
            "    security_groups: [sg-node, sg-x]\n    enis",
        ),
        "nodes[1].security_groups[1]",
        "sg-x",
        "unknown security group \"sg-x\"",
    );
    only(
        &with(
            "security_groups: [sg-node], ports: [443]",
            "security_groups: [sg-y], ports: [443]",
        ),
        "externals[0].security_groups[0]",
        "sg-y",
        "unknown security group \"sg-y\"",
    );
    only(
        &with("next_hop: node-a}", "next_hop: node-q}"),
        "vpc.route_entries[0].next_hop",
        "node-q",
        "unknown node \"node-q\"",
    );
    only(
        &with("next_hop: 10.0.5.20}", "next_hop: 11.0.5.20}"),
        "vpc.route_entries[1].next_hop",
        "11.0.5.20",
        "outside vpc.cidr 10.0.0.0/8",
    );
    only(
        &with("      nodeName: node-a\n", "      nodeName: node-z\n"),
        "kubernetes[0].spec.nodeName",
        "node-z",
        "unknown node \"node-z\"",
    );
    only(
        &with(
            "    spec:\n      nodeName: node-a\n",
            "    spec: # here\n      hostNetwork: false\n",
        ),
        "kubernetes[0].spec.nodeName",
        "# here",
        "a pod needs spec.nodeName",
    );
}

#[test]
fn podnetworking_references() {
    let text = insert(
        "expect:\n",
        "  - apiVersion: network.alibabacloud.com/v1beta1\n    kind: PodNetworking\n    metadata: {name: strict}\n    spec:\n      \
         vSwitchOptions: [vsw-a, vsw-q]\n      securityGroupIDs: [sg-q]\n",
    );
    let r = report(&text);
    assert_eq!(r.errors.len(), 2, "{r}");
    assert!(
        find(
            &r.errors,
            "kubernetes[3].spec.vSwitchOptions[1]",
            line_of(&text, "vsw-q"),
            "unknown vswitch \"vsw-q\""
        )
        .is_some(),
        "{r}"
    );
    assert!(
        find(
            &r.errors,
            "kubernetes[3].spec.securityGroupIDs[0]",
            line_of(&text, "sg-q"),
            "unknown security group \"sg-q\""
        )
        .is_some(),
        "{r}"
    );
}

#[test]
fn load_balancer_backends() {
    let lb = |backend: &str| {
        with(
            "backends: [{external: office-ecs, port: 443}]",
            &format!("backends: [{backend}]"),
        )
    };
    let path = "load_balancers[0].listeners[0].backends[0]";
    only(
        &lb("{external: nobody, port: 443}"),
        &format!("{path}.external"),
        "nobody",
        "unknown external \"nobody\"",
    );
    only(
        &lb("{node: node-q, port: 443}"),
        &format!("{path}.node"),
        "node-q",
        "unknown node \"node-q\"",
    );
    only(
        &lb("{pod: demo/ghost, port: 80}"),
        &format!("{path}.pod"),
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
    only(
        &lb("{port: 80}"),
        path,
        "{port: 80}",
        "exactly one of external, node, pod",
    );
    only(
        &lb("{node: node-a, pod: demo/nginx, port: 80}"),
        path,
        "node-a, pod",
        "exactly one of",
    );
    loads(&lb(
        "{pod: demo/nginx, port: 80}, {pod: pod/demo/nginx, port: 80}, {node: node-b, port: 30080}",
    ));
}

#[test]
fn service_checks() {
    only(
        &with("      type: NodePort\n", "      type: Nodeport\n"),
        "kubernetes[2].spec.type",
        "Nodeport",
        "accepted: ClusterIP, NodePort, LoadBalancer, ExternalName",
    );
    only(
        &with("protocol: TCP}", "protocol: SCTP}"),
        "kubernetes[2].spec.ports[0].protocol",
        "SCTP",
        "accepted: TCP, UDP",
    );
    only(
        &with(
            "      type: NodePort\n",
            "      type: NodePort\n      clusterIP: 10.96.0.10\n",
        ),
        "kubernetes[2].spec.clusterIP",
        "10.96.0.10",
        "outside cluster.service_cidr 192.168.0.0/16",
    );
    only(
        &insert(
            "expect:\n",
            "  - apiVersion: v1\n    kind: Service\n    metadata: {name: other, namespace: demo}\n    spec: {ports: [{port: 81, nodePort: 30080}]} # here\n",
        ),
        "kubernetes[3].spec.ports[0].nodePort",
        "# here",
        "nodePort 30080 is already used (kubernetes[2].spec.ports[0].nodePort",
    );
    let text = with(
        "      namespace: demo\n    spec:",
        "      namespace: demo\n      annotations:\n        service.beta.kubernetes.io/alibaba-cloud-loadbalancer-id: lb-q\n    spec:",
    );
    only(
        &text,
        "kubernetes[2].metadata.annotations[\"service.beta.kubernetes.io/alibaba-cloud-loadbalancer-id\"]",
        "lb-q",
        "unknown load balancer \"lb-q\"",
    );
    loads(&text.replace("lb-q", "lb-clb1"));
}

// ---------------------------------------------------------------- CIDRs

#[test]
fn vswitch_cidrs() {
    has(
        &with("cidr: 10.0.5.0/24}", "cidr: 11.0.5.0/24}"),
        "vpc.vswitches[1].cidr",
        "11.0.5.0",
        "vswitch cidr 11.0.5.0/24 is outside vpc.cidr 10.0.0.0/8",
    );
    has(
        &with("cidr: 10.0.5.0/24}", "cidr: 10.0.4.128/25}"),
        "vpc.vswitches[1].cidr",
        "10.0.4.128",
        "overlaps vswitch vsw-a (10.0.4.0/24)",
    );
    has(
        &with("cidr: 10.0.5.0/24}", "cidr: 10.0.5.7/24}"),
        "vpc.vswitches[1].cidr",
        "10.0.5.7",
        "host bits set (did you mean 10.0.5.0/24?)",
    );
}

#[test]
fn pod_and_service_cidrs() {
    has(
        &with("  pod_cidr: 172.16.0.0/16\n", "  pod_cidr: 10.244.0.0/16\n"),
        "cluster.pod_cidr",
        "10.244",
        "pod_cidr 10.244.0.0/16 overlaps vpc.cidr 10.0.0.0/8",
    );
    only(
        &with(
            "  service_cidr: 192.168.0.0/16\n",
            "  service_cidr: 172.16.0.0/12\n",
        ),
        "cluster.pod_cidr",
        "pod_cidr:",
        "overlaps service_cidr 172.16.0.0/12",
    );
    only(
        &with(
            "  service_cidr: 192.168.0.0/16\n",
            "  service_cidr: 10.96.0.0/12\n",
        ),
        "cluster.service_cidr",
        "10.96",
        "service_cidr 10.96.0.0/12 overlaps vpc.cidr 10.0.0.0/8",
    );
    only(
        &with("  service_cidr: 192.168.0.0/16\n", ""),
        "cluster.service_cidr",
        "cluster:",
        "Services but no cluster.service_cidr",
    );
}

#[test]
fn pod_cidr_is_required_for_flannel_and_terway_vpc() {
    for cni in ["flannel", "flannel-vxlan", "terway-vpc"] {
        let text = with(
            "  cni: flannel\n  proxy: ipvs\n",
            &format!("  cni: {cni}\n  proxy: ipvs\n"),
        )
        .replace("  pod_cidr: 172.16.0.0/16\n", "");
        only(
            &text,
            "cluster.pod_cidr",
            "cluster:",
            &format!("cni {cni} takes pod addresses from cluster.pod_cidr"),
        );
    }
    let eni = with("  cni: flannel\n", "  cni: terway-eniip\n")
        .replace("  pod_cidr: 172.16.0.0/16\n", "")
        .replace(
            "    status: {podIP: 172.16.1.10}\n",
            "    status: {podIP: 10.0.5.30}\n",
        );
    loads(&eni);
}

// ---------------------------------------------------------------- addresses

#[test]
fn node_and_external_addresses() {
    only(
        &with("    ip: 10.0.5.20\n", "    ip: 10.0.6.20\n"),
        "nodes[1].ip",
        "10.0.6.20",
        "10.0.6.20 is outside vswitch vsw-b (10.0.5.0/24)",
    );
    for last in [0, 253, 254, 255] {
        let text = with("    ip: 10.0.5.20\n", &format!("    ip: 10.0.5.{last}\n"));
        only(
            &text,
            "nodes[1].ip",
            &format!("ip: 10.0.5.{last}"),
            "is reserved in vswitch vsw-b",
        );
    }
    only(
        &with("ip: 10.0.4.72,", "ip: 10.0.4.20,"),
        "externals[0].ip",
        "office-ecs, ip",
        "10.0.4.20 is already used by node node-a (nodes[0].ip, line 26)",
    );
    only(
        &with("ip: 10.0.4.72,", "ip: 10.0.4.254,"),
        "externals[0].ip",
        "office-ecs, ip",
        "reserved in vswitch vsw-a",
    );
    only(
        &with("    ip: 192.0.2.10\n", "    ip: 10.0.4.72\n"),
        "load_balancers[0].ip",
        "    ip: 10.0.4.72",
        "already used by external office-ecs",
    );
}

#[test]
fn internet_and_vpc_externals() {
    let add = |ext: &str| insert("load_balancers:\n", &format!("  - {ext} # here\n"));
    loads(&add("{name: internet, ip: 203.0.113.7, internet: true}"));
    only(
        &add("{name: internet, ip: 203.0.113.7, vswitch: vsw-a, internet: true}"),
        "externals[1].vswitch",
        "# here",
        "an internet host has no vswitch",
    );
    only(
        &add("{name: internet, ip: 10.9.9.9, internet: true}"),
        "externals[1].ip",
        "# here",
        "internet host 10.9.9.9 is inside vpc.cidr 10.0.0.0/8",
    );
    only(
        &add("{name: ecs2, ip: 10.0.4.80}"),
        "externals[1].vswitch",
        "# here",
        "needs a vswitch (or internet: true)",
    );
    only(
        &add("{name: ecs2, ip: 10.0.4.80, vswitch: vsw-z}"),
        "externals[1].vswitch",
        "# here",
        "unknown vswitch \"vsw-z\"",
    );
}

#[test]
fn pinned_pod_addresses() {
    let pod2 = |ip: &str| {
        insert("  - apiVersion: v1\n    kind: Service\n", &format!("  - apiVersion: v1\n    kind: Pod\n    metadata: {{name: p2, namespace: demo}}\n    spec: {{nodeName: node-a}}\n    status: {{podIP: {ip}}} # here\n"))
    };
    only(
        &pod2("172.16.1.10"),
        "kubernetes[2].status.podIP",
        "# here",
        "172.16.1.10 is already used by pod demo/nginx (kubernetes[1].status.podIP",
    );
    only(
        &pod2("172.17.0.5"),
        "kubernetes[2].status.podIP",
        "# here",
        "pod IP 172.17.0.5 is outside cluster.pod_cidr 172.16.0.0/16 (cni flannel",
    );
    only(
        &pod2("10.0.4.20"),
        "kubernetes[2].status.podIP",
        "# here",
        "outside cluster.pod_cidr",
    );
    // Terway ENI modes take pod addresses from vSwitches.
    let eni = |ip: &str| {
        with("  cni: flannel\n", "  cni: terway-eniip\n")
            .replace("  pod_cidr: 172.16.0.0/16\n", "")
            .replace(
                "    status: {podIP: 172.16.1.10}\n",
                &format!("    status: {{podIP: {ip}}} # here\n"),
            )
    };
    loads(&eni("10.0.5.30"));
    only(
        &eni("10.0.9.30"),
        "kubernetes[1].status.podIP",
        "# here",
        "pod IP 10.0.9.30 is in no vswitch (cni terway-eniip",
    );
    only(
        &eni("10.0.5.255"),
        "kubernetes[1].status.podIP",
        "# here",
        "reserved in vswitch vsw-b",
    );
    only(
        &eni("10.0.5.20"),
        "kubernetes[1].status.podIP",
        "# here",
        "already used by node node-b",
    );
}

// ---------------------------------------------------------------- security group rules

#[test]
fn rule_priorities_and_ports() {
    let path = "vpc.security_groups[0].rules[1]";
    for bad in ["0", "101"] {
        only(
            &with("priority: 10}", &format!("priority: {bad}}}")),
            &format!("{path}.priority"),
            "ports:",
            &format!("priority {bad} is outside 1..=100"),
        );
    }
    only(
        &with("priority: 10}", "priority: 300}"),
        &format!("{path}.priority"),
        "ports:",
        "priority 300 is outside 1..=100",
    );
    for (ports, frag) in [
        ("\"0\"", "1..=65535"),
        ("\"9000-8000\"", "runs backwards"),
        ("\"http\"", "\"http\""),
        ("\"80,,443\"", "1..=65535"),
    ] {
        only(
            &with("ports: \"30000-32767\"", &format!("ports: {ports}")),
            &format!("{path}.ports"),
            "ports:",
            frag,
        );
    }
    only(
        &with("ports: \"30000-32767\"", "ports: 70000"),
        &format!("{path}.ports"),
        "ports:",
        "1..=65535",
    );
    loads(&with("ports: \"30000-32767\"", "ports: 443"));
    loads(&with(
        "ports: \"30000-32767\"",
        "ports: \"80,443,8000-9000\"",
    ));
}

// ---------------------------------------------------------------- versions and ENI limits

#[test]
fn kubernetes_versions() {
    for good in ["\"1.22\"", "\"v1.30.2\"", "\"1.24.6-aliyun.1\""] {
        loads(&with(
            "  kubernetes: \"1.24\"\n",
            &format!("  kubernetes: {good}\n"),
        ));
    }
    only(
        &with("  kubernetes: \"1.24\"\n", "  kubernetes: \"1.x\"\n"),
        "cluster.kubernetes",
        "1.x",
        "not a Kubernetes version",
    );
    only(
        &with("  kubernetes: \"1.24\"\n", "  kubernetes: \"2.1\"\n"),
        "cluster.kubernetes",
        "2.1",
        "only Kubernetes 1.x",
    );
    only(
        &with("  kubernetes: \"1.24\"\n", "  kubernetes: 1.30\n"),
        "cluster.kubernetes",
        "1.30",
        "quote the version",
    );
}

#[test]
fn eni_limits() {
    only(
        &with("enis: {max: 3,", "enis: {max: 0,"),
        "nodes[1].enis.max",
        "enis:",
        "at least 1 ENI",
    );
    only(
        &with("ips_per_eni: 10}", "ips_per_eni: 0}"),
        "nodes[1].enis.ips_per_eni",
        "enis:",
        "at least 1 IP",
    );
}

// ---------------------------------------------------------------- expectations

#[test]
fn expectation_grammar() {
    let to = |t: &str| with("    to: pod/demo/nginx:80\n", &format!("    to: {t}\n"));
    only(
        &to("pod/demo/nginx"),
        "expect[0].to",
        "to: pod/demo/nginx",
        "needs a port (only icmp probes omit it)",
    );
    only(
        &to("pods/demo/nginx:80"),
        "expect[0].to",
        "pods/",
        "unknown target kind \"pods\"",
    );
    only(
        &to("pod/demo/nginx:http"),
        "expect[0].to",
        ":http",
        "not a number in 1..=65535",
    );
    only(
        &to("service/demo/nginx:80@vip"),
        "expect[0].to",
        "@vip",
        "@external-ip or @lb",
    );
    only(
        &to("ip/10.0.4.500:80"),
        "expect[0].to",
        "10.0.4.500",
        "not an IPv4 address",
    );
    loads(&to("ip/192.0.2.1:80"));
    let from = |f: &str| {
        with(
            "    from: external/office-ecs\n",
            &format!("    from: {f}\n"),
        )
    };
    only(
        &from("office-ecs"),
        "expect[2].from",
        "from: office-ecs",
        "is not a client",
    );
    only(
        &from("service/demo/nginx"),
        "expect[2].from",
        "from: service/demo",
        "unknown client kind",
    );
    let src = |s: &str| with("    source: node/node-a\n", &format!("    source: {s}\n"));
    only(
        &src("node node-a"),
        "expect[2].source",
        "node node-a",
        "is not a source",
    );
    loads(&src("ip/10.0.4.20"));
    loads(&src("client"));
}

#[test]
fn expectation_source_rules() {
    // TOPOLOGY.md's own example states a source on a timeout: accepted.
    let text = with(
        "    result: connected\n    source: client\n",
        "    result: timeout\n    source: client\n",
    );
    assert!(cnlab::topology::load_str(&text, "t.yaml").is_ok());
    only(
        &with(
            "    proto: icmp\n    result: connected\n",
            "    proto: icmp\n    result: connected\n    source: client # here\n",
        ),
        "expect[3].source",
        "# here",
        "an echo reply does not report the peer address",
    );
    only(
        &with("    source: node/node-a\n", "    source: node/node-q\n"),
        "expect[2].source",
        "node-q",
        "unknown node \"node-q\"",
    );
}

#[test]
fn expectation_references() {
    only(
        &with(
            "    from: pod/demo/client\n    to: pod",
            "    from: pod/demo/ghost\n    to: pod",
        ),
        "expect[0].from",
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
    only(
        &with("    from: node/node-a\n", "    from: node/node-q\n"),
        "expect[3].from",
        "node-q",
        "unknown node \"node-q\"",
    );
    only(
        &with(
            "    from: external/office-ecs\n",
            "    from: external/nobody\n",
        ),
        "expect[2].from",
        "nobody",
        "unknown external \"nobody\"",
    );
    only(
        &with("    to: pod/demo/nginx:80\n", "    to: pod/demo/ghost:80\n"),
        "expect[0].to",
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
    only(
        &with(
            "    to: service/demo/nginx:80\n",
            "    to: service/demo/ghost:80\n",
        ),
        "expect[1].to",
        "ghost",
        "unknown service \"demo/ghost\"",
    );
    only(
        &with(
            "    to: nodeport/node-a/demo/nginx\n",
            "    to: nodeport/node-q/demo/nginx\n",
        ),
        "expect[2].to",
        "node-q",
        "unknown node \"node-q\"",
    );
    only(
        &with(
            "    to: nodeport/node-a/demo/nginx\n",
            "    to: nodeport/node-a/demo/ghost\n",
        ),
        "expect[2].to",
        "ghost",
        "unknown service \"demo/ghost\"",
    );
    only(
        &with(
            "    to: service/demo/nginx:80\n",
            "    to: service/demo/nginx:80@lb\n",
        ),
        "expect[1].to",
        "@lb",
        "type LoadBalancer",
    );
    only(
        &with(
            "    to: service/demo/nginx:80\n",
            "    to: service/demo/nginx:80@external-ip\n",
        ),
        "expect[1].to",
        "@external",
        "spec.externalIPs",
    );
    only(
        &with(
            "    served_by: pod/demo/nginx\n",
            "    served_by: pod/demo/ghost\n",
        ),
        "expect[1].served_by",
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
}

#[test]
fn path_and_avoid_ids() {
    let path = |p: &str| {
        with(
            "pod/demo/client, host-veth/demo/client,",
            &format!("pod/demo/client, {p},"),
        )
    };
    only(
        &path("node/node-q"),
        "expect[0].path[1]",
        "node-q",
        "unknown node \"node-q\"",
    );
    only(
        &path("host-veth/demo/ghost"),
        "expect[0].path[1]",
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
    only(
        &path("eni/member:demo/ghost"),
        "expect[0].path[1]",
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
    only(
        &path("trunk/node-q"),
        "expect[0].path[1]",
        "node-q",
        "unknown node",
    );
    only(
        &path("cali/x"),
        "expect[0].path[1]",
        "cali/x",
        "unknown observation point kind \"cali\"",
    );
    loads(&path("eni/eni-123, slb/lb-whatever, eni/primary:node-a, eni/pod:demo/nginx, external/office-ecs, trunk/node-b"));
    let avoids = with(
        "    served_by: pod/demo/nginx\n",
        "    served_by: pod/demo/nginx\n    avoids: [eth0/node-a, external/nobody] # here\n",
    );
    only(
        &avoids,
        "expect[1].avoids[1]",
        "# here",
        "unknown external \"nobody\"",
    );
    // Prefixes (`eni/member:*`, as the docs offer) load; one whose kind is
    // no point kind is refused at its line.
    let prefixes = with(
        "    served_by: pod/demo/nginx\n",
        "    served_by: pod/demo/nginx\n    avoids: [\"eni/member:*\", \"eni/*\", \"pod/demo/*\"]\n",
    );
    loads(&prefixes);
    let bad = with(
        "    served_by: pod/demo/nginx\n",
        "    served_by: pod/demo/nginx\n    avoids: [\"cali*\"] # bad\n",
    );
    only(
        &bad,
        "expect[1].avoids[0]",
        "# bad",
        "a prefix must start with a point kind",
    );
}

/// The example of spec/TOPOLOGY.md is a fragment (it names nodes, a vSwitch
/// and a pod it does not define), but every key in it is understood. (It
/// also pairs `result: timeout` with `source: client`, which the rules
/// reject: nothing reports a source for a probe that got no answer.)
#[test]
fn the_spec_example_uses_only_known_keys() {
    let r = report(include_str!("topology_spec_example.yaml"));
    // Its trunking cluster on IPVS names no Terway version: the one warning
    // says which rule 2048 the lab plans.
    assert!(
        r.warnings
            .iter()
            .all(|w| w.path == "cluster.cni" && w.message.contains("terway_version is not set")),
        "{r}"
    );
    for p in &r.errors {
        let ok = p.message.starts_with("unknown ")
            || (p.path == "expect[0].source" && p.message.contains("only to result: connected"));
        assert!(ok, "{r}");
    }
    let shown = r.to_string();
    for path in [
        "externals[0].vswitch",
        "kubernetes[1].spec.nodeName",
        "expect[0].from",
    ] {
        assert!(shown.contains(path), "{shown}");
    }
}

// ---------------------------------------------------------------- the planner as a validator

fn plan_report(text: &str) -> Report {
    match cnlab::check::input::load_planned_str(text, "t.yaml") {
        Ok(_) => panic!("expected a planning problem\n{text}"),
        Err(r) => r,
    }
}

#[test]
fn planning_errors_carry_their_path_and_line() {
    // The cloud controller gives node-a 172.16.0.0/24; the customer's entry
    // sends it to node-b.
    let text = with(
        "{dest: 172.16.0.0/24, next_hop: node-a}",
        "{dest: 172.16.0.0/24, next_hop: node-b} # here",
    );
    let r = plan_report(&text);
    assert!(
        find(
            &r.errors,
            "vpc.route_entries[0].next_hop",
            line_of(&text, "# here"),
            "both claim it"
        )
        .is_some(),
        "{r}"
    );
    // Two hostNetwork pods on one port of one node.
    let text = insert(
        "expect:\n",
        "  - {apiVersion: v1, kind: Pod, metadata: {name: h1}, spec: {nodeName: node-a, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 8080}]}]}}\n\
         \x20 - {apiVersion: v1, kind: Pod, metadata: {name: h2}, spec: {nodeName: node-a, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 8080}]}]}} # here\n",
    );
    let r = plan_report(&text);
    assert!(
        find(
            &r.errors,
            "kubernetes[4]",
            line_of(&text, "# here"),
            "port 8080 is served by both"
        )
        .is_some(),
        "{r}"
    );
}

#[test]
fn a_pinned_trunk_pod_outside_its_vswitch_is_reported_at_its_address() {
    let text = include_str!("../../topologies/scenarios/t4-trunk-cross-node.yaml").replacen(
        "status: {podIP: 10.0.4.27}",
        "status: {podIP: 10.0.5.50} # here",
        1,
    );
    let l = cnlab::check::input::load_planned_str(&text, "t4.yaml").expect("plans");
    assert!(
        l.warnings.iter().any(|w| w.path.ends_with(".status.podIP")
            && w.line == Some(line_of(&text, "# here"))
            && w.message.contains("stay pending")),
        "{:#?}",
        l.warnings
    );
}

#[test]
fn route_entries_replace_or_remove_the_cloud_controllers() {
    // The example's entries become the cloud controller's own (flannel
    // creates them); the customer's table replaces one and lacks the other.
    let text = with(
        "    - {dest: 172.16.0.0/24, next_hop: node-a}\n    - {dest: 172.16.1.0/24, next_hop: 10.0.5.20}\n",
        "    - {dest: 172.16.1.0/24, next_hop: node-a, action: replace}\n    - {dest: 172.16.0.0/24, action: remove}\n",
    );
    let l =
        cnlab::check::input::load_planned_str(&text, "t.yaml").unwrap_or_else(|r| panic!("{r}"));
    let p = cnlab::plan::plan(&l.resolved, cnlab::plan::Backends::PORTABLE).unwrap();
    let entries: Vec<(String, String)> = p
        .route_entries
        .iter()
        .map(|r| (r.dest.to_string(), r.next_hop.clone()))
        .collect();
    assert_eq!(
        entries,
        vec![("172.16.1.0/24".to_string(), "node-a".to_string())]
    );
    // Replacing what the controller does not create is an error at its line.
    let text = with(
        "{dest: 172.16.0.0/24, next_hop: node-a}",
        "{dest: 172.16.9.0/24, action: remove} # here",
    );
    let r = plan_report(&text);
    assert!(
        find(
            &r.errors,
            "vpc.route_entries[0].action",
            line_of(&text, "# here"),
            "creates no entry"
        )
        .is_some(),
        "{r}"
    );
    // remove takes no next hop.
    only(
        &with(
            "{dest: 172.16.0.0/24, next_hop: node-a}",
            "{dest: 172.16.0.0/24, next_hop: node-a, action: remove} # here",
        ),
        "vpc.route_entries[0].next_hop",
        "# here",
        "no next hop",
    );
}

#[test]
fn pending_expectations_name_a_pod_and_ask_nothing_of_a_probe() {
    loads(&insert(
        "  - name: clusterip\n",
        "  - {name: p, from: pod/demo/client, result: pending, reason: no free ENI}\n",
    ));
    only(
        &insert(
            "  - name: clusterip\n",
            "  - {name: p, from: node/node-a, result: pending} # here\n",
        ),
        "expect[1].from",
        "# here",
        "is about a pod",
    );
    only(
        &insert(
            "  - name: clusterip\n",
            "  - {name: p, from: pod/demo/client, to: pod/demo/nginx:80, result: pending} # here\n",
        ),
        "expect[1].to",
        "# here",
        "not probed",
    );
    only(
        &insert("  - name: clusterip\n", "  - {name: p, from: pod/demo/client, to: pod/demo/nginx:80, result: connected, reason: x} # here\n"),
        "expect[1].reason",
        "# here",
        "belongs to result: pending",
    );
}

// ---------------------------------------------------------------- schema and reference

/// Where a key of each section is written, `zzz` standing for the key.
const SECTION_AT: &[(&str, &str)] = &[
    ("topology", "zzz: 1\n"),
    ("cluster", "cluster: {zzz: 1}\n"),
    (
        "cni_plugins",
        "cluster: {cni_plugins: {bin_dir: /, zzz: 1}}\n",
    ),
    ("vpc", "vpc: {zzz: 1}\n"),
    ("vswitch", "vpc: {vswitches: [{zzz: 1}]}\n"),
    ("route_entry", "vpc: {route_entries: [{zzz: 1}]}\n"),
    ("security_group", "vpc: {security_groups: [{zzz: 1}]}\n"),
    ("sg_rule", "vpc: {security_groups: [{rules: [{zzz: 1}]}]}\n"),
    ("eni_limits", "nodes: [{enis: {zzz: 1}}]\n"),
    ("node", "nodes: [{zzz: 1}]\n"),
    ("trunk", "nodes: [{trunk: {zzz: 1}}]\n"),
    ("member_eni", "nodes: [{trunk: {members: [{zzz: 1}]}}]\n"),
    ("external", "externals: [{zzz: 1}]\n"),
    ("load_balancer", "load_balancers: [{zzz: 1}]\n"),
    ("listener", "load_balancers: [{listeners: [{zzz: 1}]}]\n"),
    (
        "lb_backend",
        "load_balancers: [{listeners: [{backends: [{zzz: 1}]}]}]\n",
    ),
    ("expectation", "expect: [{zzz: 1}]\n"),
    ("when", "expect: [{when: {zzz: 1}}]\n"),
    ("impairment", "impairments: [{zzz: 1}]\n"),
    ("event", "events: [{zzz: 1}]\n"),
];

#[test]
fn the_schema_names_exactly_the_keys_the_parser_reads() {
    use cnlab::topology::schema::{section, SECTIONS};
    assert_eq!(
        SECTION_AT.len(),
        SECTIONS.len(),
        "a section without a probe here"
    );
    for (name, text) in SECTION_AT {
        let r = report(text);
        let known = r
            .errors
            .iter()
            .find_map(|p| p.message.strip_prefix("unknown key `zzz` (known here: "))
            .unwrap_or_else(|| panic!("{name}: no unknown-key error\n{r}"))
            .trim_end_matches(')');
        let parser: Vec<&str> = known.split(", ").collect();
        let schema: Vec<&str> = section(name).unwrap().keys.iter().map(|k| k.name).collect();
        assert_eq!(
            parser, schema,
            "section {name}: the parser's keys differ from topology/schema.rs (document the new key there)"
        );
    }
}

#[test]
fn docs_topology_md_is_the_schema_reference() {
    let doc = include_str!("../../docs/topology.md");
    let start = "<!-- reference: cnlab schema --markdown -->\n";
    let end = "<!-- end of reference -->";
    let a = doc
        .find(start)
        .expect("docs/topology.md has the reference marker")
        + start.len();
    let b = doc.find(end).expect("docs/topology.md has the end marker");
    assert!(
        doc[a..b] == cnlab::topology::schema::markdown(),
        "docs/topology.md is out of date: replace its reference with `cnlab schema --markdown`"
    );
    // The JSON Schema says the same as the tables.
    let schema = cnlab::topology::schema::json_schema();
    for s in cnlab::topology::schema::SECTIONS {
        let props = if s.name == "topology" {
            &schema["properties"]
        } else {
            &schema["$defs"][s.name]["properties"]
        };
        for k in s.keys {
            assert!(
                props[k.name]["description"].is_string(),
                "{}.{}",
                s.name,
                k.name
            );
        }
    }
}

#[test]
fn served_by_lists_repeat_and_refused_by() {
    let list = with(
        "    served_by: pod/demo/nginx\n",
        "    served_by: [pod/demo/nginx, pod/demo/ghost]\n    repeat: 4\n",
    );
    only(
        &list,
        "expect[1].served_by[1]",
        "ghost",
        "unknown pod \"demo/ghost\"",
    );
    let r = loads(&with(
        "    served_by: pod/demo/nginx\n",
        "    served_by: [pod/demo/nginx]\n    sticky: true\n",
    ));
    let r = &r.resolved;
    assert_eq!(
        r.topo.expect[1].served_by,
        Some(vec!["pod/demo/nginx".to_string()])
    );
    assert_eq!(r.topo.expect[1].sticky, Some(true));
    only(
        &with(
            "    served_by: pod/demo/nginx\n",
            "    served_by: pod/demo/nginx\n    refused_by: icmp\n",
        ),
        "expect[1].refused_by",
        "icmp",
        "applies only to result: refused",
    );
    only(
        &with(
            "    served_by: pod/demo/nginx\n",
            "    served_by: pod/demo/nginx\n    refused_by: fin\n",
        ),
        "expect[1].refused_by",
        "fin",
        "rst",
    );
}

#[test]
fn host_stack_cidrs_belong_to_the_terway_modes_that_read_them() {
    // flannel pods reach the host through their veth: the key has no effect.
    only(
        &insert(
            "  pod_cidr:",
            "  host_stack_cidrs: [169.254.20.10/32] # here\n",
        ),
        "cluster.host_stack_cidrs",
        "# here",
        "terway-eniip-ipvlan and terway-eni only",
    );
    // Every item is a CIDR, reported at its index.
    has(
        &insert(
            "  pod_cidr:",
            "  host_stack_cidrs:\n    - 169.254.20.10/32\n    - nonsense # here\n",
        ),
        "cluster.host_stack_cidrs[1]",
        "# here",
        "not an IPv4 CIDR",
    );
    has(
        &insert("  pod_cidr:", "  node_local_dns: 169.254.20.300 # here\n"),
        "cluster.node_local_dns",
        "# here",
        "not an IPv4 address",
    );
    let l = load_file(std::path::Path::new(
        "../topologies/scenarios/m4b-terway-eniip-ipvlan-matrix.yaml",
    ))
    .unwrap_or_else(|r| panic!("{r}"));
    let c = &l.resolved.topo.cluster;
    assert_eq!(
        c.host_stack_cidrs,
        vec!["169.254.20.10/32".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    assert_eq!(
        c.node_local_dns,
        Some(std::net::Ipv4Addr::new(169, 254, 20, 10))
    );
}

/// `nodes[].trunk`: declared trunk and member ENIs, each problem at its
/// own key before anything is built.
#[test]
fn declared_trunks_are_checked_key_by_key() {
    let base = |cni: &str, enis: &str, members: &str| {
        format!(
            "name: t\ncluster:\n  cni: {cni}\n  cni_plugins: {{bin_dir: /, conflist: {{cniVersion: 1.0.0, name: n, plugins: [{{type: vlan, master: eth1, vlanId: 100}}]}}}}\nvpc:\n  cidr: 10.0.0.0/8\n  vswitches: [{{id: vsw-a, cidr: 10.0.4.0/24}}]\n  security_groups: [{{id: sg-a, rules: []}}]\nnodes:\n  - name: n1\n    vswitch: vsw-a\n    enis: {enis}\n    trunk:\n      members:\n{members}"
        )
    };
    let ok = "        - {vlan: 100, ip: 10.0.4.50}\n";
    let text = base("plugins", "{trunk: true}", ok);
    let l = loads(&text);
    let m = &l.resolved.topo.nodes[0].trunk.as_ref().unwrap().members[0];
    assert_eq!((m.vlan, m.ip.to_string()), (100, "10.0.4.50".into()));
    only(
        &base("plugins", "{trunk: false}", ok),
        "nodes[0].trunk",
        "    trunk:",
        "cannot carry a trunk ENI",
    );
    // Terway's trunking makes its own: `cni_plugins` is refused too there.
    has(
        &base("terway-trunking", "{trunk: true}", ok),
        "nodes[0].trunk",
        "    trunk:",
        "needs cluster.cni: plugins",
    );
    let members = "        - {vlan: 100, ip: 10.0.4.50}\n        - {vlan: 100, ip: 10.0.5.9} # dup\n        - {vlan: 5000, ip: 10.0.4.50, security_groups: [sg-x]} # bad\n";
    let text = base("plugins", "{trunk: true}", members);
    has(
        &text,
        "nodes[0].trunk.members[1].vlan",
        "# dup",
        "VLAN 100 is already taken",
    );
    has(
        &text,
        "nodes[0].trunk.members[1].ip",
        "# dup",
        "outside vswitch vsw-a",
    );
    has(
        &text,
        "nodes[0].trunk.members[2].vlan",
        "# bad",
        "out of range",
    );
    has(
        &text,
        "nodes[0].trunk.members[2].ip",
        "# bad",
        "already used by member ENI (VLAN 100) of node n1",
    );
    has(
        &text,
        "nodes[0].trunk.members[2].security_groups[0]",
        "# bad",
        "sg-x",
    );
    // The member-ENI quota (EniTotalQuantity − EniQuantity): with total 4
    // and max 3 the instance takes one member ENI, the second is an error.
    let two = "        - {vlan: 100, ip: 10.0.4.50}\n        - {vlan: 101, ip: 10.0.4.51} # over\n";
    only(
        &base("plugins", "{max: 3, trunk: true, total: 4}", two),
        "nodes[0].trunk.members[1]",
        "# over",
        "node n1 takes 1 member ENIs (EniTotalQuantity 4 − EniQuantity 3); this is member 2",
    );
    loads(&base("plugins", "{max: 3, trunk: true, total: 5}", two));
    only(
        &base("plugins", "{max: 3, trunk: true, total: 2} # small", ok),
        "nodes[0].enis.total",
        "# small",
        "enis.total (2) counts every ENI, enis.max (3) included",
    );
}

/// A timeout without `path` holds on any drop: said at its line; an empty
/// path (nothing leaves the client) goes with timeouts only.
#[test]
fn timeouts_say_where_the_packet_stops() {
    let text =
        std::fs::read_to_string("../topologies/scenarios/f5-ecs-outside-cluster.yaml").unwrap();
    let bare = text.replacen(
        "    path: [external/mysql-ecs, vpc, eni/primary:cn-hangzhou.10.0.4.21]\n",
        "",
        1,
    );
    assert_ne!(bare, text);
    let l = cnlab::topology::load_str(&bare, "f5").unwrap_or_else(|r| panic!("{r}"));
    let w: Vec<_> = l
        .warnings
        .iter()
        .filter(|p| {
            p.message
                .contains("a timeout without path holds wherever the packet is dropped")
        })
        .collect();
    assert_eq!(w.len(), 1, "{:#?}", l.warnings);
    assert!(
        w[0].path.ends_with(".result") && w[0].line.is_some(),
        "{:?}",
        w[0]
    );
    // (expect: is the file's last section)
    let empty_on_connected = format!(
        "{text}  - {{name: x, from: pod/prod/api-1, to: ip/10.0.3.72:3306, result: connected, path: []}}\n"
    );
    let r = cnlab::topology::load_str(&empty_on_connected, "f5").unwrap_err();
    assert!(
        r.errors.iter().any(|p| p
            .message
            .contains("path: [] (no packet leaves the client) only goes with result: timeout")),
        "{r}"
    );
}

#[test]
fn terway_version_is_a_version_read_by_the_veth_terway_modes() {
    // flannel has no rule 2048: the key is an error there, with its line.
    only(
        &insert("  pod_cidr:", "  terway_version: \"1.17.5\" # here\n"),
        "cluster.terway_version",
        "# here",
        "terway-eniip and terway-trunking only",
    );
    has(
        &insert("  pod_cidr:", "  terway_version: latest # here\n"),
        "cluster.terway_version",
        "# here",
        "not a Terway version",
    );
    let l = load_file(std::path::Path::new(
        "../topologies/scenarios/m3b-terway-eniip-matrix.yaml",
    ))
    .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(
        l.resolved.topo.cluster.terway_version.as_deref(),
        Some("1.17.5")
    );
}

#[test]
fn an_unversioned_veth_terway_on_ipvs_is_told_which_rule_2048_it_gets() {
    // T6 without its pin: the layout decides the path, so the lab says which
    // one it planned, at cluster.cni.
    let pinned =
        std::fs::read_to_string("../topologies/scenarios/t6-trunk-clusterip-asymmetric.yaml")
            .unwrap();
    assert!(loads(&pinned).warnings.is_empty());
    let bare: String = pinned
        .lines()
        .filter(|l| !l.trim_start().starts_with("terway_version:"))
        .map(|l| format!("{l}\n"))
        .collect();
    warns(
        &bare,
        "cluster.cni",
        "cni: terway-trunking",
        "Terway v1.4.2 and later have no iif",
    );
    // iptables forwards the request: the rule's iif does not matter there.
    let iptables = bare.replace("proxy: ipvs", "proxy: iptables");
    assert!(
        loads(&iptables)
            .warnings
            .iter()
            .all(|w| !w.message.contains("terway_version")),
        "{:?}",
        loads(&iptables).warnings
    );
}
