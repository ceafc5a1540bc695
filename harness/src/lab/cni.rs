//! The CNI runtime's part of a lab's life (`cni: plugins` and the flannel
//! variant): ADD for every pod after the build, the second plan with the
//! addresses the results gave, DEL before the namespaces go (teardown, and
//! `gc` after the owner died). State lives in `/run/cnlab/<id>.cni/`:
//! `pods/<container id>.json` (what DEL needs), `nodes/<node>/` (host-local
//! leases, tuning's saved values, flanneld's subnet.env).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::LabError;
use crate::cni::{Attachment, CniResult, Conflist, PodSandbox};
use crate::kernel::netlink::Netlink;
use crate::kernel::{nft, NetNs};
use crate::plan::agent::plugins::{CniAdds, CniRuntimePlan, PodAdd};
use crate::plan::LabPlan;

pub fn state_dir(lab_id: &str) -> PathBuf {
    std::path::Path::new(super::registry::RUN_DIR).join(format!("{lab_id}.cni"))
}

/// Per node: its plugins' state directory.
pub fn node_dir(lab_id: &str, node: &str) -> PathBuf {
    state_dir(lab_id)
        .join("nodes")
        .join(crate::plan::names::sanitize(node))
}

/// What ADD gave each pod: the plan's input, and the records for `get pods`.
#[derive(Debug, Default, Clone)]
pub struct AddOutcome {
    pub adds: CniAdds,
    pub records: Vec<PodCni>,
    pub notes: Vec<String>,
}

/// One pod's CNI attachment as `cnlab get pods` shows it: the chain that
/// ran, and its result or the error that ended it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCni {
    /// `<ns>/<name>`
    pub pod: String,
    pub node: String,
    /// The conflist's `name`.
    pub network: String,
    /// The conflist's `cniVersion`.
    pub cni_version: String,
    /// Plugin types in chain order.
    pub plugins: Vec<String>,
    pub bin_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CniResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// ADD for every pod of `rt`, in plan order. A pod whose chain fails is
/// torn down again at once (DEL for the whole chain, as containerd does for
/// a sandbox whose network setup failed) and reported with the error.
pub fn add_all(
    lab_id: &str,
    rt: &CniRuntimePlan,
    names: &[String],
    ns: &[NetNs],
) -> Result<AddOutcome, LabError> {
    let dir = state_dir(lab_id);
    let io = |e: std::io::Error| LabError::Cni(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(io)?;
    for c in &rt.chains {
        let nd = node_dir(lab_id, &c.node);
        std::fs::create_dir_all(&nd).map_err(io)?;
        if let Some(env) = &c.subnet_env {
            // flanneld's /run/flannel/subnet.env, one per node.
            std::fs::write(nd.join("subnet.env"), env).map_err(io)?;
        }
    }
    let mut out = AddOutcome::default();
    for p in &rt.pods {
        let chain = &rt.chains[p.chain];
        let conf = Conflist::from_value(&chain.conflist).map(|mut c| {
            out.notes
                .extend(c.confine_state(&node_dir(lab_id, &chain.node)));
            c
        });
        let mut record = PodCni {
            pod: format!("{}/{}", p.namespace, p.name),
            node: chain.node.clone(),
            network: chain.conflist["name"].as_str().unwrap_or_default().into(),
            cni_version: chain.conflist["cniVersion"]
                .as_str()
                .unwrap_or_default()
                .into(),
            plugins: Vec::new(),
            bin_dir: chain.bin_dir.clone(),
            result: None,
            error: None,
        };
        let conf = match conf {
            Ok(c) => c,
            Err(e) => {
                record.error = Some(e.to_string());
                out.records.push(record);
                out.adds.pods.insert(
                    p.key.clone(),
                    PodAdd::Failed {
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        record.plugins = conf.types();
        let sandbox = PodSandbox {
            key: p.key.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            uid: p.uid.clone(),
            netns: names[p.ns].clone(),
            node_netns: names[chain.node_ns].clone(),
        };
        let mut a = Attachment::new(
            &sandbox,
            lab_id,
            vec![chain.bin_dir.clone()],
            conf,
            p.runtime.clone(),
        );
        if let Some(ip) = p.ip_arg {
            a.env.args.push_str(&format!(";IP={ip}"));
        }
        let node = &ns[chain.node_ns];
        let add = match a.add(node, &dir) {
            Ok(res) => match res.pod_ipv4(&a.env.ifname) {
                Some((ip, _)) => {
                    let host_if = host_side(&ns[p.ns], node, &a.env.ifname);
                    record.result = Some(res);
                    PodAdd::Added { ip, host_if }
                }
                None => PodAdd::Failed {
                    error: format!(
                        "the result has no IPv4 address on {}: {}",
                        a.env.ifname,
                        res.summary()
                    ),
                },
            },
            Err(e) => PodAdd::Failed {
                error: e.to_string(),
            },
        };
        if let PodAdd::Failed { error } = &add {
            record.error = Some(error.clone());
            for e in a.del(node, &dir) {
                out.notes.push(format!(
                    "{}: DEL after the failed ADD ({error}): {e}",
                    p.key
                ));
            }
        }
        out.records.push(record);
        out.adds.pods.insert(p.key.clone(), add);
    }
    for c in &rt.chains {
        out.adds
            .node_links
            .insert(c.node.clone(), link_names(&ns[c.node_ns]));
    }
    for p in &rt.pods {
        if matches!(out.adds.pods.get(&p.key), Some(PodAdd::Added { .. })) {
            out.adds
                .pod_links
                .insert(p.key.clone(), link_names(&ns[p.ns]));
        }
    }
    Ok(out)
}

/// CHECK (`cnlab cni check`) for the recorded attachments of `pods`
/// (`<ns>/<name>`; all when empty), run from any process: each plugin in
/// its node's namespace, opened by name. One entry per pod: `Ok` or the
/// error of the plugin that failed (or why CHECK was not called).
pub fn check_all(lab_id: &str, pods: &[String]) -> Vec<(String, Result<(), String>)> {
    let all = Attachment::load_all(&state_dir(lab_id));
    let mut out: Vec<(String, Result<(), String>)> = all
        .iter()
        .filter(|a| pods.is_empty() || pods.iter().any(|p| pod_key(p) == a.pod))
        .map(|a| {
            let res = NetNs::open(&a.node_netns)
                .map_err(|e| format!("its node namespace: {e}"))
                .and_then(|node| a.check(&node).map_err(|e| e.to_string()));
            (a.pod.trim_start_matches("pod/").to_string(), res)
        })
        .collect();
    for p in pods {
        if !all.iter().any(|a| a.pod == pod_key(p)) {
            out.push((
                p.trim_start_matches("pod/").to_string(),
                Err(
                    "no CNI attachment recorded (not a plugin-plumbed pod, or its ADD failed)"
                        .into(),
                ),
            ));
        }
    }
    out
}

/// `ns/name` or `pod/ns/name` → `pod/ns/name`.
fn pod_key(p: &str) -> String {
    format!("pod/{}", p.trim_start_matches("pod/"))
}

/// Every interface of a namespace but `lo`, by name (none if it cannot be
/// listed: the lab then taps what the plan knows).
fn link_names(ns: &NetNs) -> Vec<String> {
    ns.run(|| -> Option<Vec<String>> {
        let mut nl = Netlink::open().ok()?;
        Some(
            nl.links()
                .ok()?
                .into_iter()
                .map(|l| l.name)
                .filter(|n| n != "lo")
                .collect(),
        )
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// The node-side interface the pod's `ifname` is linked to: its veth peer,
/// or its macvlan/ipvlan parent (IFLA_LINK, an index in the node).
fn host_side(pod: &NetNs, node: &NetNs, ifname: &str) -> Option<String> {
    let peer = pod
        .run(|| -> Option<u32> {
            let mut nl = Netlink::open().ok()?;
            nl.links()
                .ok()?
                .into_iter()
                .find(|l| l.name == ifname)?
                .link
        })
        .ok()??;
    node.run(|| -> Option<String> {
        let mut nl = Netlink::open().ok()?;
        Some(nl.links().ok()?.into_iter().find(|l| l.index == peer)?.name)
    })
    .ok()?
}

/// Takes the lab from the plan before ADD (`a`) to the plan after (`b`):
/// what changed is what depends on pod addresses — kube-proxy's and the
/// SLB's rules (nft, iptables, IPVS), neighbours pinned for pod addresses, and the
/// pods' echo servers (started afterwards from `b`). Anything else differing is a
/// planning bug and is refused, never half-applied.
pub fn apply_replan(a: &LabPlan, b: &LabPlan, ns: &[NetNs]) -> Result<(), LabError> {
    let same = a.namespaces.len() == b.namespaces.len()
        && a.veths == b.veths
        && a.namespaces.iter().zip(&b.namespaces).all(|(x, y)| {
            let strip = |n: &crate::plan::NsPlan| {
                let mut n = n.clone();
                n.nft = None;
                n.iptables = None;
                n.ipvs.clear();
                n.servers.clear();
                n.neighs.clear();
                n
            };
            strip(x) == strip(y) && x.neighs.iter().all(|n| y.neighs.contains(n))
        });
    if !same {
        let which: Vec<String> = a
            .namespaces
            .iter()
            .zip(&b.namespaces)
            .filter_map(|(x, y)| {
                let mut f = Vec::new();
                if x.links != y.links {
                    f.push("links")
                }
                if x.addrs != y.addrs {
                    f.push("addresses")
                }
                if x.routes != y.routes {
                    f.push("routes")
                }
                if x.rules != y.rules {
                    f.push("rules")
                }
                if x.neighs != y.neighs {
                    f.push("neighbours")
                }
                if x.sysctls != y.sysctls {
                    f.push("sysctls")
                }
                (!f.is_empty()).then(|| format!("{}: {}", x.key, f.join(" ")))
            })
            .collect();
        return Err(LabError::Cni(format!(
            "the plan after CNI ADD changes more than service rules (in {}): not applied",
            which.join(", ")
        )));
    }
    for (i, (x, y)) in a.namespaces.iter().zip(&b.namespaces).enumerate() {
        // Neighbours pinned for the pods' addresses (the VPC router's
        // on-link routes towards pod subnets).
        let new: Vec<_> = y
            .neighs
            .iter()
            .filter(|n| !x.neighs.contains(n))
            .cloned()
            .collect();
        if !new.is_empty() {
            ns[i]
                .run(|| -> Result<(), crate::kernel::KernelError> {
                    let mut nl = Netlink::open()?;
                    new.iter().try_for_each(|n| nl.add_neigh(n))
                })
                .and_then(|r| r)
                .map_err(|e| LabError::Cni(format!("{}: {e}", y.key)))?;
        }
        if x.ipvs != y.ipvs {
            // Native IPVS: the virtual servers again, now with real servers.
            ns[i]
                .run(|| -> Result<(), String> {
                    let mut ipvs = crate::kernel::ipvs::Ipvs::open().map_err(|e| e.to_string())?;
                    ipvs.flush().map_err(|e| e.to_string())?;
                    ipvs.program(&y.ipvs).map_err(|e| e.to_string())
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| LabError::Cni(format!("{}: {e}", y.key)))?;
        }
        if x.iptables != y.iptables {
            // kube-proxy's iptables mode: its chains replaced, now with endpoints.
            let apply = |rules: &str| {
                crate::kernel::iptables::restore(&ns[i], rules)
                    .map_err(|e| LabError::Cni(format!("{}: {e}", y.key)))
            };
            if let Some(old) = &x.iptables {
                apply(&crate::kernel::iptables::undo_script(old))?;
            }
            if let Some(new) = &y.iptables {
                apply(new)?;
            }
        }
        if x.nft == y.nft {
            continue;
        }
        // One transaction: the old tables go, the new ones come.
        let mut script = String::new();
        for t in x.nft.as_deref().map(tables).unwrap_or_default() {
            script.push_str(&format!("delete table {t}\n"));
        }
        script.push_str(y.nft.as_deref().unwrap_or_default());
        nft::apply(&ns[i], &script).map_err(|e| LabError::Cni(format!("{}: {e}", y.key)))?;
    }
    Ok(())
}

use crate::plan::faults::nft_tables as tables;

#[cfg(test)]
mod tests {
    #[test]
    fn tables_of_a_script() {
        let s = "table ip cnlab_flannel {\n chain c {}\n}\ntable inet kube-proxy {\n}\n";
        assert_eq!(
            super::tables(s),
            vec!["ip cnlab_flannel", "inet kube-proxy"]
        );
    }
}

/// Results of the pods' ADD, for `cnlab get pods`.
pub fn results_path(lab_id: &str) -> PathBuf {
    state_dir(lab_id).join("results.json")
}

pub fn save_results(lab_id: &str, records: &[PodCni]) -> Result<(), LabError> {
    let path = results_path(lab_id);
    let data = serde_json::to_vec_pretty(records).map_err(|e| LabError::Cni(e.to_string()))?;
    std::fs::write(&path, data).map_err(|e| LabError::Cni(format!("{}: {e}", path.display())))
}

/// The records `save_results` wrote (none for a lab without CNI plugins).
pub fn load_results(lab_id: &str) -> Vec<PodCni> {
    std::fs::read(results_path(lab_id))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// DEL for every attachment the lab recorded (its owner's teardown, or
/// `gc`), then its CNI state goes with the namespaces (a failed DEL is
/// returned; what it left is inside namespaces about to be deleted).
pub fn del_all(lab_id: &str) -> Vec<String> {
    let dir = state_dir(lab_id);
    if !dir.exists() {
        return Vec::new();
    }
    let failures = crate::cni::runtime::del_all(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    failures
}
