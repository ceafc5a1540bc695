//! `cnlab check` as a support engineer and a CI job use it: a directory with
//! an invalid file and a failing one still runs the valid file, always
//! writes JSON and JUnit, and a failing expectation explains itself.

use std::path::{Path, PathBuf};
use std::process::Command;

const CNLAB: &str = env!("CARGO_BIN_EXE_cnlab");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The quickstart lab without the security-group rule that admits pod
/// addresses, and with the group's inner access denied: the cross-node
/// expectation fails with a timeout.
fn failing_quickstart() -> String {
    let q = std::fs::read_to_string(repo().join("topologies/examples/quickstart.yaml")).unwrap();
    let rule = "        - {direction: ingress, action: accept, cidr: 172.16.0.0/16}\n";
    let sg = "    - id: sg-node\n";
    assert!(q.contains(rule) && q.contains(sg));
    q.replace(rule, "")
        .replace(sg, "    - id: sg-node\n      inner_access: drop\n")
}

fn run_check(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(CNLAB)
        .arg("check")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run cnlab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_directory_with_an_invalid_file_still_runs_the_others_and_writes_reports() {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a-invalid.yaml"),
        "name: bad\nvpc:\n  secuirty_groups: []\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b-failing.yaml"), failing_quickstart()).unwrap();
    let junit = dir.path().join("report.xml");
    let (code, stdout, stderr) =
        run_check(dir.path(), &["--json", "--junit", junit.to_str().unwrap()]);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("did you mean `security_groups`?"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{json:#}");
    assert!(files[0]["error"]
        .as_str()
        .unwrap()
        .contains("secuirty_groups"));
    let results = files[1]["results"].as_array().unwrap();
    let cross = results
        .iter()
        .find(|r| r["name"] == "pod to pod across nodes")
        .unwrap();
    assert_eq!(cross["observed"], "timeout", "{cross:#}");
    assert_eq!(cross["passed"], false);

    // The JUnit report passes the strict schema and carries the failure.
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    let lint = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(repo().join("harness/tests/data/junit-strict.xsd"))
        .arg(&junit)
        .output()
        .expect("xmllint (libxml2-utils; scripts/setup installs it)");
    assert!(
        lint.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(xml.contains("<error message="), "{xml}");
    assert!(
        xml.contains("type=\"cnlab.expectation\">expected connected, observed timeout"),
        "{xml}"
    );
}

#[test]
fn a_missing_route_entry_explains_itself() {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root"
    );
    let file = repo().join("topologies/support/missing-route-entry.yaml");
    let (code, table, stderr) = run_check(&file, &[]);
    assert_eq!(code, 1, "{table}\n{stderr}");
    // The request reaches the VPC router, which has no route for node-b's
    // pod CIDR any more: the kernel there says so.
    assert!(table.contains("last seen: vpc (arriving on"), "{table}");
    assert!(
        table.contains("kernel at vpc: route get 172.16.1.") && table.contains("no route"),
        "{table}"
    );
    let (_, json, _) = run_check(&file, &["--json", "--only", "cross-node"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let r = &v["files"][0]["results"][0];
    let x = &r["explanation"];
    assert_eq!(x["last_seen"]["point"], "vpc", "{x:#}");
    assert_eq!(x["route"]["namespace"], "vpc", "{x:#}");
    assert!(
        x["route"]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{x:#}"
    );
    let request: Vec<&str> = x["request_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["point"].as_str().unwrap())
        .collect();
    assert_eq!(request.last(), Some(&"vpc"), "{request:?}");
}

#[test]
fn a_pending_pod_is_an_expectation_and_only_runs_one() {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root"
    );
    let m2 =
        std::fs::read_to_string(repo().join("topologies/scenarios/m2-terway-eni.yaml")).unwrap();
    let with = |reason: &str| {
        format!(
            "{m2}  - {{name: overflow stays pending, from: pod/default/overflow, result: pending, reason: \"{reason}\"}}\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m2.yaml");
    std::fs::write(&file, with("no free ENI")).unwrap();
    let (code, out, err) = run_check(&file, &["--only", "overflow stays pending"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1/1 expectations hold"), "{out}");
    std::fs::write(&file, with("no such reason")).unwrap();
    let (code, out, _) = run_check(&file, &["--only", "overflow stays pending"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pending because \"no free ENI"), "{out}");
    // A pod that runs is not pending.
    let running = with("x").replace(
        "pod/default/overflow, result: pending, reason: \"x\"",
        "pod/default/centos, result: pending",
    );
    std::fs::write(&file, running).unwrap();
    let (code, out, _) = run_check(&file, &["--only", "overflow stays pending"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("expected pending, the pod is running"),
        "{out}"
    );
    let (code, _, err) = run_check(&file, &["--only", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no expectation named \"nope\"; there are:"),
        "{err}"
    );
}

#[test]
fn pcap_files_are_read_by_tshark() {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("topologies/examples/quickstart.yaml");
    let (code, out, err) = run_check(&file, &["--pcap", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let pcap = dir
        .path()
        .join("quickstart--pod_to_pod_across_nodes.pcapng");
    let tshark = |args: &[&str]| {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(args)
            .output()
            .expect("tshark (scripts/setup installs it)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Each packet on the interface named by its observation point.
    let rows = tshark(&[
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "tcp.flags.syn",
        "-e",
        "tcp.flags.ack",
    ]);
    let syn_at = |point: &str| {
        rows.lines()
            .any(|l| l.starts_with(&format!("{point}\t1\t0")))
    };
    for point in [
        "pod/default/client",
        "vpc",
        "eni/primary:node-2",
        "pod/default/web",
    ] {
        assert!(syn_at(point), "no SYN at {point}:\n{rows}");
    }
    assert!(
        rows.lines()
            .any(|l| l.starts_with("pod/default/client\t1\t1")),
        "no SYN-ACK back:\n{rows}"
    );
    // The expectation is in the capture comment.
    let o = Command::new("capinfos")
        .arg(&pcap)
        .output()
        .expect("capinfos (tshark's package)");
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(
        info.contains("cnlab expectation \"pod to pod across nodes\"")
            && info.contains("observed connected"),
        "{info}"
    );
}
