//! Input checked as far as the planner goes: `cnlab validate`, `check`,
//! `plan` and `up` all reject a file the planner would reject, and every
//! planning problem names its YAML path and line like a parsing one.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::plan::{self, Backends, LabPlan, PlanError};
use crate::topology::lines::{join_index, join_key};
use crate::topology::parse::KubeIndex;
use crate::topology::{load_file, load_str, Loaded, Problem, Report, Resolved};

/// `load_file`, then the whole planner (portable backends: planning needs no
/// kernel). Pods the CNI leaves pending become warnings at their line.
pub fn load_planned(path: &Path) -> Result<Loaded, Report> {
    let origin = path.display().to_string();
    load_file(path).and_then(|l| plan_loaded(l, &origin))
}

/// As `load_planned`, for text.
pub fn load_planned_str(text: &str, origin: &str) -> Result<Loaded, Report> {
    load_str(text, origin).and_then(|l| plan_loaded(l, origin))
}

/// Plans a loaded topology; a planning error becomes a located problem.
pub fn plan_loaded(mut loaded: Loaded, origin: &str) -> Result<Loaded, Report> {
    // Impairments as with netem: whether this kernel has it is decided
    // when a lab comes up (`Lab::up` plans again, for the real backends).
    let backends = Backends {
        netem: true,
        ..Backends::PORTABLE
    };
    match plan::plan(&loaded.resolved, backends) {
        Ok(p) => {
            let pending = pending_warnings(&loaded, &p);
            loaded.warnings.extend(pending);
            Ok(loaded)
        }
        Err(e) => Err(Report {
            origin: origin.to_string(),
            errors: vec![locate(&loaded, &e)],
            warnings: loaded.warnings,
        }),
    }
}

fn problem(l: &Loaded, path: &str, message: String) -> Problem {
    let mut p = Problem::at(&l.lines, path, message);
    p.path = l.lines.display(&p.path);
    p
}

fn pending_warnings(l: &Loaded, p: &LabPlan) -> Vec<Problem> {
    p.pending
        .iter()
        // `cni: plugins`: every pod waits for its ADD at planning time.
        .filter(|pod| pod.reason != crate::plan::agent::plugins::WAITING_FOR_ADD)
        .map(|pod| {
            let mut path = pod_path(&l.resolved, &pod.pod).unwrap_or_else(|| "kubernetes".into());
            let pinned = l.resolved.pods.iter().any(|x| {
                format!("{}/{}", x.metadata.ns(), x.metadata.name) == pod.pod
                    && x.status.pod_ip.is_some()
            });
            // The reason names the pinned address when that is what failed.
            if pinned && pod.reason.contains("pinned") {
                path = join_key(&join_key(&path, "status"), "podIP");
            }
            problem(
                l,
                &path,
                format!("pod {} will stay pending: {}", pod.pod, pod.reason),
            )
        })
        .collect()
}

/// The YAML path a planning error is about, with the error as its message.
pub fn locate(l: &Loaded, e: &PlanError) -> Problem {
    let r = &l.resolved;
    let topo = &r.topo;
    let node = |name: &str| {
        topo.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| join_index("nodes", i))
    };
    let route_entry = |dest| {
        topo.vpc
            .route_entries
            .iter()
            .position(|re| re.dest == dest)
            .map(|i| join_index("vpc.route_entries", i))
    };
    let path = match e {
        PlanError::CniNotImplemented(_) => Some("cluster.cni".to_string()),
        PlanError::MissingPodCidr { .. } | PlanError::BadNodeCidrPrefix { .. } => {
            Some("cluster.pod_cidr".to_string())
        }
        PlanError::NoPodCidrSlice { node: n, .. } => node(n),
        PlanError::UnknownVswitch { owner, .. } => {
            owner_path(r, owner).map(|p| join_key(&p, "vswitch"))
        }
        PlanError::VswitchFull { owner, .. } => owner_path(r, owner),
        PlanError::AddressInUse { owner, ip, .. } => {
            owner_path(r, owner).map(|p| address_path(r, &p, *ip))
        }
        PlanError::UnknownSecurityGroup { owner, .. } => {
            owner_path(r, owner).map(|p| join_key(&p, "security_groups"))
        }
        PlanError::BadPorts { sg, rule, .. } => topo
            .vpc
            .security_groups
            .iter()
            .position(|s| s.id == *sg)
            .map(|i| format!("vpc.security_groups[{i}].rules[{rule}].ports")),
        PlanError::ExternalWithoutVswitch { external } => topo
            .externals
            .iter()
            .position(|x| x.name == *external)
            .map(|i| join_index("externals", i)),
        PlanError::NoControllerEntry { dest, .. } => {
            route_entry(*dest).map(|p| join_key(&p, "action"))
        }
        PlanError::UnknownNextHop { dest, .. } | PlanError::RouteEntryConflict { dest, .. } => {
            route_entry(*dest).map(|p| join_key(&p, "next_hop"))
        }
        PlanError::Service { service, .. } => service_path(r, service),
        PlanError::BadVersion(_) => Some("cluster.kubernetes".to_string()),
        PlanError::PortClash { second, .. } => owner_path(r, second),
        PlanError::Fault { path, .. } => Some(path.clone()),
    };
    let mut message = match e {
        PlanError::Fault { reason, .. } => reason.clone(),
        _ => e.to_string(),
    };
    if let PlanError::PortClash { first, .. } = e {
        if let Some(at) = owner_path(r, first) {
            message += &format!(
                " (the first at {}, line {})",
                l.lines.display(&at),
                l.lines.line(&at).unwrap_or(0)
            );
        }
    }
    problem(l, path.as_deref().unwrap_or(""), message)
}

/// `node/<n>`, `external/<x>`, `pod/<ns>/<name>` (or `<ns>/<name>`) → the
/// YAML path of that object.
fn owner_path(r: &Resolved, owner: &str) -> Option<String> {
    if let Some(n) = owner.strip_prefix("node/") {
        return r
            .topo
            .nodes
            .iter()
            .position(|x| x.name == n)
            .map(|i| join_index("nodes", i));
    }
    if let Some(n) = owner.strip_prefix("external/") {
        return r
            .topo
            .externals
            .iter()
            .position(|x| x.name == n)
            .map(|i| join_index("externals", i));
    }
    pod_path(r, owner.strip_prefix("pod/").unwrap_or(owner))
}

fn pod_path(r: &Resolved, key: &str) -> Option<String> {
    let key = key.strip_prefix("pod/").unwrap_or(key);
    let kix = KubeIndex::of(&r.topo);
    r.pods
        .iter()
        .position(|p| format!("{}/{}", p.metadata.ns(), p.metadata.name) == key)
        .and_then(|i| kix.pods.get(i))
        .map(|k| join_index("kubernetes", *k))
}

fn service_path(r: &Resolved, key: &str) -> Option<String> {
    let key = key.strip_prefix("svc/").unwrap_or(key);
    let kix = KubeIndex::of(&r.topo);
    r.services
        .iter()
        .position(|s| {
            format!("{}/{}", s.metadata.ns(), s.metadata.name) == key || s.metadata.name == key
        })
        .and_then(|i| kix.services.get(i))
        .map(|k| join_index("kubernetes", *k))
}

/// The key holding `ip` inside the object at `path`, when there is one.
fn address_path(r: &Resolved, path: &str, ip: Ipv4Addr) -> String {
    if path.starts_with("kubernetes") {
        let pinned = r.pods.iter().any(|p| p.status.pod_ip == Some(ip));
        if pinned {
            return format!("{path}.status.podIP");
        }
        return path.to_string();
    }
    join_key(path, "ip")
}
