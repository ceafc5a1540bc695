//! `cnlab get svc|endpoints|slb` and `cnlab rules NODE`: the Services,
//! kube-proxy's virtual servers and the CLBs of a running lab, read from its
//! plan (and, for `rules`, the node's live nft ruleset).

use crate::lab::registry;
use crate::plan::proxy::ipvsadm_listing;
use serde_json::json;

use crate::plan::{LabPlan, ServicePortPlan, ServiceType, TrafficPolicy};
use crate::topology::model::Proto;
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
            let rows: Vec<Vec<String>> = plan
                .services
                .iter()
                .map(|s| {
                    let mut ext: Vec<String> =
                        s.external_ips.iter().map(|i| i.to_string()).collect();
                    if let Some(lb) = s.lb_ip {
                        ext.push(if s.lb_hostname {
                            format!("{lb}(hostname, not bound)")
                        } else {
                            lb.to_string()
                        });
                    }
                    vec![
                        s.ns.clone(),
                        s.name.clone(),
                        type_name(s.type_).into(),
                        s.cluster_ip
                            .map(|i| i.to_string())
                            .unwrap_or_else(|| "None".into()),
                        if ext.is_empty() {
                            "<none>".into()
                        } else {
                            ext.join(",")
                        },
                        kubectl_ports(&s.ports),
                        format!(
                            "{}/{}",
                            policy_name(s.external_policy),
                            policy_name(s.internal_policy)
                        ),
                    ]
                })
                .collect();
            o += &super::get::table(
                &[
                    "NAMESPACE",
                    "NAME",
                    "TYPE",
                    "CLUSTER-IP",
                    "EXTERNAL-IP",
                    "PORT(S)",
                    "POLICY(ext/int)",
                ],
                &rows,
            );
        }
        GetWhat::Endpoints => {
            let mut rows = Vec::new();
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
                rows.push(vec![
                    s.ns.clone(),
                    s.name.clone(),
                    if eps.is_empty() {
                        "<none>".into()
                    } else {
                        eps.join(", ")
                    },
                ]);
            }
            o += &super::get::table(&["NAMESPACE", "NAME", "ENDPOINTS"], &rows);
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

fn type_name(t: ServiceType) -> &'static str {
    match t {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    }
}

fn policy_name(p: TrafficPolicy) -> &'static str {
    match p {
        TrafficPolicy::Local => "Local",
        TrafficPolicy::Cluster => "Cluster",
    }
}

/// `TCP`, `UDP` as the Kubernetes API spells a port's protocol.
fn protocol_name(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "UDP",
        // A Service port is TCP unless it says otherwise.
        _ => "TCP",
    }
}

/// `PORT(S)` as kubectl prints it: `80:30080/TCP,53/UDP`.
pub fn kubectl_ports(ports: &[ServicePortPlan]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|p| match p.node_port {
            Some(np) => format!("{}:{np}/{}", p.port, protocol_name(p.protocol)),
            None => format!("{}/{}", p.port, protocol_name(p.protocol)),
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// `get svc -o yaml`: the Services as the Kubernetes API writes them (a
/// `v1 List`), not the plan's own records.
pub fn services_yaml(plan: &LabPlan) -> serde_json::Value {
    let items: Vec<serde_json::Value> = plan
        .services
        .iter()
        .map(|s| {
            let ports: Vec<serde_json::Value> = s
                .ports
                .iter()
                .map(|p| {
                    let mut v = json!({
                        "port": p.port,
                        "protocol": protocol_name(p.protocol),
                        "targetPort": p.target.parse::<u16>().map(|n| json!(n)).unwrap_or_else(|_| json!(p.target)),
                    });
                    if let Some(n) = &p.name {
                        v["name"] = json!(n);
                    }
                    if let Some(np) = p.node_port {
                        v["nodePort"] = json!(np);
                    }
                    v
                })
                .collect();
            let mut spec = json!({
                "type": type_name(s.type_),
                "clusterIP": s.cluster_ip.map(|i| i.to_string()).unwrap_or_else(|| "None".into()),
                "ports": ports,
                "internalTrafficPolicy": policy_name(s.internal_policy),
            });
            if s.type_ != ServiceType::ClusterIP {
                spec["externalTrafficPolicy"] = json!(policy_name(s.external_policy));
            }
            if !s.external_ips.is_empty() {
                spec["externalIPs"] = json!(s.external_ips);
            }
            let mut svc = json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": s.name, "namespace": s.ns},
                "spec": spec,
            });
            if let Some(lb) = s.lb_ip {
                svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": lb.to_string()}]}});
            }
            svc
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `get endpoints -o yaml`: one `discovery.k8s.io/v1` EndpointSlice per
/// Service, with each endpoint's conditions.
pub fn endpoint_slices_yaml(plan: &LabPlan) -> serde_json::Value {
    let items: Vec<serde_json::Value> = plan
        .services
        .iter()
        .map(|s| {
            let endpoints: Vec<serde_json::Value> = s
                .endpoints
                .iter()
                .map(|e| {
                    let pod = e.pod.strip_prefix("pod/").unwrap_or(&e.pod);
                    let (ns, name) = pod.split_once('/').unwrap_or(("", pod));
                    json!({
                        "addresses": [e.ip.to_string()],
                        "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
                        "nodeName": e.node,
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": name},
                    })
                })
                .collect();
            // A slice lists one port set; the first endpoint's target ports stand for all.
            let ports: Vec<serde_json::Value> = s
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let port = s.endpoints.iter().find_map(|e| e.target_ports.get(i).copied().flatten());
                    let mut v = json!({"protocol": protocol_name(p.protocol), "port": port});
                    if let Some(n) = &p.name {
                        v["name"] = json!(n);
                    }
                    v
                })
                .collect();
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": s.name,
                    "namespace": s.ns,
                    "labels": {"kubernetes.io/service-name": s.name},
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
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
