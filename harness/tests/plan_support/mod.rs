//! Topologies for plan tests. Shipped files load through the real parser
//! and validator (`load_file`); hand-written fragments that the validator
//! would refuse on purpose (to see what the planner itself says about a
//! missing VPC CIDR or an unknown node) load through the bare serde model
//! (`load`), each `kubernetes:` item typed by `kind`.
#![allow(dead_code)]

use cnlab::plan::{plan, Backends, LabPlan};
use cnlab::topology::k8s::{EndpointSlice, Pod, PodNetworking, Service};
use cnlab::topology::{Resolved, Topology};
use std::path::PathBuf;

/// A fragment, unvalidated: the planner must cope with what it holds.
pub fn load(text: &str) -> Resolved {
    let topo: Topology = serde_yaml_ng::from_str(text).expect("topology parses");
    let (mut pods, mut services, mut podnetworkings) = (vec![], vec![], vec![]);
    let mut endpoint_slices = vec![];
    for (i, v) in topo.kubernetes.iter().enumerate() {
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("Pod") => pods.push(serde_yaml_ng::from_value::<Pod>(v.clone()).expect("pod")),
            Some("Service") => {
                services.push(serde_yaml_ng::from_value::<Service>(v.clone()).expect("service"))
            }
            Some("PodNetworking") => podnetworkings.push(
                serde_yaml_ng::from_value::<PodNetworking>(v.clone()).expect("podnetworking"),
            ),
            Some("EndpointSlice") => endpoint_slices.push(
                serde_yaml_ng::from_value::<EndpointSlice>(v.clone()).expect("endpointslice"),
            ),
            other => panic!("kubernetes[{i}]: unexpected kind {other:?}"),
        }
    }
    Resolved {
        topo,
        pods,
        services,
        podnetworkings,
        endpoint_slices,
    }
}

pub fn topologies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

/// A shipped file, as `cnlab` itself loads it.
pub fn load_file(rel: &str) -> Resolved {
    let path = topologies_dir().join(rel);
    cnlab::topology::load_file(&path)
        .unwrap_or_else(|report| panic!("{report}"))
        .resolved
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
