//! `LabPlan`: the complete list of kernel objects a topology becomes.
//!
//! `plan()` is pure: the mock cloud (VPC router, ENIs, security groups), the
//! nodes, the CNI's pod plumbing, echo servers, probe endpoints and
//! observation points, decided up front and printable with `render()`.

pub mod agent;
pub mod ccm;
pub mod cloud;
pub mod draft;
pub mod faults;
pub mod invariants;
pub mod ipam;
pub mod limits;
pub mod names;
pub mod neigh;
pub mod podeni;
pub mod proxy;
pub mod render;
pub mod sg;
pub mod slb;
pub mod types;

pub use render::render;
pub use types::*;

use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::topology::model::{Cni, RouteAction};
use crate::topology::{PointId, Resolved};
use draft::Draft;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("cni {0} is not implemented yet")]
    CniNotImplemented(String),
    #[error("cluster.pod_cidr is required for cni {cni}")]
    MissingPodCidr { cni: String },
    #[error("cluster.node_cidr_prefix /{prefix} does not fit pod CIDR {pod_cidr}")]
    BadNodeCidrPrefix { pod_cidr: Ipv4Net, prefix: u8 },
    #[error("node {node}: pod CIDR {pod_cidr} has no /{prefix} slice left")]
    NoPodCidrSlice {
        node: String,
        pod_cidr: Ipv4Net,
        prefix: u8,
    },
    #[error("{owner}: unknown vswitch {vswitch:?}")]
    UnknownVswitch { owner: String, vswitch: String },
    #[error("{owner}: no free address left on vswitch {vswitch}")]
    VswitchFull { vswitch: String, owner: String },
    #[error("{owner}: address {ip} is already used by {other}")]
    AddressInUse {
        ip: Ipv4Addr,
        owner: String,
        other: String,
    },
    #[error("{owner}: unknown security group {sg:?}")]
    UnknownSecurityGroup { owner: String, sg: String },
    #[error("security group {sg} rule {rule}: {reason}")]
    BadPorts {
        sg: String,
        rule: usize,
        reason: String,
    },
    #[error("external/{external}: needs a vswitch or internet: true")]
    ExternalWithoutVswitch { external: String },
    #[error("route entry {dest}: next hop {next_hop:?} is neither a node nor an ENI address")]
    UnknownNextHop { dest: Ipv4Net, next_hop: String },
    #[error("route entry {dest}: action {action}, but the cloud controller creates no entry for {dest} (it creates: {created})")]
    NoControllerEntry {
        dest: Ipv4Net,
        action: &'static str,
        created: String,
    },
    #[error("route entry {dest}: next hop {first} and {second} both claim it (write action: replace to put yours in place of the cloud controller's)")]
    RouteEntryConflict {
        dest: Ipv4Net,
        first: String,
        second: String,
    },
    // -- services --
    #[error("service {service}: {reason}")]
    Service { service: String, reason: String },
    #[error("{0}")]
    BadVersion(String),
    #[error("{ns}: port {port} is served by both {first} and {second}")]
    PortClash {
        ns: String,
        port: u16,
        first: String,
        second: String,
    },
    #[error("{path}: {reason}")]
    Fault { path: String, reason: String },
}

/// Plans the whole lab. Input is assumed validated, but nothing panics: a
/// problem comes back as a `PlanError` naming the object.
pub fn plan(r: &Resolved, backends: Backends) -> Result<LabPlan, PlanError> {
    plan_cni(r, backends, &agent::plugins::CniAdds::default())
}

/// As `plan`, with what CNI ADD gave each pod (`cni: plugins` and the
/// flannel variant plan once before ADD and once after; other modes
/// ignore `adds`).
pub fn plan_cni(
    r: &Resolved,
    backends: Backends,
    adds: &agent::plugins::CniAdds,
) -> Result<LabPlan, PlanError> {
    let topo = &r.topo;
    let cni = topo.cluster.cni;
    let mode = agent::mode(cni)?;
    let mut d = Draft::new(LabPlan::empty(
        &topo.name,
        cni,
        topo.cluster.proxy,
        &topo.cluster.kubernetes,
        backends,
    ));

    // The cloud: router, instances, hosts outside the cluster.
    let vpc = cloud::add_vpc(&mut d, topo);
    let mut book = cloud::AddressBook::default();
    cloud::claim_pinned(topo, &mut book)?;
    let vpc_addressing = mode.addressing() == agent::Addressing::Vpc;
    if vpc_addressing {
        // terway: pinned pod addresses are VPC addresses, reserved first.
        agent::alloc::claim_pinned_pods(r, &mut book)?;
    }
    let mut nodes = Vec::new();
    for n in &topo.nodes {
        nodes.push(cloud::add_node(&mut d, vpc, topo, &mut book, n)?);
    }
    if let Some(ip) = topo.cluster.node_local_dns {
        for n in &nodes {
            node_local_dns(&mut d, n.ns, ip);
        }
    }
    let mut inet_index = 0;
    for x in &topo.externals {
        cloud::add_external(&mut d, vpc, topo, x, &mut inet_index)?;
    }

    // The CNI: pod addresses, pod plumbing, route entries it needs.
    let runs_plugins = cni == Cni::Plugins || topo.cluster.cni_plugins.is_some();
    let (placement, wired) = if runs_plugins {
        if topo.nodes.iter().any(|n| n.trunk.is_some()) {
            // Declared trunk and member ENIs: the cloud's, before any plugin runs.
            let mut ctx = agent::alloc::VpcIpCtx::new(&mut d, r, vpc, &nodes, &mut book);
            agent::trunking::declared(&mut d, &mut ctx)?;
        }
        plugins_cni(&mut d, r, &nodes, adds)?
    } else if vpc_addressing {
        // terway-eni / -eniip / -eniip-ipvlan / -trunking: VPC pod addresses.
        let mut ctx = agent::alloc::VpcIpCtx::new(&mut d, r, vpc, &nodes, &mut book);
        let out = mode.program(&mut d, agent::ModeCtx::Vpc(&mut ctx))?;
        let placement = std::mem::take(&mut ctx.placement);
        d.plan.pending = placement.pending.clone();
        (placement, out)
    } else {
        pod_cidr_cni(&mut d, r, &nodes, mode)?
    };

    // VPC route entries: the topology's, then the CNI's (those the
    // topology replaces or removes left out).
    let created: Vec<Ipv4Net> = wired.route_entries.iter().map(|(d, _)| *d).collect();
    for e in &topo.vpc.route_entries {
        if e.action != RouteAction::Add && !created.contains(&e.dest) {
            return Err(PlanError::NoControllerEntry {
                dest: e.dest,
                action: e.action.as_str(),
                created: created
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if e.action != RouteAction::Remove {
            cloud::add_route_entry(&mut d, &nodes, e.dest, &e.next_hop)?;
        }
    }
    for (dest, node) in &wired.route_entries {
        let customer = topo
            .vpc
            .route_entries
            .iter()
            .any(|e| e.dest == *dest && e.action != RouteAction::Add);
        if !customer {
            cloud::add_route_entry(&mut d, &nodes, *dest, node)?;
        }
    }
    cloud::program_route_entries(&mut d, vpc);

    // Security groups, once every ENI address and route entry is known.
    let mut members = sg::GroupMembers::default();
    // Keyed once: one lookup per ENI, not a scan of every namespace.
    let by_key: HashMap<&str, NsIdx> = d
        .plan
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, n)| (n.key.as_str(), i))
        .collect();
    let eni_ns: Vec<Option<NsIdx>> = d
        .plan
        .enis
        .iter()
        .map(|e| {
            by_key
                .get(PointId::eni(&e.id).to_string().as_str())
                .copied()
        })
        .collect();
    for (i, ns) in eni_ns.into_iter().enumerate() {
        let eni = d.plan.enis[i].clone();
        let Some(ns) = ns else {
            continue;
        };
        match sg::eni_nft_with(topo, &d.plan, &eni, &mut members)? {
            Some(script) => d.ns(ns).nft = Some(script),
            None => d.plan.notes.push(no_security_group(&eni)),
        }
    }
    // Member ENIs have no namespace: their hypervisor filters them.
    agent::trunking::member_security_groups(&mut d, topo, &mut members)?;

    // Pods as endpoints, observation points and echo servers.
    // Keyed once: a 10,000-pod lab would otherwise compare every pair.
    let placed: HashMap<PointId, &ipam::PlacedPod> =
        placement.placed.iter().map(|p| (p.key(), p)).collect();
    for w in &wired.pods {
        let p = placed.get(&w.key).copied();
        let (Some(p), Some(node)) = (p, p.map(|p| &nodes[p.node])) else {
            continue;
        };
        let Some(ip) = p.ip else { continue };
        d.plan.endpoints.push(Endpoint {
            id: w.key.clone(),
            kind: EndpointKind::Pod,
            ns: w.ns,
            ip,
            node: Some(node.name.clone()),
        });
        d.plan.points.push(ObsPoint {
            id: w.key.clone(),
            aliases: vec![],
            ns: w.ns,
            ifname: None,
            vlan: None,
        });
        d.plan.points.push(ObsPoint {
            id: PointId::host_veth(&p.ns, &p.name),
            aliases: vec![],
            ns: node.ns,
            ifname: Some(w.host_veth.clone()),
            vlan: None,
        });
    }
    for p in placement.placed.iter().filter(|p| p.ip.is_none()) {
        let node = &nodes[p.node];
        d.plan.endpoints.push(Endpoint {
            id: p.key(),
            kind: EndpointKind::Pod,
            ns: node.ns,
            ip: node.ip,
            node: Some(node.name.clone()),
        });
    }
    agent::plugins::discovered_points(&mut d, &nodes, adds);
    add_servers(&mut d, r, &placement, &wired, &nodes)?;

    // Services: kube-proxy on every node, the cloud controller's CLBs, and
    // what internet hosts may reach.
    program_services(&mut d, r, &placement, &nodes, vpc)?;

    d.router_sysctls_where(|_, n| {
        matches!(
            n.kind,
            Some(NsKind::Vpc | NsKind::Eni | NsKind::Node | NsKind::Hypervisor)
        )
    });
    bridge_netfilter(&mut d);
    let mut plan = d.plan;
    neigh::pin_neighbours(&mut plan);
    if !topo.impairments.is_empty() || !topo.events.is_empty() {
        faults::add(r, backends, adds, &mut plan)?;
    }
    Ok(plan)
}

/// The note for an ENI that nothing filters.
pub(crate) fn no_security_group(eni: &EniRecord) -> String {
    format!(
        "eni {} ({}) has no security group: nothing filters it",
        eni.id, eni.instance
    )
}

/// Where br_netfilter is loaded its per-namespace default is 1 for every
/// bridge: nodes keep that (kubeadm's preflight requires
/// `bridge-nf-call-iptables=1`, so a pod's reply bridged on cni0 meets the
/// node's conntrack/IPVS), every other namespace with a bridge gets 0 (the
/// cloud's bridges run no netfilter). Without it the files do not exist.
fn bridge_netfilter(d: &mut Draft) {
    const CALL_IPTABLES: &str = "net/bridge/bridge-nf-call-iptables";
    if !d.plan.backends.br_netfilter {
        let bridged_pods = d.plan.namespaces.iter().any(|n| {
            let bridges: Vec<&str> = n
                .links
                .iter()
                .filter(|l| l.kind == LinkKind::Bridge)
                .map(|l| l.name.as_str())
                .collect();
            n.kind == Some(NsKind::Node)
                && n.link_settings
                    .iter()
                    .any(|s| s.master.as_deref().is_some_and(|m| bridges.contains(&m)))
        });
        if bridged_pods {
            d.plan.notes.push(
                "br_netfilter is not loaded: traffic bridged between pods on one node's bridge skips the node's netfilter (real kubeadm nodes set bridge-nf-call-iptables=1); cnlab does not load it on a host".into(),
            );
        }
        return;
    }
    for ns in 0..d.plan.namespaces.len() {
        let n = &d.plan.namespaces[ns];
        let value = if n.kind == Some(NsKind::Node) {
            "1"
        } else if n.links.iter().any(|l| l.kind == LinkKind::Bridge) {
            "0"
        } else {
            continue;
        };
        d.ns(ns).sysctl(CALL_IPTABLES, value);
    }
}

/// `cni: plugins`, and flannel with real plugins: pods plumbed at bring-up
/// by the runtime, addresses from the plugins' results.
fn plugins_cni(
    d: &mut Draft,
    r: &Resolved,
    nodes: &[cloud::NodeCtx],
    adds: &agent::plugins::CniAdds,
) -> Result<(ipam::Placement, agent::CniOutput), PlanError> {
    let topo = &r.topo;
    let flannel = match topo.cluster.cni {
        Cni::Flannel => Some(false),
        Cni::FlannelVxlan => Some(true),
        _ => None,
    };
    let (placement, out, rt) = match flannel {
        Some(vxlan) => {
            let pod_cidr = topo
                .cluster
                .pod_cidr
                .ok_or_else(|| PlanError::MissingPodCidr {
                    cni: topo.cluster.cni.as_str().into(),
                })?;
            let prefix = topo
                .cluster
                .node_cidr_prefix
                .unwrap_or(ipam::DEFAULT_NODE_CIDR_PREFIX);
            let slices = ipam::node_slices(pod_cidr, prefix, &topo.nodes)?;
            let ctx = agent::CniCtx {
                pod_cidr,
                slices: &slices,
                nodes,
                vpc_cidrs: Vec::new(),
            };
            agent::plugins::program(d, r, nodes, adds, Some((&ctx, vxlan)))
        }
        None => agent::plugins::program(d, r, nodes, adds, None),
    };
    d.plan.pending = placement.pending.clone();
    d.plan.cni_runtime = Some(rt);
    Ok((placement, out))
}

/// Flannel, flannel-vxlan and terway-vpc: pod addresses from the node's
/// slice of `cluster.pod_cidr`.
fn pod_cidr_cni(
    d: &mut Draft,
    r: &Resolved,
    nodes: &[cloud::NodeCtx],
    mode: &dyn agent::CniMode,
) -> Result<(ipam::Placement, agent::CniOutput), PlanError> {
    let topo = &r.topo;
    let cni = topo.cluster.cni;
    let pod_cidr = topo
        .cluster
        .pod_cidr
        .ok_or_else(|| PlanError::MissingPodCidr {
            cni: cni.as_str().into(),
        })?;
    let prefix = topo
        .cluster
        .node_cidr_prefix
        .unwrap_or(ipam::DEFAULT_NODE_CIDR_PREFIX);
    if topo.cluster.node_cidr_prefix.is_none() {
        d.plan.notes.push(format!(
            "cluster.node_cidr_prefix not set: each node gets a /{prefix} of {pod_cidr}"
        ));
    }
    let slices = ipam::node_slices(pod_cidr, prefix, &topo.nodes)?;
    let placement = ipam::assign(&r.pods, &topo.nodes, &slices)?;
    for p in &placement.placed {
        if let Some(ip) = p.ip.filter(|ip| !slices[p.node].contains(ip)) {
            d.plan.notes.push(format!(
                "{}: status.podIP {ip} is outside node {}'s pod CIDR slice {}",
                p.key(),
                topo.nodes[p.node].name,
                slices[p.node]
            ));
        }
    }
    d.plan.pending = placement.pending.clone();
    let vpc_cidrs = match topo.vpc.cidr {
        Some(c) => vec![c],
        None => topo.vpc.vswitches.iter().map(|v| v.cidr).collect(),
    };
    let ctx = agent::CniCtx {
        pod_cidr,
        slices: &slices,
        nodes: &nodes,
        vpc_cidrs,
    };
    let wired = mode.program(
        d,
        agent::ModeCtx::PodCidr {
            ctx: &ctx,
            placement: &placement,
        },
    )?;
    Ok((placement, wired))
}

fn add_servers(
    d: &mut Draft,
    r: &Resolved,
    placement: &ipam::Placement,
    wired: &agent::CniOutput,
    nodes: &[cloud::NodeCtx],
) -> Result<(), PlanError> {
    let wired_ns: HashMap<&PointId, usize> = wired.pods.iter().map(|w| (&w.key, w.ns)).collect();
    for p in &placement.placed {
        let ns = match p.ip {
            Some(_) => match wired_ns.get(&p.key()) {
                Some(ns) => *ns,
                None => continue,
            },
            None => nodes[p.node].ns,
        };
        for c in &r.pods[p.pod].spec.containers {
            for port in &c.ports {
                // A pod answers only on the protocols it declares
                // (containerPort.protocol, default TCP).
                let udp = port.protocol.as_deref() == Some("UDP");
                add_server(d, ns, &p.key(), port.container_port, !udp, udp)?;
            }
        }
    }
    for (n, ctx) in r.topo.nodes.iter().zip(nodes) {
        for port in &n.ports {
            add_server(d, ctx.ns, &PointId::node(&n.name), *port, true, true)?;
        }
        if r.topo.cluster.node_local_dns.is_some() {
            add_server(
                d,
                ctx.ns,
                &PointId::node(&n.name),
                NODE_LOCAL_DNS_PORT,
                true,
                true,
            )?;
        }
    }
    for x in &r.topo.externals {
        let key = PointId::external(&x.name);
        let Some(ns) = d.plan.ns_index(&key) else {
            continue;
        };
        for port in &x.ports {
            add_server(d, ns, &key, *port, true, true)?;
        }
    }
    Ok(())
}

/// The port node-local-dns answers on.
pub const NODE_LOCAL_DNS_PORT: u16 = 53;
/// The interface node-local-dns binds its address on.
pub const NODE_LOCAL_DNS_LINK: &str = "nodelocaldns";

/// node-local-dns: its link-local address on a dummy interface of the node
/// (the echo server on port 53, bound to every address, answers for it).
fn node_local_dns(d: &mut Draft, ns: NsIdx, ip: Ipv4Addr) {
    d.link(ns, NODE_LOCAL_DNS_LINK, LinkKind::Dummy);
    d.addr(ns, NODE_LOCAL_DNS_LINK, cloud::host_net(ip), Scope::Global);
}

/// One echo server per port and namespace, on the protocols asked for
/// (a pod's declared containerPort protocols; nodes' and externals'
/// `ports` answer both); one identity per port and namespace.
fn add_server(
    d: &mut Draft,
    ns: NsIdx,
    identity: &PointId,
    port: u16,
    tcp: bool,
    udp: bool,
) -> Result<(), PlanError> {
    let identity = identity.to_string();
    let key = d.key(ns).to_string();
    let servers = &mut d.ns(ns).servers;
    if let Some(s) = servers.iter_mut().find(|s| s.port == port) {
        if s.identity == identity {
            s.tcp |= tcp;
            s.udp |= udp;
            return Ok(());
        }
        return Err(PlanError::PortClash {
            ns: key,
            port,
            first: s.identity.clone(),
            second: identity,
        });
    }
    servers.push(ServerPlan {
        identity,
        port,
        tcp,
        udp,
        bind: None,
        http: None,
    });
    Ok(())
}

/// Services, kube-proxy, the cloud controller and the SLB mock.
fn program_services(
    d: &mut Draft,
    r: &Resolved,
    placement: &ipam::Placement,
    nodes: &[cloud::NodeCtx],
    vpc: NsIdx,
) -> Result<(), PlanError> {
    let topo = &r.topo;
    let version = proxy::version::ProxyVersion::parse(&topo.cluster.kubernetes)
        .map_err(PlanError::BadVersion)?;
    let service_cidr = match topo.cluster.service_cidr {
        Some(c) => c,
        None => {
            d.plan.notes.push(format!(
                "cluster.service_cidr not set: cluster IPs come from {}",
                proxy::services::DEFAULT_SERVICE_CIDR
            ));
            proxy::services::DEFAULT_SERVICE_CIDR
                .parse()
                .map_err(|_| PlanError::BadVersion("default service CIDR".into()))?
        }
    };
    let mut notes = Vec::new();
    d.plan.services = proxy::services::resolve(
        &r.services,
        &r.pods,
        &r.endpoint_slices,
        placement,
        nodes,
        service_cidr,
        &topo.load_balancers,
        &mut notes,
    )?;
    d.plan.notes.extend(notes);
    proxy::driver(topo.cluster.proxy)
        .check_version(version)
        .map_err(|e| PlanError::BadVersion(format!("cluster.proxy: {e}")))?;
    let cluster_cidr = topo
        .cluster
        .pod_cidr
        .filter(|_| topo.cluster.cni.uses_pod_cidr());
    proxy::program(d, version, nodes, cluster_cidr);
    let slbs = ccm::plan_slbs(
        topo,
        &r.services,
        &d.plan.services,
        nodes,
        &d.plan.endpoints,
    )?;
    slb::program(d, topo, vpc, &slbs);
    if topo.externals.iter().any(|x| x.internet) {
        let ips: Vec<Ipv4Addr> = slbs.iter().map(|s| s.ip).collect();
        proxy::append_nft(d, vpc, &cloud::internet_nft(&ips));
    }
    d.plan.slbs = slbs;
    Ok(())
}
