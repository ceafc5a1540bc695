//! `cnlab get svc|endpoints|slb` and `cnlab rules NODE`: the Services,
//! kube-proxy's virtual servers and the CLBs of a running lab, read from its
//! plan (and, for `rules`, the node's live nft ruleset).

use crate::lab::registry;
use crate::plan::proxy::ipvsadm_listing;
use crate::plan::{LabPlan, ServiceType, TrafficPolicy};
use crate::topology::PointId;

use super::running;

const EXIT_FAIL: i32 = 1;

/// The service listings `cnlab get` prints (its `Resource` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetWhat {
    Svc,
    Endpoints,
    Slb,
}

fn load(cmd: &str, which: Option<&str>) -> Result<(String, LabPlan), i32> {
    let rec = running::find(which).map_err(|e| {
        eprintln!("cnlab {cmd}: {e}");
        EXIT_FAIL
    })?;
    let plan = registry::load_plan(&rec.id).map_err(|e| {
        eprintln!("cnlab {cmd}: reading the plan of lab {}: {e}", rec.id);
        EXIT_FAIL
    })?;
    Ok((rec.id, plan))
}

/// The `kubectl get`-like table for `what`.
pub fn render_get(plan: &LabPlan, what: GetWhat) -> String {
    let mut o = String::new();
    match what {
        GetWhat::Svc => {
            o += "NAMESPACE  NAME  TYPE  CLUSTER-IP  EXTERNAL-IP  PORT(S)  POLICY(ext/int)\n";
            for s in &plan.services {
                let ty = match s.type_ {
                    ServiceType::ClusterIP => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                };
                let mut ext: Vec<String> = s.external_ips.iter().map(|i| i.to_string()).collect();
                if let Some(lb) = s.lb_ip {
                    ext.push(if s.lb_hostname {
                        format!("{lb}(hostname, not bound)")
                    } else {
                        lb.to_string()
                    });
                }
                let ports: Vec<String> = s
                    .ports
                    .iter()
                    .map(|p| match p.node_port {
                        Some(np) => format!("{}:{np}/{:?}", p.port, p.protocol),
                        None => format!("{}/{:?}", p.port, p.protocol),
                    })
                    .collect();
                let pol = |p: TrafficPolicy| {
                    if p == TrafficPolicy::Local {
                        "Local"
                    } else {
                        "Cluster"
                    }
                };
                o += &format!(
                    "{}  {}  {ty}  {}  {}  {}  {}/{}\n",
                    s.ns,
                    s.name,
                    s.cluster_ip
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "None".into()),
                    if ext.is_empty() {
                        "<none>".into()
                    } else {
                        ext.join(",")
                    },
                    ports.join(","),
                    pol(s.external_policy),
                    pol(s.internal_policy)
                );
            }
        }
        GetWhat::Endpoints => {
            o += "NAMESPACE  NAME  ENDPOINTS\n";
            for s in &plan.services {
                let eps: Vec<String> = s
                    .endpoints
                    .iter()
                    .flat_map(|e| {
                        e.target_ports.iter().flatten().map(move |p| {
                            let cond = match (e.ready, e.serving, e.terminating) {
                                (true, _, _) => "",
                                (false, true, true) => ", terminating (serving)",
                                (false, false, true) => ", terminating",
                                _ => ", not ready",
                            };
                            format!(
                                "{}:{p} ({} on {}{}{cond})",
                                e.ip,
                                e.pod,
                                e.node,
                                if e.host_network { ", hostNetwork" } else { "" }
                            )
                        })
                    })
                    .collect();
                o += &format!(
                    "{}  {}  {}\n",
                    s.ns,
                    s.name,
                    if eps.is_empty() {
                        "<none>".into()
                    } else {
                        eps.join(", ")
                    }
                );
            }
        }
        GetWhat::Slb => {
            for slb in &plan.slbs {
                o += &format!(
                    "{}  {}  (vpc link {}, return mark {:#x} table {})\n",
                    slb.id, slb.ip, slb.vpc_link, slb.mark, slb.table
                );
                for l in &slb.listeners {
                    let backends: Vec<String> = l
                        .backends
                        .iter()
                        .map(|b| format!("{}:{} ({})", b.ip, b.port, b.who))
                        .collect();
                    o += &format!(
                        "  listener {}/{:?}{}  -> {}\n",
                        l.port,
                        l.proto,
                        l.service
                            .as_deref()
                            .map(|s| format!(" (service {s})"))
                            .unwrap_or_default(),
                        if backends.is_empty() {
                            "<no backends>".into()
                        } else {
                            backends.join(", ")
                        }
                    );
                }
            }
        }
    }
    o
}

/// `cnlab rules NODE`: the node's nft ruleset, then its virtual servers.
pub fn rules(node: &str, which: Option<&str>) -> Result<i32, i32> {
    let (id, plan) = load("rules", which)?;
    let key = PointId::parse_node(node).map_or_else(|_| node.to_string(), |k| k.to_string());
    let Some(idx) = plan.ns_index(&key) else {
        let nodes: Vec<&str> = plan.proxy_nodes.iter().map(|p| p.node.as_str()).collect();
        eprintln!(
            "cnlab rules: no node {node} in lab {id}; nodes: {}",
            nodes.join(", ")
        );
        return Err(EXIT_FAIL);
    };
    let rec = registry::LabRecord::load(&id).map_err(|e| {
        eprintln!("cnlab rules: reading lab {id}: {e}");
        EXIT_FAIL
    })?;
    let Some(ns_name) = rec.namespaces.get(idx) else {
        eprintln!("cnlab rules: lab {id} has no namespace for {key}");
        return Err(EXIT_FAIL);
    };
    let ns = crate::kernel::NetNs::open(ns_name).map_err(|e| {
        eprintln!("cnlab rules: {e}");
        EXIT_FAIL
    })?;
    match crate::kernel::nft::list_ruleset(&ns) {
        Ok(r) => println!("# nft list ruleset ({key})\n{r}"),
        Err(e) => {
            eprintln!("cnlab rules: {e}");
            return Err(EXIT_FAIL);
        }
    }
    if plan.namespaces[idx].iptables.is_some() {
        match crate::kernel::iptables::save(&ns) {
            Ok(r) => println!("# iptables-save ({key}, kube-proxy iptables mode)\n{r}"),
            Err(e) => {
                eprintln!("cnlab rules: {e}");
                return Err(EXIT_FAIL);
            }
        }
    }
    let name = key.trim_start_matches("node/");
    if plan.proxy != crate::topology::model::ProxyMode::Ipvs {
        return Ok(0);
    }
    if let Some(p) = plan.proxy_nodes.iter().find(|p| p.node == name) {
        let bound: Vec<String> = p.bound.iter().map(|b| format!("{b}/32")).collect();
        println!("# kube-ipvs0: {}", bound.join(" "));
        println!(
            "# {}",
            crate::plan::render::ipvs_backend_label(plan.backends.ipvs)
        );
        if plan.backends.ipvs && plan.proxy == crate::topology::model::ProxyMode::Ipvs {
            // Native backend: what the kernel's IPVS table really holds.
            let listed = ns
                .run(|| crate::kernel::ipvs::Ipvs::open()?.list())
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match listed {
                Ok(states) => println!(
                    "# ipvsadm -Ln (read back from the kernel in {key})\n{}",
                    crate::kernel::ipvs::render(&states)
                ),
                Err(e) => {
                    eprintln!("cnlab rules: reading the IPVS table of {key}: {e}");
                    return Err(EXIT_FAIL);
                }
            }
        } else {
            println!(
                "# ipvsadm -Ln style (virtual servers of the plan, emulated by nftables)\n{}",
                ipvsadm_listing(p)
            );
        }
    }
    Ok(0)
}
