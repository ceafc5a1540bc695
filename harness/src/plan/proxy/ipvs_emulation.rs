//! The IPVS **emulation**: kube-proxy's IPVS virtual servers as one
//! nftables table (`ip cnlab_kube_proxy`), for kernels without IP_VS. It
//! reproduces the observable semantics of IPVS mode only; the iptables and
//! nftables modes have their own modules.
//!
//! - DNAT VIP:port → one real server per connection (`numgen random`), in
//!   prerouting (forwarded traffic) and output (the node's own traffic);
//! - a virtual server without real servers answers ICMP port-unreachable;
//! - masquerade where kube-proxy marks 0x4000;
//! - service-NATed flows carry ct mark 0x1000, copied to the packet mark so
//!   policy rule 1024 (`fwmark 0x1000 lookup main`) routes them by the main
//!   table. It stands for how real IPVS transmits: from LOCAL_IN, as a
//!   locally-output packet with iif lo, so Terway's `from <podIP> iif <veth>`
//!   rules (2048) do not match it; the emulation only forwards (iif = the
//!   veth), which those rules would match.

use super::{MASQ_MARK, SERVICE_ROUTE_MARK};
use crate::plan::types::*;
use crate::topology::model::Proto;

pub const TABLE: &str = "cnlab_kube_proxy";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Prerouting: traffic the node forwards (pods, other hosts).
    Forwarded,
    /// Output: traffic the node itself (or a hostNetwork pod) sends.
    Node,
}

fn l4(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "udp",
        _ => "tcp",
    }
}

fn comment(vs: &VirtualServer) -> String {
    let kind = match vs.kind {
        VipKind::ClusterIp => "cluster-ip",
        VipKind::ExternalIp => "external-ip",
        VipKind::LoadBalancer => "load-balancer",
        VipKind::NodePort => "node-port",
    };
    format!("{} {kind}", vs.service)
}

/// kube-proxy's KUBE-LOOP-BACK ipset (`ep ip, proto:port, ep ip` for every
/// endpoint on this node) and its KUBE-POSTROUTING rule `-m set
/// --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE`: a pod reaching
/// itself through a virtual server is masqueraded, else its own reply
/// would never leave it (hairpin).
pub(super) fn loop_back(vss: &[VirtualServer], local: &[std::net::Ipv4Addr]) -> String {
    let mut seen: Vec<(std::net::Ipv4Addr, &'static str, u16)> = Vec::new();
    for vs in vss {
        for rs in vs.real_servers.iter().filter(|r| local.contains(&r.ip)) {
            let e = (rs.ip, l4(vs.proto), rs.port);
            if !seen.contains(&e) {
                seen.push(e);
            }
        }
    }
    seen.iter()
        .map(|(ip, p, port)| {
            format!(
                "    ip daddr {ip} {p} dport {port} ip saddr {ip} counter masquerade comment \"KUBE-LOOP-BACK\"\n"
            )
        })
        .collect()
}

fn dnat_rule(vs: &VirtualServer, origin: Origin) -> String {
    let masq = match (vs.masquerade, origin) {
        (Masquerade::Always, _) | (Masquerade::NodeOrigin, Origin::Node) => {
            format!("meta mark set meta mark | {MASQ_MARK:#x} ")
        }
        _ => String::new(),
    };
    let head = format!(
        "    ip daddr {} {} dport {}",
        vs.addr,
        l4(vs.proto),
        vs.port
    );
    let tail = format!("{masq}ct mark set ct mark | {SERVICE_ROUTE_MARK:#x} counter");
    if vs.persistence.is_some() {
        // Persistent: a client with a template goes to its real server;
        // a new one is scheduled and its template recorded (`persist_chain`).
        let mut out = String::new();
        for (j, rs) in vs.real_servers.iter().enumerate() {
            out += &format!(
                "{head} ip saddr @{} {tail} dnat ip to {}:{} comment \"{} persistent\"\n",
                persist_name(vs, j),
                rs.ip,
                rs.port,
                comment(vs)
            );
        }
        let items: Vec<String> = (0..vs.real_servers.len())
            .map(|j| format!("{j} : goto {}", persist_name(vs, j)))
            .collect();
        out += &format!(
            "{head} {tail} numgen random mod {} vmap {{ {} }} comment \"{}\"\n",
            items.len(),
            items.join(", "),
            comment(vs)
        );
        return out;
    }
    let to = match vs.real_servers.as_slice() {
        [one] => format!("dnat ip to {}:{}", one.ip, one.port),
        many => {
            let items: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, r)| format!("{i} : {} . {}", r.ip, r.port))
                .collect();
            format!(
                "dnat ip to numgen random mod {} map {{ {} }}",
                many.len(),
                items.join(", ")
            )
        }
    };
    format!(
        "    ip daddr {} {} dport {} {masq}ct mark set ct mark | {SERVICE_ROUTE_MARK:#x} counter {to} comment \"{}\"\n",
        vs.addr,
        l4(vs.proto),
        vs.port,
        comment(vs)
    )
}

/// The set (client addresses holding a persistence template to real
/// server `j`) and the chain that schedules a new client to `j`.
fn persist_name(vs: &VirtualServer, j: usize) -> String {
    format!(
        "persist_{}_{}_{}_{j}",
        vs.addr.to_string().replace('.', "_"),
        l4(vs.proto),
        vs.port
    )
}

/// IPVS persistence (`-p N`, kube-proxy's ClientIP affinity) as nftables:
/// per real server a timeout set of client addresses, refreshed on every
/// new connection (real IPVS keeps the template while connections last,
/// then N seconds).
fn persist_chains(vss: &[VirtualServer]) -> String {
    let mut s = String::new();
    let mut seen = Vec::new();
    for vs in vss.iter().filter(|v| !v.real_servers.is_empty()) {
        let Some(secs) = vs.persistence else { continue };
        for (j, rs) in vs.real_servers.iter().enumerate() {
            let n = persist_name(vs, j);
            if seen.contains(&n) {
                continue;
            }
            seen.push(n.clone());
            s += &format!(
                "  set {n} {{\n    type ipv4_addr\n    flags dynamic,timeout\n    timeout {secs}s\n  }}\n  chain {n} {{\n    meta l4proto {} update @{n} {{ ip saddr }} dnat ip to {}:{}\n  }}\n",
                l4(vs.proto),
                rs.ip,
                rs.port
            );
        }
    }
    s
}

/// The whole table for one node's virtual servers; `local` are the
/// addresses of the endpoints running on this node (KUBE-LOOP-BACK).
pub fn render(vss: &[VirtualServer], local: &[std::net::Ipv4Addr]) -> String {
    let mut s = format!("table ip {TABLE} {{\n");
    s += &persist_chains(vss);
    for (chain, origin) in [
        ("services_fwd", Origin::Forwarded),
        ("services_node", Origin::Node),
    ] {
        s += &format!("  chain {chain} {{\n");
        for vs in vss.iter().filter(|v| !v.real_servers.is_empty()) {
            s += &dnat_rule(vs, origin);
        }
        s += "  }\n";
    }
    s += "  chain no_endpoints {\n";
    for vs in vss.iter().filter(|v| v.real_servers.is_empty()) {
        s += &format!(
            "    ip daddr {} {} dport {} counter reject with icmp type port-unreachable comment \"{} has no real servers\"\n",
            vs.addr,
            l4(vs.proto),
            vs.port,
            comment(vs)
        );
    }
    s += "  }\n";
    s += "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services_fwd\n  }\n";
    s += "  chain output {\n    type nat hook output priority -100; policy accept;\n    jump services_node\n  }\n";
    s += &format!(
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat - 5; policy accept;\n    \
         meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} counter masquerade comment \"kube-proxy: masquerade\"\n{}  }}\n",
        loop_back(vss, local)
    );
    s += &format!(
        "  chain reroute {{\n    type filter hook prerouting priority dstnat + 10; policy accept;\n    \
         ct mark & {SERVICE_ROUTE_MARK:#x} == {SERVICE_ROUTE_MARK:#x} meta mark set meta mark | {SERVICE_ROUTE_MARK:#x} comment \"IPVS transmits locally (iif lo): iif-bound pod rules must not match\"\n  }}\n"
    );
    for (chain, hook) in [
        ("filter_input", "input"),
        ("filter_forward", "forward"),
        ("filter_output", "output"),
    ] {
        s += &format!(
            "  chain {chain} {{\n    type filter hook {hook} priority filter; policy accept;\n    jump no_endpoints\n  }}\n"
        );
    }
    s += "}\n";
    s
}
