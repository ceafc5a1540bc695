//! `cnlab get pods` (each pod's CNI result: plugin chain, cniVersion,
//! interfaces with their sandbox, IPs with gateway, routes, DNS, or the
//! error its ADD ended with) and `cnlab cni check` (CHECK on request).

use serde::Serialize;
use std::path::Path;

use super::get::{structured, table, Output};
use crate::cni::CniResult;
use crate::lab::cni::{self, PodCni};
use crate::lab::registry;
use crate::plan::{EndpointKind, LabPlan};
use crate::topology::PointId;

/// One pod as `get pods -o yaml|json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodView {
    pod: String,
    node: Option<String>,
    ip: Option<String>,
    /// `Running`, or `Pending: <reason>` (a failed ADD's error included).
    status: String,
    /// The plugin chain's record (`cni: plugins` and the flannel variant);
    /// absent for pods the built-in agents plumbed.
    #[serde(skip_serializing_if = "Option::is_none")]
    cni: Option<PodCni>,
}

fn views(plan: &LabPlan, records: &[PodCni]) -> Vec<PodView> {
    let mut out: Vec<PodView> = plan
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Pod)
        .filter_map(|e| {
            let PointId::Pod { ns, name } = &e.id else {
                return None;
            };
            let pod = format!("{ns}/{name}");
            Some(PodView {
                cni: records.iter().find(|r| r.pod == pod).cloned(),
                pod,
                node: e.node.clone(),
                ip: Some(e.ip.to_string()),
                status: "Running".into(),
            })
        })
        .collect();
    for p in &plan.pending {
        out.push(PodView {
            cni: records.iter().find(|r| r.pod == p.pod).cloned(),
            pod: p.pod.clone(),
            node: p.node.clone(),
            ip: None,
            status: format!("Pending: {}", p.reason),
        });
    }
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

/// `cnlab get pods`: from the running lab (its saved CNI records), or the
/// plan of `file` (before any ADD: plugin pods are pending).
pub fn get_pods(output: Output, file: Option<&Path>, lab: Option<&str>) -> Result<String, String> {
    let (plan, records) = match file {
        Some(_) => (super::get::sources(file, lab)?.0, Vec::new()),
        None => {
            let rec = super::running::find(lab)?;
            let plan = registry::load_plan(&rec.id)
                .map_err(|e| format!("lab {}: reading its plan: {e}", rec.id))?;
            (plan, cni::load_results(&rec.id))
        }
    };
    let v = views(&plan, &records);
    if output != Output::Table {
        return Ok(structured(output, &v));
    }
    let builtin = format!("built-in {}", plan.cni.as_str());
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|p| {
            let (network, version, r) = match &p.cni {
                Some(c) => (
                    format!("{}: {}", c.network, c.plugins.join(",")),
                    c.cni_version.clone(),
                    c.result.as_ref(),
                ),
                None => match chain_of(&plan, p.node.as_deref()) {
                    Some((network, version)) => (network, version, None),
                    None => (builtin.clone(), "-".into(), None),
                },
            };
            let cells = r.map(columns).unwrap_or_else(|| vec!["-".into(); 4]);
            let mut row = vec![
                p.pod.clone(),
                p.node.clone().unwrap_or_else(|| "-".into()),
                p.ip.clone().unwrap_or_else(|| "-".into()),
                network,
                version,
            ];
            row.extend(cells);
            row.push(p.status.clone());
            row
        })
        .collect();
    Ok(table(
        &[
            "POD",
            "NODE",
            "IP",
            "NETWORK: PLUGINS",
            "CNIVERSION",
            "INTERFACES",
            "IPS",
            "ROUTES",
            "DNS",
            "STATUS",
        ],
        &rows,
    ))
}

/// The chain a node's pods get (`network: plugin,…`, cniVersion), for a
/// pod with no record yet (a planned lab: ADD has not run).
fn chain_of(plan: &LabPlan, node: Option<&str>) -> Option<(String, String)> {
    let c = plan
        .cni_runtime
        .as_ref()?
        .chains
        .iter()
        .find(|c| Some(c.node.as_str()) == node)?;
    let conf = crate::cni::Conflist::from_value(&c.conflist).ok()?;
    Some((
        format!("{}: {}", conf.name, conf.types().join(",")),
        conf.cni_version,
    ))
}

/// Interfaces (`name@sandbox` inside the pod, `name` on the node), IPs
/// (`addr gw G on IF`), routes, DNS servers.
fn columns(r: &CniResult) -> Vec<String> {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let ifs = r
        .interfaces
        .iter()
        .map(|i| {
            if i.sandbox.is_empty() {
                i.name.clone()
            } else {
                let sb = Path::new(&i.sandbox)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| i.sandbox.clone());
                format!("{}@{sb}", i.name)
            }
        })
        .collect();
    let ips = r
        .ips
        .iter()
        .map(|ip| {
            let mut s = ip.address.to_string();
            if let Some(g) = ip.gateway {
                s += &format!(" gw {g}");
            }
            if let Some(itf) = ip.interface.and_then(|i| r.interfaces.get(i)) {
                s += &format!(" on {}", itf.name);
            }
            s
        })
        .collect();
    let routes = r
        .routes
        .iter()
        .map(|rt| match rt.gw {
            Some(g) => format!("{} via {g}", rt.dst),
            None => rt.dst.to_string(),
        })
        .collect();
    vec![
        list(ifs),
        list(ips),
        list(routes),
        list(r.dns.nameservers.clone()),
    ]
}

/// `cnlab cni check [POD…]`: CHECK for the named pods (all plugin pods
/// when none) of a running lab; one line per pod. Exit 1 when any failed
/// or could not be checked.
pub fn cni_check(lab: Option<&str>, pods: &[String]) -> Result<(String, bool), String> {
    let rec = super::running::find(lab)?;
    let results = cni::check_all(&rec.id, pods);
    if results.is_empty() {
        return Err(format!(
            "lab {} ({}) has no pods plumbed by CNI plugins (cluster.cni: plugins, or flannel with cni_plugins)",
            rec.id, rec.name
        ));
    }
    let mut ok = true;
    let mut out = String::new();
    for (pod, r) in &results {
        match r {
            Ok(()) => out += &format!("{pod}  CHECK ok\n"),
            Err(e) => {
                ok = false;
                out += &format!("{pod}  CHECK failed: {e}\n");
            }
        }
    }
    Ok((out, ok))
}
