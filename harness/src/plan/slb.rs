//! The SLB mock: namespace `slb/<id>` on a link `slb<k>` of the VPC router.
//! It holds the VIP and does L4 DNAT to its backends keeping the client
//! address (no SNAT). Replies must come back through it: the VPC router
//! marks flows the SLB opens (ct mark) and policy-routes their replies back
//! to the SLB (`fwmark <mark> lookup <table>`: `default via VIP dev slb<k>`).
//!
//! A backend reaching itself through its own CLB fails, as the real CLB
//! does (C6): the request comes back with the client's own address as
//! source and the backend drops it (martian source) or answers it directly.

use super::cloud::{default_net, gateway, host_net};
use super::draft::Draft;
use super::proxy::append_nft;
use super::types::*;
use crate::topology::model::{Proto, Topology};
use crate::topology::PointId;

pub const SLB_IFNAME: &str = "eth0";
/// Priority of the VPC router's `fwmark → slb table` rules.
pub const SLB_RETURN_RULE_PRIORITY: u32 = 90;

pub fn program(d: &mut Draft, topo: &Topology, vpc: NsIdx, slbs: &[SlbPlan]) {
    let Some(gw) = topo.vpc.vswitches.first().map(|v| gateway(v.cidr)) else {
        d.plan
            .notes
            .push("load balancers need at least one vswitch: none planned".into());
        return;
    };
    let mut vpc_nft = String::from(
        "table ip cnlab_slb_return {\n  chain prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n",
    );
    for slb in slbs {
        let ns = d.add_ns(&PointId::slb(&slb.id), NsKind::Slb);
        d.veth(vpc, &slb.vpc_link, ns, SLB_IFNAME);
        d.addr(ns, SLB_IFNAME, host_net(slb.ip), Scope::Global);
        d.route(ns, RoutePlan::via(default_net(), gw, SLB_IFNAME, true));
        d.route(vpc, RoutePlan::link(host_net(slb.ip), &slb.vpc_link));
        d.route(
            vpc,
            RoutePlan::via(default_net(), slb.ip, &slb.vpc_link, true).in_table(slb.table),
        );
        d.ns(vpc).rules.push(RulePlan {
            priority: SLB_RETURN_RULE_PRIORITY,
            fwmark: Some((slb.mark, 0xffff_ffff)),
            table: slb.table,
            ..Default::default()
        });
        vpc_nft += &format!(
            "    iifname \"{l}\" ct state new ct mark set {m:#x} comment \"flows opened by slb/{id}\"\n    \
             ct direction reply ct mark {m:#x} meta mark set {m:#x} counter comment \"replies return to slb/{id}\"\n",
            l = slb.vpc_link,
            m = slb.mark,
            id = slb.id
        );
        d.ns(ns).nft = Some(slb_nft(slb));
        d.router_sysctls(ns);
        d.plan.points.push(ObsPoint {
            id: PointId::slb(&slb.id),
            aliases: vec![],
            ns,
            ifname: None,
            vlan: None,
        });
    }
    vpc_nft += "  }\n}\n";
    if !slbs.is_empty() {
        append_nft(d, vpc, &vpc_nft);
    }
}

/// L4 listeners: DNAT to a backend per connection, client address kept;
/// anything else addressed to the VIP is dropped.
pub fn slb_nft(slb: &SlbPlan) -> String {
    let mut s = String::from("table ip cnlab_slb {\n  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
    for l in &slb.listeners {
        let proto = if l.proto == Proto::Udp { "udp" } else { "tcp" };
        let what = l
            .service
            .as_deref()
            .map(|s| format!(" (service {s})"))
            .unwrap_or_default();
        let to = match l.backends.as_slice() {
            [] => continue,
            [one] => format!("dnat ip to {}:{}", one.ip, one.port),
            many => {
                let items: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("{i} : {} . {}", b.ip, b.port))
                    .collect();
                format!(
                    "dnat ip to numgen random mod {} map {{ {} }}",
                    many.len(),
                    items.join(", ")
                )
            }
        };
        s += &format!(
            "    ip daddr {} {proto} dport {} counter {to} comment \"listener {}/{proto}{what}\"\n",
            slb.ip, l.port, l.port
        );
    }
    s += "  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n";
    s += &format!(
        "    ip daddr {} counter drop comment \"no listener with backends\"\n",
        slb.ip
    );
    s += "  }\n}\n";
    s
}
