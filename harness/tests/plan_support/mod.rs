//! Plans of shipped topologies for tests, loaded by the real parser and
//! validator (`topology::parse::load_str`).
#![allow(dead_code)]

use cnlab::plan::{plan, Backends, LabPlan};
use cnlab::topology::Resolved;
use std::path::PathBuf;

pub fn load(text: &str) -> Resolved {
    cnlab::topology::parse::load_str(text, "test")
        .unwrap_or_else(|report| panic!("topology loads: {report}"))
        .resolved
}

pub fn topologies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

pub fn load_file(rel: &str) -> Resolved {
    let path = topologies_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    load(&text)
}

/// Every scenario and example shipped by this module.
pub fn shipped() -> Vec<String> {
    let mut out = vec![];
    for dir in ["scenarios", "examples"] {
        let mut files: Vec<String> = std::fs::read_dir(topologies_dir().join(dir))
            .expect("topologies dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

pub fn plan_file(rel: &str) -> LabPlan {
    plan(&load_file(rel), Backends::PORTABLE).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn ns<'a>(p: &'a LabPlan, key: &str) -> &'a cnlab::plan::NsPlan {
    p.namespaces
        .iter()
        .find(|n| n.key == key)
        .unwrap_or_else(|| panic!("no namespace {key}"))
}

/// Link names of a namespace: own links, veth ends, and `lo`.
pub fn links_of(p: &LabPlan, idx: usize) -> Vec<String> {
    cnlab::plan::invariants::links_of(p, idx)
}
