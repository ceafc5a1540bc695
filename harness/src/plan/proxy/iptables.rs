//! kube-proxy in iptables mode (pkg/proxy/iptables/proxier.go,
//! `syncProxyRules`), rendered as the `iptables-restore` input kube-proxy
//! writes and applied through iptables-nft, so `iptables-save` in a node
//! shows the real chains:
//!
//! - nat: `KUBE-SERVICES` (ClusterIP, external IP, LB IP → `KUBE-SVC-*` /
//!   `KUBE-EXT-*`, and last `addrtype LOCAL → KUBE-NODEPORTS`), `KUBE-EXT-*`
//!   (masquerade for Cluster; for Local the pod/LOCAL short-circuit to the
//!   cluster chain), `KUBE-SVC-*` / `KUBE-SVL-*` (random endpoint by
//!   `statistic`; with ClientIP affinity first `-m recent --rcheck` per
//!   endpoint), `KUBE-SEP-*` (hairpin `-s ep → KUBE-MARK-MASQ`, affinity
//!   `-m recent --set`, DNAT),
//!   `KUBE-MARK-MASQ`, `KUBE-POSTROUTING` (masquerade by mark 0x4000);
//! - filter: `KUBE-SERVICES` (REJECT a ClusterIP without endpoints, DROP
//!   one with iTP Local and none here), `KUBE-EXTERNAL-SERVICES` (REJECT /
//!   DROP external destinations), `KUBE-FORWARD`, `KUBE-NODEPORTS`,
//!   `KUBE-PROXY-FIREWALL`, `KUBE-FIREWALL` (localnet guard).
//!
//! Nothing is bound to any device: a VIP is not a local address, so a port
//! without a rule is routed like any other address. No re-route rule: the
//! DNAT happens before routing, policy routing applies as usual.

use std::fmt::Write;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::categorize::{self, PortView};
use super::version::ProxyVersion;
use super::{NodeInput, ProxyDriver, MASQ_MARK};
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::ProxyMode;

pub struct Iptables;

impl ProxyDriver for Iptables {
    fn mode(&self) -> ProxyMode {
        ProxyMode::Iptables
    }

    fn program_node(&self, d: &mut Draft, n: &NodeInput) -> ProxyNodePlan {
        let ports = categorize::ports(n.version, n.services, n.node);
        let localhost = n.version.iptables_localhost_nodeports();
        if localhost {
            // kube-proxy sets it so NodePorts answer on 127.0.0.1 (issues.k8s.io/90259).
            d.sysctl(n.node.ns, "net/ipv4/conf/all/route_localnet", "1");
        }
        let input = Input {
            ports: &ports,
            cluster_cidr: n.cluster_cidr,
            localhost_nodeports: localhost,
            node_ip: n.node.ip,
            version: n.version,
        };
        d.ns(n.node.ns).iptables = Some(if n.version.iptables_ext_chains() {
            render(&input)
        } else {
            super::iptables_xlb::render(&input)
        });
        ProxyNodePlan {
            node: n.node.name.clone(),
            bound: Vec::new(),
            virtual_servers: Vec::new(),
        }
    }
}

/// `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-` + 16 characters of
/// base32(sha256(port name + protocol)) (upstream `portProtoHash`).
pub fn chain(prefix: &str, name: &str, proto: &str) -> String {
    format!(
        "{prefix}{}",
        &base32::encode(&Sha256::digest(format!("{name}{proto}")))[..16]
    )
}

/// `KUBE-SEP-` + 16 characters of base32(sha256(port name + protocol + "ip:port")).
pub fn endpoint_chain(name: &str, proto: &str, ep: &RealServer) -> String {
    format!(
        "KUBE-SEP-{}",
        &base32::encode(&Sha256::digest(format!(
            "{name}{proto}{}:{}",
            ep.ip, ep.port
        )))[..16]
    )
}

pub(super) const MARK_MASQ: &str = "KUBE-MARK-MASQ";
/// The kubelet's mark-for-drop chain (mark 0x8000), used by kube-proxy before 1.25.
pub(super) const MARK_DROP: &str = "KUBE-MARK-DROP";

/// What one node's restore input is rendered from.
pub struct Input<'a> {
    pub ports: &'a [PortView],
    pub cluster_cidr: Option<Ipv4Net>,
    pub localhost_nodeports: bool,
    pub node_ip: std::net::Ipv4Addr,
    pub version: ProxyVersion,
}

/// One table's chain lines and rule lines, in restore order.
#[derive(Default)]
pub(super) struct Table {
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Table {
    pub(super) fn chain(&mut self, name: &str) {
        if !self.chains.iter().any(|c| c == name) {
            self.chains.push(name.to_string());
        }
    }
    pub(super) fn rule(&mut self, chain: &str, args: impl AsRef<str>) {
        self.rules.push(format!("-A {chain} {}", args.as_ref()));
    }
    pub(super) fn write(&self, o: &mut String, name: &str) {
        let _ = writeln!(o, "*{name}");
        for c in &self.chains {
            let _ = writeln!(o, ":{c} - [0:0]");
        }
        for r in &self.rules {
            let _ = writeln!(o, "{r}");
        }
        let _ = writeln!(o, "COMMIT");
    }
}

pub(super) fn dest(p: &PortView, ip: impl std::fmt::Display, port: u16) -> String {
    format!("-m {0} -p {0} -d {ip}/32 --dport {port}", p.proto)
}

/// The chains and jumps every version has, the kubelet's included;
/// `proxy_firewall`: kube-proxy's own `KUBE-PROXY-FIREWALL` (≥ 1.25).
pub(super) fn tables(n: &Input, proxy_firewall: bool) -> (Table, Table) {
    let mut filter = Table::default();
    let mut nat = Table::default();
    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
    ] {
        filter.chain(c);
    }
    if proxy_firewall {
        filter.chain("KUBE-PROXY-FIREWALL");
    }
    filter.chain("KUBE-FIREWALL");
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        MARK_MASQ,
    ] {
        nat.chain(c);
    }
    if n.version.kubelet_mark_drop() {
        nat.chain(MARK_DROP);
    }
    // Jumps from the built-in chains, in the order kube-proxy's prepends
    // leave them (the kubelet's KUBE-FIREWALL last prepended, so first).
    let new = "-m conntrack --ctstate NEW";
    let fw = |filter: &mut Table, hook: &str| {
        if proxy_firewall {
            filter.rule(hook, format!("{new} -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"));
        }
    };
    filter.rule("INPUT", "-j KUBE-FIREWALL");
    fw(&mut filter, "INPUT");
    filter.rule(
        "INPUT",
        "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
    );
    filter.rule("INPUT", format!("{new} -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"));
    fw(&mut filter, "FORWARD");
    filter.rule(
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    );
    filter.rule(
        "FORWARD",
        format!("{new} -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    );
    filter.rule("FORWARD", format!("{new} -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"));
    filter.rule("OUTPUT", "-j KUBE-FIREWALL");
    fw(&mut filter, "OUTPUT");
    filter.rule(
        "OUTPUT",
        format!("{new} -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    );
    nat.rule(
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    nat.rule(
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    nat.rule(
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    );

    let mark = format!("{MASQ_MARK:#010x}");
    nat.rule(
        "KUBE-POSTROUTING",
        format!("-m mark ! --mark {mark}/{mark} -j RETURN"),
    );
    // Cleared so a packet re-entering the stack is not masqueraded twice.
    nat.rule("KUBE-POSTROUTING", format!("-j MARK --xor-mark {mark}"));
    nat.rule("KUBE-POSTROUTING", "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully");
    nat.rule(MARK_MASQ, format!("-j MARK --or-mark {mark}"));
    if n.version.kubelet_mark_drop() {
        // The kubelet's (pkg/kubelet/kubelet_network_linux.go): what
        // kube-proxy marks before 1.25 is dropped in filter INPUT and
        // OUTPUT only; a marked packet that is forwarded is not.
        nat.rule(MARK_DROP, format!("-j MARK --or-mark {DROP_MARK:#010x}"));
        filter.rule("KUBE-FIREWALL", format!("-m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark {DROP_MARK:#010x}/{DROP_MARK:#010x} -j DROP"));
    }
    if n.localhost_nodeports {
        filter.rule("KUBE-FIREWALL", "-m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP");
    }
    (filter, nat)
}

/// The kubelet's drop mark (`--iptables-drop-bit` 15).
const DROP_MARK: u32 = 0x8000;

/// `KUBE-SERVICES`' last rule and `KUBE-FORWARD`, then both tables.
pub(super) fn finish(mut filter: Table, mut nat: Table, localhost_nodeports: bool) -> String {
    let mark = format!("{MASQ_MARK:#010x}");
    let nodeports = if localhost_nodeports {
        String::new()
    } else {
        "! -d 127.0.0.0/8 ".to_string()
    };
    nat.rule(
        "KUBE-SERVICES",
        format!("-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL {nodeports}-j KUBE-NODEPORTS"),
    );
    filter.rule("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP");
    filter.rule(
        "KUBE-FORWARD",
        format!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"),
    );
    filter.rule("KUBE-FORWARD", "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    let mut o = String::new();
    filter.write(&mut o, "filter");
    nat.write(&mut o, "nat");
    o
}

/// The whole restore input for one node (1.24 on: `KUBE-EXT-*`,
/// `KUBE-SVL-*`; 1.24 itself still drops through `KUBE-MARK-DROP`).
pub fn render(n: &Input) -> String {
    let own_drop = n.version.drops_in_filter();
    let (mut filter, mut nat) = tables(n, own_drop);
    let (ports, cluster_cidr, node_ip) = (n.ports, n.cluster_cidr, n.node_ip);
    // kube-proxy's LocalTrafficDetector (--detect-local-mode ClusterCIDR).
    let if_local = cluster_cidr.map(|c| format!("-s {c}"));
    let if_not_local = cluster_cidr.map(|c| format!("! -s {c}"));

    for p in ports {
        let name = &p.name;
        let svc_chain = chain("KUBE-SVC-", name, p.proto);
        let svl_chain = chain("KUBE-SVL-", name, p.proto);
        let ext_chain = chain("KUBE-EXT-", name, p.proto);
        let internal_chain = if p.internal_local {
            &svl_chain
        } else {
            &svc_chain
        };
        let external_policy_chain = if p.external_local {
            &svl_chain
        } else {
            &svc_chain
        };
        let (int_target, int_comment, ext_target, ext_comment) = if !p.has_endpoints {
            let c = format!("\"{name} has no endpoints\"");
            ("REJECT", c.clone(), "REJECT", c)
        } else {
            let c = format!("\"{name} has no local endpoints\"");
            ("DROP", c.clone(), "DROP", c)
        };
        // 1.24 jumps to the policy chain whenever the Service has
        // endpoints and marks for drop there; 1.25 drops in filter.
        let (has_int, has_ext) = if own_drop {
            (p.has_internal_endpoints(), p.has_external_endpoints())
        } else {
            (p.has_endpoints, p.has_endpoints)
        };
        let cluster_ip = p.cluster_ip.map(|ip| dest(p, ip, p.port));
        if let Some(cip) = &cluster_ip {
            if has_int {
                nat.rule(
                    "KUBE-SERVICES",
                    format!("-m comment --comment \"{name} cluster IP\" {cip} -j {internal_chain}"),
                );
            } else {
                filter.rule(
                    "KUBE-SERVICES",
                    format!("-m comment --comment {int_comment} {cip} -j {int_target}"),
                );
            }
        }
        let fw_chain = chain("KUBE-FW-", name, p.proto);
        for (ips, what, fw) in [
            (&p.external_ips, "external IP", false),
            (&p.lb_ips, "loadbalancer IP", p.uses_firewall()),
        ] {
            for ip in ips {
                let d = dest(p, ip, p.port);
                if p.has_endpoints {
                    let to = if fw { &fw_chain } else { &ext_chain };
                    nat.rule(
                        "KUBE-SERVICES",
                        format!("-m comment --comment \"{name} {what}\" {d} -j {to}"),
                    );
                }
                if fw && own_drop {
                    // Whatever KUBE-FW-* did not DNAT still has the LB IP
                    // as destination here, after nat PREROUTING/OUTPUT.
                    filter.rule(
                        "KUBE-PROXY-FIREWALL",
                        format!("-m comment --comment \"{name} traffic not accepted by {fw_chain}\" {d} -j DROP"),
                    );
                }
                if !has_ext {
                    filter.rule(
                        "KUBE-EXTERNAL-SERVICES",
                        format!("-m comment --comment {ext_comment} {d} -j {ext_target}"),
                    );
                }
            }
        }
        if let Some(np) = p.node_port {
            if p.has_endpoints {
                nat.rule(
                    "KUBE-NODEPORTS",
                    format!(
                        "-m comment --comment {name} -m {0} -p {0} --dport {np} -j {ext_chain}",
                        p.proto
                    ),
                );
            }
            if !has_ext {
                filter.rule(
                    "KUBE-EXTERNAL-SERVICES",
                    format!(
                        "-m comment --comment {ext_comment} -m addrtype --dst-type LOCAL -m {0} -p {0} --dport {np} -j {ext_target}",
                        p.proto
                    ),
                );
            }
        }
        if let Some(hc) = p.health_check_node_port {
            // Whether or not this node has endpoints: the health check
            // itself must get through.
            filter.rule(
                "KUBE-NODEPORTS",
                format!("-m comment --comment \"{name} health check node port\" -m tcp -p tcp --dport {hc} -j ACCEPT"),
            );
        }
        // Internal traffic: masquerade what does not come from a pod (an
        // off-cluster client routed to the service range might bounce off-node).
        if let (true, Some(cip), Some(not_local)) = (has_int, &cluster_ip, &if_not_local) {
            nat.chain(internal_chain);
            nat.rule(
                internal_chain,
                format!(
                    "-m comment --comment \"{name} cluster IP\" {cip} {not_local} -j {MARK_MASQ}"
                ),
            );
        }
        if p.has_endpoints && p.externally_accessible() {
            nat.chain(&ext_chain);
            if !p.external_local {
                nat.rule(
                    &ext_chain,
                    format!("-m comment --comment \"masquerade traffic for {name} external destinations\" -j {MARK_MASQ}"),
                );
            } else {
                if let Some(local) = &if_local {
                    // Pods reaching an external destination are subject to
                    // neither policy: as if out to the LB and back.
                    nat.rule(
                        &ext_chain,
                        format!("-m comment --comment \"pod traffic for {name} external destinations\" {local} -j {svc_chain}"),
                    );
                }
                // The node itself: the LB IP / node IP would be its source.
                nat.rule(
                    &ext_chain,
                    format!("-m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {MARK_MASQ}"),
                );
                nat.rule(
                    &ext_chain,
                    format!("-m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}"),
                );
            }
            if has_ext {
                nat.rule(&ext_chain, format!("-j {external_policy_chain}"));
            }
        }
        if p.uses_firewall() && p.has_endpoints {
            // loadBalancerSourceRanges: only for VIP-like LBs that keep the
            // client address (not for LBs that send to the NodePort).
            nat.chain(&fw_chain);
            let c = format!("-m comment --comment \"{name} loadbalancer IP\"");
            for cidr in &p.source_ranges {
                nat.rule(&fw_chain, format!("{c} -s {cidr} -j {ext_chain}"));
            }
            // The node reaching its own LB IP may use it as source.
            if p.source_ranges.iter().any(|c| c.contains(&node_ip)) {
                for ip in &p.lb_ips {
                    nat.rule(&fw_chain, format!("{c} -s {ip}/32 -j {ext_chain}"));
                }
            }
            if own_drop {
                nat.rule(
                    &fw_chain,
                    format!("-m comment --comment \"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL\""),
                );
            } else {
                nat.rule(&fw_chain, format!("{c} -j {MARK_DROP}"));
            }
        }
        if p.uses_cluster() && !p.cluster.is_empty() {
            service_to_endpoints(&mut nat, p, &svc_chain, &p.cluster);
        }
        if p.uses_local() && !p.local.is_empty() {
            service_to_endpoints(&mut nat, p, &svl_chain, &p.local);
        } else if p.uses_local() && p.has_endpoints && !own_drop {
            nat.chain(&svl_chain);
            nat.rule(
                &svl_chain,
                format!("-m comment --comment \"{name} has no local endpoints\" -j {MARK_DROP}"),
            );
        }
        endpoint_rules(&mut nat, p);
    }
    finish(filter, nat, n.localhost_nodeports)
}

/// One `KUBE-SEP-*` per endpoint this node may DNAT to: hairpin
/// masquerade, affinity `--set`, DNAT (the same in every version modelled).
pub(super) fn endpoint_rules(nat: &mut Table, p: &PortView) {
    for ep in p.reachable() {
        let sep = endpoint_chain(&p.name, p.proto, &ep);
        nat.chain(&sep);
        // Hairpin: an endpoint reaching itself through the service.
        nat.rule(
            &sep,
            format!(
                "-m comment --comment {} -s {}/32 -j {MARK_MASQ}",
                p.name, ep.ip
            ),
        );
        // ClientIP affinity: remember the client in this endpoint's
        // `recent` list (xt_recent, per network namespace).
        let remember = if p.affinity.is_some() {
            format!("-m recent --name {sep} --set ")
        } else {
            String::new()
        };
        nat.rule(
            &sep,
            format!(
                "-m comment --comment {3} {remember}-m {0} -p {0} -j DNAT --to-destination {1}:{2}",
                p.proto, ep.ip, ep.port, p.name
            ),
        );
    }
}

/// `KUBE-SVC-*` / `KUBE-SVL-*`: one endpoint per connection, each rule
/// taking 1/(remaining) of what reaches it (upstream `writeServiceToEndpointRules`).
pub(super) fn service_to_endpoints(nat: &mut Table, p: &PortView, chain: &str, eps: &[RealServer]) {
    nat.chain(chain);
    // ClientIP affinity first: a client seen within the timeout goes back
    // to the endpoint that last served it (`--reap` drops older entries).
    if let Some(secs) = p.affinity {
        for ep in eps {
            let sep = endpoint_chain(&p.name, p.proto, ep);
            nat.rule(
                chain,
                format!(
                    "-m comment --comment \"{} -> {}:{}\" -m recent --name {sep} --rcheck --seconds {secs} --reap -j {sep}",
                    p.name, ep.ip, ep.port
                ),
            );
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let sep = endpoint_chain(&p.name, p.proto, ep);
        let comment = format!("\"{} -> {}:{}\"", p.name, ep.ip, ep.port);
        if i + 1 < n {
            nat.rule(
                chain,
                format!(
                    "-m comment --comment {comment} -m statistic --mode random --probability {:.10} -j {sep}",
                    1.0 / (n - i) as f64
                ),
            );
        } else {
            nat.rule(chain, format!("-m comment --comment {comment} -j {sep}"));
        }
    }
}

/// Standard base32 (RFC 4648, with padding), as Go's `base32.StdEncoding`.
pub mod base32 {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(5) {
            let mut buf = [0u8; 5];
            buf[..chunk.len()].copy_from_slice(chunk);
            let bits = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            let chars = (chunk.len() * 8).div_ceil(5);
            for i in 0..8 {
                if i < chars {
                    out.push(ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32::encode(b""), "");
        assert_eq!(base32::encode(b"f"), "MY======");
        assert_eq!(base32::encode(b"foobar"), "MZXW6YTBOI======");
    }

    #[test]
    fn chain_names_match_upstream() {
        // pkg/proxy/iptables/proxier_test.go: "ns1/svc1:p80" tcp.
        assert_eq!(
            chain("KUBE-SVC-", "ns1/svc1:p80", "tcp"),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            chain("KUBE-EXT-", "ns1/svc1:p80", "tcp"),
            "KUBE-EXT-XPGD46QRK7WJZT7O"
        );
        let ep = RealServer {
            ip: "10.180.0.1".parse().unwrap(),
            port: 80,
            pod: String::new(),
        };
        assert_eq!(
            endpoint_chain("ns1/svc1:p80", "tcp", &ep),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
    }
}
