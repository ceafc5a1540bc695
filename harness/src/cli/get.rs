//! `cnlab get enis|podeni|podnetworking|svc|endpoints|slb|pods [-o yaml|json]`:
//! kubectl-style views of the mock cloud's ENIs, Terway's trunking CRDs,
//! Services and pods' CNI results, from a running lab's plan or from a
//! topology file (`--file`, planned for the portable backend).

use std::path::Path;

use serde::Serialize;

use crate::lab::registry;
use crate::plan::names::mac_str;
use crate::plan::podeni::{self, PodEni};
use crate::plan::{self, Backends, EniRole, LabPlan};
use crate::topology::{load_file, Resolved};

/// What `get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    Enis,
    Podeni,
    Podnetworking,
    #[value(alias = "services", alias = "service")]
    Svc,
    #[value(alias = "ep")]
    Endpoints,
    #[value(alias = "slbs", alias = "lb")]
    Slb,
    /// Pods with their CNI result (plugin chain, cniVersion, interfaces,
    /// IPs, routes, DNS) or the error their ADD ended with.
    #[value(alias = "pod", alias = "po")]
    Pods,
}

/// `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

/// Loads the topology and its plan from `file`, or the running lab's plan
/// (and its topology file, when the lab recorded one).
pub(super) fn sources(
    file: Option<&Path>,
    lab: Option<&str>,
) -> Result<(LabPlan, Option<Resolved>), String> {
    let load = |p: &Path| -> Result<Resolved, String> {
        load_file(p)
            .map(|l| l.resolved)
            .map_err(|r| format!("{}: {} problem(s)", p.display(), r.errors.len()))
    };
    if let Some(f) = file {
        let r = load(f)?;
        let p = plan::plan(&r, Backends::PORTABLE).map_err(|e| format!("{}: {e}", f.display()))?;
        return Ok((p, Some(r)));
    }
    let rec = super::running::find(lab)?;
    let p = registry::load_plan(&rec.id)
        .map_err(|e| format!("lab {}: reading its plan: {e}", rec.id))?;
    let r = rec
        .file
        .as_deref()
        .map(Path::new)
        .and_then(|f| load(f).ok());
    Ok((p, r))
}

pub fn get(
    what: Resource,
    output: Output,
    file: Option<&Path>,
    lab: Option<&str>,
) -> Result<String, String> {
    if what == Resource::Pods {
        return super::pods::get_pods(output, file, lab);
    }
    let (p, r) = sources(file, lab)?;
    let o = output;
    match what {
        Resource::Pods => unreachable!("handled above"),
        Resource::Enis => Ok(enis(&p, output)),
        Resource::Podeni => Ok(podenis(&podeni::podenis(&p), output)),
        Resource::Podnetworking => {
            let r = r.ok_or("podnetworking needs the topology: pass --file FILE")?;
            Ok(podnetworkings(&r, &p, output))
        }
        Resource::Svc if o != Output::Table => {
            Ok(structured(o, &super::services::services_yaml(&p)))
        }
        Resource::Endpoints if o != Output::Table => {
            Ok(structured(o, &super::services::endpoint_slices_yaml(&p)))
        }
        Resource::Slb if o != Output::Table => Ok(structured(o, &p.slbs)),
        Resource::Svc => Ok(super::services::render_get(
            &p,
            super::services::GetWhat::Svc,
        )),
        Resource::Endpoints => Ok(super::services::render_get(
            &p,
            super::services::GetWhat::Endpoints,
        )),
        Resource::Slb => Ok(super::services::render_get(
            &p,
            super::services::GetWhat::Slb,
        )),
    }
}

/// `-o yaml` or `-o json`.
pub(super) fn structured<T: Serialize>(o: Output, v: &T) -> String {
    match o {
        Output::Json => serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render: {e}\"}}\n")),
        _ => serde_yaml_ng::to_string(v).unwrap_or_else(|e| format!("# cannot render: {e}\n")),
    }
}

/// Left-aligned columns, kubectl style.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(w[i] - c.chars().count())))
            .collect();
        s.join("   ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

fn role(r: EniRole) -> &'static str {
    match r {
        EniRole::Primary => "Primary",
        EniRole::Secondary => "Secondary",
        EniRole::Trunk => "Trunk",
        EniRole::Member => "Member",
        EniRole::Pod => "Pod",
        EniRole::External => "External",
    }
}

fn enis(p: &LabPlan, o: Output) -> String {
    if o != Output::Table {
        return structured(o, &p.enis);
    }
    let rows: Vec<Vec<String>> = p
        .enis
        .iter()
        .map(|e| {
            let ips: Vec<String> = e.ips.iter().map(|i| i.to_string()).collect();
            vec![
                e.id.clone(),
                role(e.role).into(),
                e.instance.clone(),
                e.vswitch.clone(),
                ips.join(","),
                e.security_groups.join(","),
                mac_str(&e.mac),
                e.vlan.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                e.pod.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TYPE",
            "INSTANCE",
            "VSWITCH",
            "IPS",
            "SECURITY GROUPS",
            "MAC",
            "VLAN",
            "POD",
        ],
        &rows,
    )
}

fn podenis(v: &[PodEni], o: Output) -> String {
    if o != Output::Table {
        return structured(o, &v);
    }
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|e| {
            vec![
                e.pod.clone(),
                e.eni_id.clone(),
                e.ipv4.to_string(),
                e.vlan_id.to_string(),
                e.trunk_eni_id.clone(),
                e.instance_id.clone(),
                e.vswitch.clone(),
                e.security_group_ids.join(","),
                e.mac.clone(),
            ]
        })
        .collect();
    table(
        &[
            "POD",
            "ENI",
            "IP",
            "VLAN",
            "TRUNK",
            "INSTANCE",
            "VSWITCH",
            "SECURITY GROUPS",
            "MAC",
        ],
        &rows,
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PnView {
    name: String,
    status: String,
    allocation_type: String,
    #[serde(rename = "vSwitchOptions")]
    vswitch_options: Vec<String>,
    #[serde(rename = "securityGroupIDs")]
    security_group_ids: Vec<String>,
    /// Pods (`<ns>/<name>`) that got a member ENI through it.
    pods: Vec<String>,
}

fn podnetworkings(r: &Resolved, p: &LabPlan, o: Output) -> String {
    let trunked: Vec<String> = podeni::podenis(p).into_iter().map(|e| e.pod).collect();
    let views: Vec<PnView> = r
        .podnetworkings
        .iter()
        .map(|pn| PnView {
            name: pn.metadata.name.clone(),
            status: if podeni::is_ready(pn) {
                "Ready".into()
            } else {
                pn.status.status.clone().unwrap_or_default()
            },
            allocation_type: if podeni::is_fixed(pn) {
                "Fixed".into()
            } else {
                "Elastic".into()
            },
            vswitch_options: pn.spec.vswitch_options.clone(),
            security_group_ids: pn.spec.security_group_ids.clone(),
            pods: r
                .pods
                .iter()
                .filter(|pod| {
                    podeni::select(&r.podnetworkings, pod)
                        .is_some_and(|s| s.metadata.name == pn.metadata.name)
                })
                .map(|pod| format!("{}/{}", pod.metadata.ns(), pod.metadata.name))
                .filter(|k| trunked.contains(k))
                .collect(),
        })
        .collect();
    if o != Output::Table {
        return structured(o, &views);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.status.clone(),
                v.allocation_type.clone(),
                v.vswitch_options.join(","),
                v.security_group_ids.join(","),
                v.pods.join(","),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATUS",
            "ALLOCATION",
            "VSWITCHES",
            "SECURITY GROUPS",
            "PODS",
        ],
        &rows,
    )
}
