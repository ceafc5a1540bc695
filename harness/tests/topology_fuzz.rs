//! `load_str` never panics: not on random bytes, not on random YAML, not on
//! a valid topology mangled line by line.

use cnlab::topology::load_str;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("topology_example.yaml");

fn load(text: &str) {
    // The outcome does not matter, only that it comes back.
    let _ = load_str(text, "fuzz.yaml");
}

/// A small YAML grammar using the topology's own keys and values, so the
/// loader gets past the first checks.
fn yaml_value() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "cluster",
        "cni",
        "vpc",
        "cidr",
        "vswitches",
        "id",
        "nodes",
        "ip",
        "vswitch",
        "externals",
        "internet",
        "kubernetes",
        "kind",
        "metadata",
        "spec",
        "status",
        "podIP",
        "nodeName",
        "ports",
        "port",
        "expect",
        "from",
        "to",
        "proto",
        "result",
        "source",
        "path",
        "rules",
        "priority",
        "security_groups",
        "load_balancers",
        "listeners",
        "backends",
        "enis",
        "max",
        "pod_cidr",
        "service_cidr",
        "kubernetes",
        "<<",
    ]);
    let leaf = prop::sample::select(vec![
        "",
        "~",
        "0",
        "1",
        "-1",
        "65536",
        "1.30",
        "true",
        "flannel",
        "terway-eniip",
        "Pod",
        "Service",
        "PodNetworking",
        "10.0.4.20",
        "10.0.4.0/24",
        "10.0.0.0/8",
        "300.1.1.1",
        "\"80,443\"",
        "\"9000-8000\"",
        "pod/a/b:80",
        "service/a/b:80@lb",
        "node/n",
        "client",
        "connected",
        "icmp",
        "vsw-a",
        "[]",
        "{}",
        "&a x",
        "*a",
        "!tag x",
        "\"1.24\"",
    ])
    .prop_map(str::to_string);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Indent(usize, usize),
    Dedent(usize),
    SwapValues(usize, usize),
    Truncate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = 200usize;
    prop_oneof![
        (0..n).prop_map(Mutation::Delete),
        (0..n).prop_map(Mutation::Duplicate),
        (0..n, 0..n).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (0..n, 1..5usize).prop_map(|(a, k)| Mutation::Indent(a, k)),
        (0..n).prop_map(Mutation::Dedent),
        (0..n, 0..n).prop_map(|(a, b)| Mutation::SwapValues(a, b)),
        (0..n, 0..40usize).prop_map(|(a, k)| Mutation::Truncate(a, k)),
    ]
}

fn apply(lines: &mut Vec<String>, m: &Mutation) {
    let len = lines.len();
    if len == 0 {
        return;
    }
    match *m {
        Mutation::Delete(a) => {
            lines.remove(a % len);
        }
        Mutation::Duplicate(a) => {
            let l = lines[a % len].clone();
            lines.insert(a % len, l);
        }
        Mutation::Swap(a, b) => lines.swap(a % len, b % len),
        Mutation::Indent(a, k) => lines[a % len].insert_str(0, &" ".repeat(k)),
        Mutation::Dedent(a) => {
            let l = &mut lines[a % len];
            if l.starts_with(' ') {
                l.remove(0);
            }
        }
        Mutation::SwapValues(a, b) => {
            let (a, b) = (a % len, b % len);
            let split = |l: &str| {
                l.split_once(": ")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            };
            if let (Some((ka, va)), Some((kb, vb))) = (split(&lines[a]), split(&lines[b])) {
                lines[a] = format!("{ka}: {vb}");
                lines[b] = format!("{kb}: {va}");
            }
        }
        Mutation::Truncate(a, k) => {
            let l = &mut lines[a % len];
            let mut cut = k.min(l.len());
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            l.truncate(cut);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        load(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_yaml_never_panics(doc in yaml_value()) {
        load(&doc);
        // Also as the value of each top-level section.
        for section in ["cluster", "vpc", "nodes", "externals", "kubernetes", "expect", "load_balancers"] {
            load(&format!("name: f\n{section}: {doc}\n"));
        }
    }

    #[test]
    fn mangled_example_never_panics(ms in prop::collection::vec(mutation(), 1..6)) {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_string).collect();
        for m in &ms {
            apply(&mut lines, m);
        }
        let text = lines.join("\n");
        if let Err(report) = load_str(&text, "fuzz.yaml") {
            // Every reported error says where it is.
            prop_assert!(!report.errors.is_empty());
            let _ = report.to_string();
        }
    }
}

#[test]
fn the_unmangled_example_loads() {
    assert!(load_str(EXAMPLE, "example.yaml").is_ok());
}

#[test]
fn hostile_yaml_does_not_hang_or_panic() {
    // Deep nesting and alias bombs are refused by the YAML parser, not crashed on.
    load(&"[".repeat(10_000));
    load(&format!("name: {}{}", "[".repeat(200), "]".repeat(200)));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
            p = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            }
        ));
    }
    load(&bomb);
    load("kubernetes: [{kind: Pod, spec: {containers: [{ports: [{containerPort: [[[[[[[[1]]]]]]]]}]}]}}]\n");
}
