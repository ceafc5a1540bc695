//! `cnlab graph`: the T10 lab drawn as DOT (read back by graphviz's `dot`),
//! SVG (well-formed XML, checked by xmllint) and Mermaid, and with `--path`
//! one real probe's request and reply hops overlaid.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CNLAB: &str = env!("CARGO_BIN_EXE_cnlab");
const T10: &str = "topologies/scenarios/t10-slb-to-member-enis.yaml";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn graph(args: &[&str]) -> String {
    let out = Command::new(CNLAB)
        .current_dir(repo())
        .arg("graph")
        .args(args)
        .output()
        .expect("run cnlab");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cnlab graph {args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Feeds `input` to a tool (installed by scripts/setup) and returns its stdout.
fn tool(name: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} ({e}): scripts/setup installs it"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?} rejected the input: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything a support engineer needs to see is in every format.
const LABELS: [&str; 9] = [
    "VPC router",
    "vSwitch vsw-b",
    "security group sg-web",
    "primary ENI",
    "trunk ENI",
    "member ENI",
    "pod trunking/nginx-a",
    "SLB lb-nginx-cluster",
    "external client",
];

#[test]
fn dot_is_read_by_graphviz_and_shows_the_whole_lab() {
    let dot = graph(&[T10, "--format", "dot"]);
    for l in LABELS {
        assert!(dot.contains(l), "{l} missing from\n{dot}");
    }
    assert!(dot.contains("subgraph \"cluster_vpc\""), "{dot}");
    assert!(dot.contains("VLAN 1027"), "{dot}");
    let svg = tool("dot", &["-Tsvg"], &dot);
    assert!(svg.contains("<svg"), "{svg}");
}

#[test]
fn svg_is_well_formed_xml() {
    let svg = graph(&[T10]);
    tool("xmllint", &["--noout", "-"], &svg);
    for l in ["VPC router", "member ENI", "pod trunking/nginx-a"] {
        assert!(svg.contains(l), "{l} missing from the SVG");
    }
}

#[test]
fn mermaid_names_every_part() {
    let m = graph(&[T10, "--format", "mermaid"]);
    assert!(m.contains("flowchart TB"), "{m}");
    for l in LABELS {
        assert!(m.contains(l), "{l} missing from\n{m}");
    }
    assert!(m.contains("subgraph"), "{m}");
}

#[test]
fn a_probe_path_is_drawn_from_the_hops_it_crossed() {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root (scripts/test does)"
    );
    let dot = graph(&[
        T10,
        "--path",
        "external/client",
        "service/trunking/nginx-cluster:80@lb",
        "--format",
        "dot",
    ]);
    let req: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("label=\"request "))
        .collect();
    let rep: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("label=\"reply "))
        .collect();
    // T10: external/client → vpc → slb → vpc → nginx-a's member ENI → trunk
    // ENI → node → pod, and back the same way.
    assert!(
        req.first()
            .is_some_and(|l| l.starts_with("  \"external/client\" -> ")),
        "{req:#?}"
    );
    assert!(
        req.iter()
            .any(|l| l.contains("-> \"slb/lb-nginx-cluster\"")),
        "{req:#?}"
    );
    assert!(
        rep.iter()
            .any(|l| l.contains("-> \"slb/lb-nginx-cluster\"")),
        "{rep:#?}"
    );
    assert!(
        req.last()
            .is_some_and(|l| l.contains("-> \"pod/trunking/nginx-a\"")),
        "{req:#?}"
    );
    assert!(
        rep.last()
            .is_some_and(|l| l.contains("-> \"external/client\"")),
        "{rep:#?}"
    );
    assert!(req.iter().all(|l| l.contains("#d62728")) && rep.iter().all(|l| l.contains("#1f77b4")));
    tool("dot", &["-Tsvg"], &dot);
}
