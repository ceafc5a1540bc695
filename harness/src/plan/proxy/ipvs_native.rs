//! kube-proxy's IPVS mode on a kernel with IP_VS (`Backends::ipvs`): the
//! virtual servers become real IPVS services (`NsPlan::ipvs`, programmed by
//! `kernel::ipvs` over generic netlink), and nftables carries only what
//! kube-proxy keeps in iptables in this mode: the masquerade marks
//! (KUBE-MARK-MASQ) and the masquerade itself (KUBE-POSTROUTING). No DNAT,
//! no reject, no re-route mark: IPVS does those itself:
//!
//! - it NATs at LOCAL_IN / LOCAL_OUT, after filter INPUT, and sends the
//!   packet on with a route looked up by destination only, so policy rules
//!   keyed on the source (Terway's `from <podIP>`) do not apply (T6);
//! - a virtual server without real servers answers ICMP port-unreachable
//!   (ip_vs_leave: "the TCP RST packet cannot be sent").
//!
//! kube-proxy's sysctls for IPVS (pkg/proxy/ipvs/proxier.go NewProxier):
//! `net/ipv4/vs/conntrack=1` (without it IPVS'd packets are untracked and
//! never masqueraded), `expire_nodest_conn=1`, `expire_quiescent_template=1`.

use super::{append_nft, MASQ_MARK};
use crate::plan::cloud::NodeCtx;
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::Proto;
use std::net::Ipv4Addr;

/// nft table holding kube-proxy's masquerade rules on the native backend.
pub const TABLE: &str = "cnlab_kube_proxy";

/// The IPVS services for `vss`, one per (address, port, protocol).
pub fn services(vss: &[VirtualServer]) -> Vec<IpvsService> {
    let mut out: Vec<IpvsService> = Vec::new();
    for vs in vss {
        let proto = match vs.proto {
            Proto::Tcp => IpvsProto::Tcp,
            Proto::Udp => IpvsProto::Udp,
            // Validation admits only TCP and UDP service ports.
            Proto::Icmp | Proto::All => continue,
        };
        if out
            .iter()
            .any(|s| s.addr == vs.addr && s.port == vs.port && s.proto == proto)
        {
            continue;
        }
        out.push(IpvsService {
            addr: vs.addr,
            port: vs.port,
            proto,
            scheduler: IPVS_SCHEDULER_RR.into(),
            // kube-proxy: FlagPersistent + Timeout for ClientIP affinity.
            persistence_timeout: vs.persistence,
            dests: vs
                .real_servers
                .iter()
                .map(|r| IpvsDest {
                    addr: r.ip,
                    port: r.port,
                    weight: 1,
                    forward: IpvsForward::Masq,
                })
                .collect(),
        });
    }
    out
}

fn l4(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "udp",
        _ => "tcp",
    }
}

/// Masquerade marks in nat prerouting (forwarded) and output (the node's
/// own traffic), and the masquerade in postrouting.
///
/// Hairpin: kube-proxy's KUBE-LOOP-BACK rule sits in KUBE-POSTROUTING, after
/// IPVS has rewritten the destination to the real server (vs/conntrack=1
/// lets nat see it), so it matches `daddr == saddr == <local endpoint>`.
pub fn render_masquerade(vss: &[VirtualServer], local: &[Ipv4Addr]) -> String {
    let mark = |vs: &VirtualServer| {
        format!(
            "    ip daddr {} {} dport {} counter meta mark set meta mark | {MASQ_MARK:#x} comment \"{} KUBE-MARK-MASQ\"\n",
            vs.addr,
            l4(vs.proto),
            vs.port,
            vs.service
        )
    };
    let mut s = format!("table ip {TABLE} {{\n");
    s += "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n";
    for vs in vss.iter().filter(|v| v.masquerade == Masquerade::Always) {
        s += &mark(vs);
    }
    s += "  }\n  chain output {\n    type nat hook output priority -100; policy accept;\n";
    for vs in vss
        .iter()
        .filter(|v| matches!(v.masquerade, Masquerade::Always | Masquerade::NodeOrigin))
    {
        s += &mark(vs);
    }
    s += &format!(
        "  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat - 5; policy accept;\n    \
         meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} counter masquerade comment \"KUBE-POSTROUTING\"\n{}  }}\n}}\n",
        super::ipvs_emulation::loop_back(vss, local)
    );
    s
}

/// Plans the node's IPVS table, kube-proxy's IPVS sysctls and the
/// masquerade table.
pub fn program_node(d: &mut Draft, node: &NodeCtx, vss: &[VirtualServer], local: &[Ipv4Addr]) {
    let ns = d.ns(node.ns);
    ns.ipvs = services(vss);
    ns.sysctl("net/ipv4/vs/conntrack", "1");
    ns.sysctl("net/ipv4/vs/expire_nodest_conn", "1");
    ns.sysctl("net/ipv4/vs/expire_quiescent_template", "1");
    append_nft(d, node.ns, &render_masquerade(vss, local));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn vs(addr: [u8; 4], port: u16, rs: &[[u8; 4]], m: Masquerade) -> VirtualServer {
        VirtualServer {
            service: "shop/web".into(),
            kind: VipKind::ClusterIp,
            addr: Ipv4Addr::from(addr),
            port,
            proto: Proto::Tcp,
            real_servers: rs
                .iter()
                .map(|ip| RealServer {
                    ip: Ipv4Addr::from(*ip),
                    port: 8080,
                    pod: "pod/shop/web".into(),
                })
                .collect(),
            masquerade: m,
            persistence: None,
            source_ranges: Vec::new(),
        }
    }

    #[test]
    fn each_virtual_server_is_one_ipvs_service_with_masq_real_servers() {
        let v = [
            vs(
                [10, 96, 0, 10],
                80,
                &[[10, 0, 4, 30], [10, 0, 4, 31]],
                Masquerade::NodeOrigin,
            ),
            vs([10, 0, 4, 20], 30080, &[], Masquerade::Never),
        ];
        let s = services(&v);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].scheduler, "rr");
        assert_eq!(s[0].dests.len(), 2);
        assert!(s[0]
            .dests
            .iter()
            .all(|d| d.forward == IpvsForward::Masq && d.weight == 1));
        // No real servers: IPVS itself answers ICMP port-unreachable.
        assert!(s[1].dests.is_empty());
    }

    #[test]
    fn a_local_endpoint_gets_the_loop_back_masquerade() {
        let v = [vs(
            [10, 96, 0, 10],
            80,
            &[[10, 0, 4, 30], [10, 0, 5, 30]],
            Masquerade::NodeOrigin,
        )];
        let t = render_masquerade(&v, &[Ipv4Addr::new(10, 0, 4, 30)]);
        let post = &t[t.find("chain postrouting").unwrap()..];
        assert!(
            post.contains("ip daddr 10.0.4.30 tcp dport 8080 ip saddr 10.0.4.30 counter masquerade comment \"KUBE-LOOP-BACK\""),
            "{post}"
        );
        assert!(!post.contains("10.0.5.30"), "{post}");
    }

    #[test]
    fn nft_only_marks_and_masquerades() {
        let v = [
            vs(
                [10, 96, 0, 10],
                80,
                &[[10, 0, 4, 30]],
                Masquerade::NodeOrigin,
            ),
            vs([10, 0, 4, 20], 30080, &[[10, 0, 4, 30]], Masquerade::Always),
            vs([10, 0, 4, 20], 30081, &[[10, 0, 4, 30]], Masquerade::Never),
        ];
        let t = render_masquerade(&v, &[]);
        assert!(!t.contains("dnat"), "{t}");
        assert!(!t.contains("KUBE-LOOP-BACK"), "{t}");
        assert!(!t.contains("reject"), "{t}");
        assert!(!t.contains("ct mark"), "{t}");
        assert!(!t.contains("30081"), "{t}");
        let pre = &t[t.find("chain prerouting").unwrap()..t.find("chain output").unwrap()];
        assert!(
            pre.contains("dport 30080") && !pre.contains("dport 80 "),
            "{pre}"
        );
        let out = &t[t.find("chain output").unwrap()..t.find("chain postrouting").unwrap()];
        assert!(
            out.contains("dport 80 ") && out.contains("dport 30080"),
            "{out}"
        );
    }
}
