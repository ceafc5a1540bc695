//! `cnlab matrix` as a regression test: the connectivity matrix of the T
//! reference topology (T10: three trunking nodes, member-ENI pods, CLBs with
//! both traffic policies) and of the M3b matrix file, each probed for real and
//! compared with the matrix saved under `tests/data/matrix/`.

use std::path::{Path, PathBuf};
use std::process::Command;

const CNLAB: &str = env!("CARGO_BIN_EXE_cnlab");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn matrix(topology: &str, saved: &Path) -> (i32, String, String) {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root (scripts/test does)"
    );
    let out = Command::new(CNLAB)
        .current_dir(repo())
        .arg("matrix")
        .arg(topology)
        .arg("--expect")
        .arg(saved)
        .output()
        .expect("run cnlab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn saved(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/matrix/{name}.json"))
}

#[test]
fn the_t_reference_topology_matches_its_saved_matrix() {
    let (code, stdout, stderr) = matrix(
        "topologies/scenarios/t10-slb-to-member-enis.yaml",
        &saved("t10-slb-to-member-enis"),
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("matrix matches"), "{stderr}");
    // The Markdown table: a header row, its rule, one row per source.
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 5, "{stdout}");
    assert!(
        table[0].contains("LB eTP Local, backend other node"),
        "{}",
        table[0]
    );
    assert!(
        table[2].starts_with("| ecs `external/client`"),
        "{}",
        table[2]
    );
    // The member-ENI CLB keeps the internet client's address.
    assert!(
        table[2].contains("connected, saw 203.0.113.7 (client)"),
        "{}",
        table[2]
    );
    assert!(
        stdout.contains("Cells this topology cannot form"),
        "{stdout}"
    );
}

#[test]
fn a_cell_that_changed_fails_the_matrix_and_is_named() {
    // The M3b matrix with one saved cell altered: the run must name exactly it.
    let text = std::fs::read_to_string(saved("m3b-terway-eniip-matrix")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = v["rows"].as_array_mut().unwrap();
    let ecs = rows.iter_mut().find(|r| r["role"] == "ecs").unwrap();
    let cell = ecs["cells"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["column"] == "nodeport-local-other")
        .unwrap();
    // eTP Local on a node without an endpoint: the ECS's probe times out.
    assert_eq!(cell["result"], "timeout", "{cell}");
    cell["result"] = "connected".into();
    let dir = tempfile::tempdir().unwrap();
    let altered = dir.path().join("m3b.json");
    std::fs::write(&altered, serde_json::to_string(&v).unwrap()).unwrap();
    let (code, stdout, stderr) = matrix(
        "topologies/scenarios/m3b-terway-eniip-matrix.yaml",
        &altered,
    );
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("differs from"), "{stderr}");
    let diffs: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(diffs.len(), 1, "{stderr}");
    assert!(
        diffs[0].contains("ecs × nodeport-local-other: expected")
            && diffs[0].contains("observed from=\"external/ecs\" to=\"nodeport/node-2/default/web-lbl\" result=\"timeout\""),
        "{stderr}"
    );
}
