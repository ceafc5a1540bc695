//! `cnlab plan` output: the plan as a network engineer reads it, in
//! `ip`/`bridge`/`nft` vocabulary, one block per namespace.

use std::fmt::Write;

use super::names::mac_str;
use super::types::*;

pub fn render(p: &LabPlan) -> String {
    let mut o = String::new();
    let b = p.backends;
    let _ = writeln!(
        o,
        "# lab {}: cni {}, proxy {}, backends vlan={} ipvlan={} dummy={} ipvs={} netem={}",
        p.name,
        p.cni.as_str(),
        p.proxy.as_str(),
        if b.vlan_devices { "8021q" } else { "bpf" },
        if b.ipvlan { "ipvlan" } else { "macvlan" },
        if b.dummy { "dummy" } else { "bridge" },
        if b.ipvs { "ipvs" } else { "nft" },
        if b.netem { "qdisc" } else { "stand-in" },
    );
    if p.proxy == crate::topology::model::ProxyMode::Ipvs {
        let _ = writeln!(o, "# {}", ipvs_backend_label(b.ipvs));
    }
    let veths = p.veths_by_ns();
    for (i, ns) in p.namespaces.iter().enumerate() {
        render_ns(&mut o, p, i, ns, &veths[i]);
    }
    section(
        &mut o,
        "VPC route entries",
        p.route_entries
            .iter()
            .map(|r| format!("{} -> {} ({})", r.dest, r.next_hop, r.eni)),
    );
    section(
        &mut o,
        "ENIs",
        p.enis.iter().map(|e| {
            let ips: Vec<String> = e.ips.iter().map(|i| i.to_string()).collect();
            let mut line = format!(
                "{} {} mac {} {} ips {} sgs [{}] instance {}",
                e.id,
                role_name(e.role),
                mac_str(&e.mac),
                e.vswitch,
                ips.join(","),
                e.security_groups.join(","),
                e.instance
            );
            if let (Some(v), Some(t)) = (e.vlan, &e.trunk) {
                line += &format!(" trunk {t}@vlan={v}");
            }
            if let Some(pod) = &e.pod {
                line += &format!(" pod {pod}");
            }
            line
        }),
    );
    render_services(&mut o, p);
    section(
        &mut o,
        "endpoints",
        p.endpoints.iter().map(|e| {
            format!(
                "{} {} in {}{}",
                e.id,
                e.ip,
                ns_key(p, e.ns),
                e.node
                    .as_ref()
                    .map(|n| format!(" (node {n})"))
                    .unwrap_or_default()
            )
        }),
    );
    section(
        &mut o,
        "observation points",
        p.points.iter().map(|pt| {
            let aliases = if pt.aliases.is_empty() {
                String::new()
            } else {
                format!(
                    " (also {})",
                    pt.aliases
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!(
                "{}{} = {} {}",
                pt.id,
                aliases,
                ns_key(p, pt.ns),
                pt.ifname.as_deref().unwrap_or("any interface")
            )
        }),
    );
    section(
        &mut o,
        "pending pods",
        p.pending.iter().map(|pp| {
            format!(
                "{}{}: {}",
                pp.pod,
                pp.node
                    .as_ref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default(),
                pp.reason
            )
        }),
    );
    section(&mut o, "notes", p.notes.iter().cloned());
    o
}

/// What runs kube-proxy's IPVS mode, as `plan`, `rules` and `doctor` say it.
pub fn ipvs_backend_label(native: bool) -> &'static str {
    if native {
        "kube-proxy IPVS: native kernel IPVS (IP_VS, programmed over generic netlink)"
    } else {
        "kube-proxy IPVS: nftables EMULATION of IPVS (this kernel has no IP_VS, or --backend portable)"
    }
}

/// The native IPVS table as `ipvsadm-save -n` prints it.
pub fn ipvsadm_save(services: &[IpvsService]) -> Vec<String> {
    let mut v = Vec::new();
    for s in services {
        let flag = match s.proto {
            IpvsProto::Tcp => "-t",
            IpvsProto::Udp => "-u",
            IpvsProto::Sctp => "--sctp-service",
        };
        let persist = s
            .persistence_timeout
            .map(|t| format!(" -p {t}"))
            .unwrap_or_default();
        v.push(format!(
            "-A {flag} {}:{} -s {}{persist}",
            s.addr, s.port, s.scheduler
        ));
        for d in &s.dests {
            let fwd = match d.forward {
                IpvsForward::Masq => "-m",
            };
            v.push(format!(
                "-a {flag} {}:{} -r {}:{} {fwd} -w {}",
                s.addr, s.port, d.addr, d.port, d.weight
            ));
        }
    }
    v
}

fn role_name(r: EniRole) -> &'static str {
    match r {
        EniRole::Primary => "primary",
        EniRole::Secondary => "secondary",
        EniRole::Trunk => "trunk",
        EniRole::Member => "member",
        EniRole::Pod => "pod",
        EniRole::External => "external",
    }
}

fn ns_key(p: &LabPlan, i: NsIdx) -> &str {
    p.namespaces.get(i).map(|n| n.key.as_str()).unwrap_or("?")
}

fn section(o: &mut String, title: &str, lines: impl Iterator<Item = String>) {
    let lines: Vec<String> = lines.collect();
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n== {title}");
    for l in lines {
        let _ = writeln!(o, "  {l}");
    }
}

fn sub(o: &mut String, title: &str, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(o, "  {title}:");
    for l in lines {
        let _ = writeln!(o, "    {l}");
    }
}

fn render_ns(o: &mut String, p: &LabPlan, i: NsIdx, ns: &NsPlan, veths: &[&VethPlan]) {
    let _ = writeln!(o, "\n== {} (cnl-<lab>-{})", ns.key, ns.short);
    sub(o, "links", ns.links.iter().map(link_line).collect());
    let veths = veths
        .iter()
        .filter_map(|v| {
            let (me, other) = if v.a.ns == i {
                (&v.a, &v.b)
            } else if v.b.ns == i {
                (&v.b, &v.a)
            } else {
                return None;
            };
            let mac = me
                .mac
                .map(|m| format!(" mac {}", mac_str(&m)))
                .unwrap_or_default();
            Some(format!(
                "veth {} <-> {}@{}{mac}",
                me.name,
                other.name,
                ns_key(p, other.ns)
            ))
        })
        .collect();
    sub(o, "veths", veths);
    sub(
        o,
        "link settings",
        ns.link_settings
            .iter()
            .map(|s| {
                let mut l = format!("{} {}", s.name, if s.up { "up" } else { "down" });
                if let Some(m) = &s.master {
                    l += &format!(" master {m}");
                }
                if let Some(m) = s.mtu {
                    l += &format!(" mtu {m}");
                }
                if s.hairpin {
                    l += " hairpin";
                }
                l
            })
            .collect(),
    );
    sub(
        o,
        "addresses",
        ns.addrs
            .iter()
            .map(|a| {
                let scope = match a.scope {
                    Scope::Global => "",
                    Scope::Link => " scope link",
                    Scope::Host => " scope host",
                };
                format!(
                    "{} dev {}{scope}{}",
                    a.addr,
                    a.dev,
                    if a.noprefixroute {
                        " noprefixroute"
                    } else {
                        ""
                    }
                )
            })
            .collect(),
    );
    sub(o, "routes", ns.routes.iter().map(route_line).collect());
    sub(o, "rules", ns.rules.iter().map(rule_line).collect());
    sub(
        o,
        "neighbours",
        ns.neighs
            .iter()
            .map(|n| {
                format!(
                    "{} dev {} lladdr {} PERMANENT",
                    n.ip,
                    n.dev,
                    mac_str(&n.mac)
                )
            })
            .collect(),
    );
    sub(
        o,
        "fdb",
        ns.fdbs
            .iter()
            .map(|f| {
                format!(
                    "{} dev {} dst {} self permanent",
                    mac_str(&f.mac),
                    f.dev,
                    f.dst
                )
            })
            .collect(),
    );
    sub(
        o,
        "sysctls",
        ns.sysctls
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect(),
    );
    if let Some(nft) = &ns.nft {
        sub(o, "nft", nft.lines().map(String::from).collect());
    }
    if let Some(rules) = &ns.iptables {
        sub(
            o,
            "iptables-restore (iptables-nft)",
            rules.lines().map(String::from).collect(),
        );
    }
    sub(o, "ipvs (ipvsadm-save -n)", ipvsadm_save(&ns.ipvs));
    sub(
        o,
        "echo servers",
        ns.servers
            .iter()
            .map(|s| {
                let proto = match (s.tcp, s.udp) {
                    (true, true) => "tcp+udp",
                    (true, false) => "tcp",
                    (false, true) => "udp",
                    (false, false) => "none",
                };
                let http = s
                    .http
                    .as_ref()
                    .map(|h| match h {
                        HttpServe::Fixed(h) => format!(" (HTTP {} {})", h.status, h.reason),
                        HttpServe::ProxierHealth(_) => {
                            " (HTTP kube-proxy /healthz, timestamps of each request)".to_string()
                        }
                    })
                    .unwrap_or_default();
                let on = s.bind.map(|a| format!(" on {a}")).unwrap_or_default();
                format!("{proto} {}{on} answers as {}{http}", s.port, s.identity)
            })
            .collect(),
    );
}

fn link_line(l: &LinkPlan) -> String {
    let kind = match &l.kind {
        LinkKind::Bridge => "bridge".to_string(),
        LinkKind::Dummy => "dummy".to_string(),
        LinkKind::Macvlan { parent, mode } => format!(
            "macvlan link {parent} mode {}",
            format!("{mode:?}").to_lowercase()
        ),
        LinkKind::Ipvlan { parent } => format!("ipvlan link {parent} mode l2"),
        LinkKind::Vxlan {
            vni,
            local,
            port,
            dev,
            learning,
        } => {
            format!(
                "vxlan id {vni} local {local} dstport {port}{}{}",
                dev.as_ref()
                    .map(|d| format!(" dev {d}"))
                    .unwrap_or_default(),
                if *learning { "" } else { " nolearning" }
            )
        }
        LinkKind::Vlan { parent, id } => format!("vlan link {parent} id {id}"),
    };
    let mac = l
        .mac
        .map(|m| format!(" address {}", mac_str(&m)))
        .unwrap_or_default();
    format!("{} type {kind}{mac}", l.name)
}

pub fn route_line(r: &RoutePlan) -> String {
    let mut l = match r.kind {
        RouteType::Unicast => String::new(),
        RouteType::Local => "local ".into(),
        RouteType::Blackhole => "blackhole ".into(),
        RouteType::Unreachable => "unreachable ".into(),
    };
    l += &if r.dst.prefix_len() == 0 {
        "default".to_string()
    } else {
        r.dst.to_string()
    };
    if let Some(v) = r.via {
        l += &format!(" via {v}");
    }
    if let Some(d) = &r.dev {
        l += &format!(" dev {d}");
    }
    if r.table != TABLE_MAIN {
        l += &format!(
            " table {}",
            if r.table == TABLE_LOCAL {
                "local".into()
            } else {
                r.table.to_string()
            }
        );
    }
    match r.scope {
        Scope::Global => {}
        Scope::Link => l += " scope link",
        Scope::Host => l += " scope host",
    }
    if let Some(s) = r.src {
        l += &format!(" src {s}");
    }
    if let Some(m) = r.metric {
        l += &format!(" metric {m}");
    }
    if r.onlink {
        l += " onlink";
    }
    l
}

pub fn rule_line(r: &RulePlan) -> String {
    let mut l = format!(
        "{}: from {}",
        r.priority,
        r.from
            .map(|f| f.to_string())
            .unwrap_or_else(|| "all".into())
    );
    if let Some(t) = r.to {
        l += &format!(" to {t}");
    }
    if let Some(i) = &r.iif {
        l += &format!(" iif {i}");
    }
    if let Some(i) = &r.oif {
        l += &format!(" oif {i}");
    }
    if let Some((m, mask)) = r.fwmark {
        l += &format!(" fwmark {m:#x}/{mask:#x}");
    }
    l += &format!(
        " lookup {}",
        if r.table == TABLE_MAIN {
            "main".into()
        } else {
            r.table.to_string()
        }
    );
    l
}

// -- services --
/// Services, kube-proxy's virtual servers per node, and the CLBs.
fn render_services(o: &mut String, p: &LabPlan) {
    section(
        o,
        "services",
        p.services.iter().map(|s| {
            let eps: Vec<String> = s
                .endpoints
                .iter()
                .map(|e| format!("{} {}", e.pod, e.ip))
                .collect();
            format!(
                "{} {:?} cluster-ip {} lb {} ext {:?}/int {:?} endpoints [{}]",
                s.key(),
                s.type_,
                s.cluster_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "None".into()),
                s.lb_ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                s.external_policy,
                s.internal_policy,
                eps.join(", ")
            )
        }),
    );
    for n in &p.proxy_nodes {
        section(
            o,
            &format!(
                "virtual servers on node/{}{}",
                n.node,
                if p.backends.ipvs {
                    ""
                } else {
                    " (IPVS emulation: nftables table cnlab_kube_proxy)"
                }
            ),
            n.virtual_servers.iter().map(|v| {
                let rs: Vec<String> = v
                    .real_servers
                    .iter()
                    .map(|r| format!("{}:{}", r.ip, r.port))
                    .collect();
                format!(
                    "{}:{} {:?} {} masquerade {:?} -> [{}]",
                    v.addr,
                    v.port,
                    v.kind,
                    v.service,
                    v.masquerade,
                    rs.join(", ")
                )
            }),
        );
    }
    section(
        o,
        "load balancers",
        p.slbs.iter().flat_map(|s| {
            s.listeners.iter().map(move |l| {
                let b: Vec<String> = l
                    .backends
                    .iter()
                    .map(|b| format!("{}:{} ({})", b.ip, b.port, b.who))
                    .collect();
                format!(
                    "{} {}:{} {:?} -> [{}]",
                    s.id,
                    s.ip,
                    l.port,
                    l.proto,
                    b.join(", ")
                )
            })
        }),
    );
}
