//! The picture of a lab as a graph: VPC router, vSwitches, security groups,
//! ENIs (primary, secondary, trunk, member), nodes, pods, SLBs, externals,
//! grouped by where they live, plus an observed probe's request and reply
//! hops. Renderers (DOT, Mermaid, SVG) only draw what this holds.

use std::collections::BTreeSet;

use crate::plan::{EndpointKind, EniRole, LabPlan, NsKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vpc,
    Vswitch,
    Sg,
    Eni(EniRole),
    Node,
    Pod,
    Slb,
    External,
}

#[derive(Debug, Clone)]
pub struct Vertex {
    /// Stable id, the observation point's where there is one: `vpc`,
    /// `vsw/<id>`, `sg/<id>`, `eni/<id>`, `node/<n>`, `pod/<ns>/<n>`,
    /// `slb/<id>`, `external/<n>`.
    pub id: String,
    pub label: String,
    pub kind: Kind,
    /// The box it is drawn in (`vpc` or `node/<n>`).
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A link, an attachment, a veth.
    Wire,
    /// A security group guarding an ENI.
    Guards,
    /// A load balancer's backend.
    Backend,
    /// Step n of the observed request.
    Request(usize),
    /// Step n of the observed reply.
    Reply(usize),
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub label: String,
    pub style: Style,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub title: String,
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
    /// `(group id, label)`.
    pub groups: Vec<(String, String)>,
}

fn role_word(r: EniRole) -> &'static str {
    match r {
        EniRole::Primary => "primary ENI",
        EniRole::Secondary => "secondary ENI",
        EniRole::Trunk => "trunk ENI",
        EniRole::Member => "member ENI",
        EniRole::Pod => "exclusive ENI",
        EniRole::External => "ENI",
    }
}

impl Graph {
    fn vertex(&mut self, id: String, label: String, kind: Kind, group: Option<String>) {
        self.vertices.push(Vertex {
            id,
            label,
            kind,
            group,
        });
    }
    fn edge(&mut self, from: &str, to: &str, label: &str, style: Style) {
        self.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            label: label.into(),
            style,
        });
    }
    pub fn has(&self, id: &str) -> bool {
        self.vertices.iter().any(|v| v.id == id)
    }

    /// The lab as planned.
    pub fn of(plan: &LabPlan) -> Graph {
        let mut g = Graph {
            title: plan.name.clone(),
            ..Default::default()
        };
        g.groups.push(("vpc".into(), "VPC".into()));
        g.vertex(
            "vpc".into(),
            "VPC router".into(),
            Kind::Vpc,
            Some("vpc".into()),
        );
        let vswitches: BTreeSet<&str> = plan.enis.iter().map(|e| e.vswitch.as_str()).collect();
        for v in &vswitches {
            let id = format!("vsw/{v}");
            g.vertex(
                id.clone(),
                format!("vSwitch {v}"),
                Kind::Vswitch,
                Some("vpc".into()),
            );
            g.edge("vpc", &id, "", Style::Wire);
        }
        let sgs: BTreeSet<&str> = plan
            .enis
            .iter()
            .flat_map(|e| e.security_groups.iter().map(String::as_str))
            .collect();
        for s in &sgs {
            g.vertex(
                format!("sg/{s}"),
                format!("security group {s}"),
                Kind::Sg,
                Some("vpc".into()),
            );
        }
        for e in plan
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::Node)
        {
            let id = e.id.to_string();
            let name = id.trim_start_matches("node/");
            g.groups.push((id.clone(), format!("ECS {name}")));
            g.vertex(
                id.clone(),
                format!("node {name}\n{}", e.ip),
                Kind::Node,
                Some(id.clone()),
            );
        }
        for e in plan
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::Pod)
        {
            let host_net = plan.namespaces[e.ns].kind == Some(NsKind::Node);
            let id = e.id.to_string();
            let name = id.trim_start_matches("pod/");
            let group = e.node.as_ref().map(|n| format!("node/{n}"));
            let hn = if host_net { " (hostNetwork)" } else { "" };
            g.vertex(
                id.clone(),
                format!("pod {name}{hn}\n{}", e.ip),
                Kind::Pod,
                group.clone(),
            );
            if let Some(node) = group.filter(|_| !host_net) {
                g.edge(&node, &id, "veth", Style::Wire);
            }
        }
        for e in plan
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::External)
        {
            let id = e.id.to_string();
            let name = id.trim_start_matches("external/");
            g.vertex(
                id.clone(),
                format!("external {name}\n{}", e.ip),
                Kind::External,
                None,
            );
            if !plan.enis.iter().any(|r| r.instance == name) {
                g.edge("vpc", &id, "internet", Style::Wire);
            }
        }
        for r in &plan.enis {
            let id = format!("eni/{}", r.id);
            let ips = r
                .ips
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let vlan = r.vlan.map(|v| format!("\nVLAN {v}")).unwrap_or_default();
            let node = format!("node/{}", r.instance);
            let group = g.has(&node).then(|| node.clone());
            g.vertex(
                id.clone(),
                format!("{} {}\n{ips}{vlan}", role_word(r.role), r.id),
                Kind::Eni(r.role),
                group,
            );
            match (&r.trunk, &r.pod) {
                // A member ENI rides its trunk with a VLAN tag, for one pod.
                (Some(trunk), _) => {
                    let label = r.vlan.map(|v| format!("vlan {v}")).unwrap_or_default();
                    g.edge(&format!("eni/{trunk}"), &id, &label, Style::Wire);
                }
                _ => g.edge(&format!("vsw/{}", r.vswitch), &id, "", Style::Wire),
            }
            if let Some(pod) = &r.pod {
                g.edge(&id, &format!("pod/{pod}"), "", Style::Wire);
            } else if g.has(&node) {
                g.edge(&id, &node, "", Style::Wire);
            } else if g.has(&format!("external/{}", r.instance)) {
                g.edge(&id, &format!("external/{}", r.instance), "", Style::Wire);
            }
            for s in &r.security_groups {
                g.edge(&format!("sg/{s}"), &id, "", Style::Guards);
            }
        }
        for s in &plan.slbs {
            let id = format!("slb/{}", s.id);
            g.vertex(
                id.clone(),
                format!("SLB {}\n{}", s.id, s.ip),
                Kind::Slb,
                None,
            );
            g.edge(&id, "vpc", "", Style::Wire);
            let mut seen = BTreeSet::new();
            for l in &s.listeners {
                for b in &l.backends {
                    if g.has(&b.who) && seen.insert((b.who.clone(), l.port, b.port)) {
                        g.edge(
                            &id,
                            &b.who,
                            &format!("{} → {}", l.port, b.port),
                            Style::Backend,
                        );
                    }
                }
            }
        }
        g
    }

    /// The vertex an observation point belongs to: `eth0/<n>` and
    /// `host-veth/<pod>` are the node's stack, `trunk/<n>` and `hv/<n>` its
    /// trunk ENI, aliases resolve to the ENI.
    pub fn vertex_of(&self, plan: &LabPlan, point: &str) -> Option<String> {
        let point = crate::check::observe::canonical_point(plan, point);
        let (kind, rest) = point.split_once('/').unwrap_or((point.as_str(), ""));
        let rest = rest.split('@').next().unwrap_or(rest);
        let id = match kind {
            "vpc" => "vpc".to_string(),
            "eth0" => format!("node/{rest}"),
            // `node/<n>:<ifname>`: an interface of the node's own stack.
            "node" => format!("node/{}", rest.split(':').next().unwrap_or(rest)),
            "host-veth" => {
                let pod = plan.endpoint(&format!("pod/{rest}"))?;
                format!("node/{}", pod.node.as_ref()?)
            }
            "trunk" | "hv" => {
                let trunk = plan
                    .enis
                    .iter()
                    .find(|e| e.role == EniRole::Trunk && e.instance == rest)?;
                format!("eni/{}", trunk.id)
            }
            _ => point.clone(),
        };
        self.has(&id).then_some(id)
    }

    /// Overlays a probe's request and reply, hop by hop (consecutive hops in
    /// one vertex drawn once).
    pub fn overlay(&mut self, plan: &LabPlan, request: &[String], reply: &[String]) {
        for (hops, reply_side) in [(request, false), (reply, true)] {
            let mut seq: Vec<String> = Vec::new();
            for h in hops {
                if let Some(v) = self.vertex_of(plan, h) {
                    if seq.last() != Some(&v) {
                        seq.push(v);
                    }
                }
            }
            for (i, w) in seq.windows(2).enumerate() {
                let style = if reply_side {
                    Style::Reply(i + 1)
                } else {
                    Style::Request(i + 1)
                };
                let word = if reply_side { "reply" } else { "request" };
                self.edge(&w[0], &w[1], &format!("{word} {}", i + 1), style);
            }
        }
    }
}
