//! Security groups as nftables in each ENI namespace (table `inet cnlab_sg`),
//! and for member ENIs in the `hv/<node>` holding them ([`hv_members_nft`]).
//!
//! Stateful per ENI: each ENI namespace has its own conntrack, and each
//! member ENI its own conntrack zone, so a reply that enters through a
//! different ENI than its request left from is a new flow there — exactly
//! Alibaba's behaviour.

use crate::topology::PointId;
use ipnet::Ipv4Net;

use super::types::{EniRecord, LabPlan};
use super::PlanError;
use crate::topology::model::{Action, Direction, PortSpec, Proto, SecurityGroup, SgRule, Topology};

/// Inclusive port ranges; `None` means every port.
pub type PortRanges = Option<Vec<(u16, u16)>>;

/// `80`, `"80"`, `"8000-9000"`, `"80,443"`, Alibaba's `"80/80"` and `"-1/-1"` (all).
pub fn parse_ports(spec: &PortSpec) -> Result<PortRanges, String> {
    let text = match spec {
        PortSpec::Number(n) => return Ok(Some(vec![(*n, *n)])),
        PortSpec::Text(t) => t.trim(),
    };
    if text == "-1/-1" || text == "all" || text.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once(['-', '/']) {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u16 = lo
            .parse()
            .map_err(|_| format!("bad port {lo:?} in {text:?}"))?;
        let hi: u16 = hi
            .parse()
            .map_err(|_| format!("bad port {hi:?} in {text:?}"))?;
        if lo == 0 || lo > hi {
            return Err(format!("bad port range {part:?} in {text:?}"));
        }
        out.push((lo, hi));
    }
    Ok(Some(out))
}

/// The nft script of one ENI namespace, or `None` when the ENI has no
/// security group (then nothing filters it; a note says so).
pub fn eni_nft(
    topo: &Topology,
    plan: &LabPlan,
    eni: &EniRecord,
) -> Result<Option<String>, PlanError> {
    eni_nft_with(topo, plan, eni, &mut GroupMembers::default())
}

/// Members of each security group, computed once per group: a group's
/// member set goes into the ruleset of every ENI in it, and recomputing it
/// per ENI made planning 10,000 trunk pods quadratic.
#[derive(Debug, Default)]
pub struct GroupMembers(std::collections::HashMap<String, Vec<Ipv4Net>>);

/// `eni_nft` for many ENIs of one plan whose ENIs and route entries no
/// longer change: group members come from (and go into) `members`.
pub fn eni_nft_with(
    topo: &Topology,
    plan: &LabPlan,
    eni: &EniRecord,
    members: &mut GroupMembers,
) -> Result<Option<String>, PlanError> {
    if eni.security_groups.is_empty() {
        return Ok(None);
    }
    let groups = groups_of(topo, eni)?;
    let mut s = String::from("table inet cnlab_sg {\n");
    group_sets(&mut s, &groups, plan, members, &mut Vec::new());
    s += "  chain forward {\n    type filter hook forward priority 0; policy accept;\n";
    s += "    ct state established,related accept\n";
    s += "    iifname \"inst\" jump egress\n";
    s += "    iifname \"vpc\" jump ingress\n  }\n";
    direction_chains(&mut s, &groups, "", "")?;
    s += "}\n";
    Ok(Some(s))
}

/// The security groups of every member ENI one hypervisor holds
/// (`(record, VLAN id)`), as one table in `hv/<node>`. Each member ENI is
/// stateful on its own as in a namespace of its own: its conntrack zone is
/// its VLAN id, set before conntrack sees the packet (prerouting, priority
/// raw) from the link it arrived on — its link from the VPC, its 802.1Q
/// device, or (eBPF) the trunk link with the VLAN id the demux program put
/// in the mark. Its rules are chains `ingress_<vlan>` / `egress_<vlan>`
/// whose comments start with `eni/<id>: `, so counters name the ENI.
/// `None` when no member has a security group.
pub fn hv_members_nft(
    topo: &Topology,
    plan: &LabPlan,
    enis: &[(EniRecord, u16)],
    vlan_devices: bool,
    members: &mut GroupMembers,
) -> Result<Option<String>, PlanError> {
    let filtered: Vec<&(EniRecord, u16)> = enis
        .iter()
        .filter(|(e, _)| !e.security_groups.is_empty())
        .collect();
    if filtered.is_empty() {
        return Ok(None);
    }
    let mut s = String::from("table inet cnlab_sg {\n");
    let mut written = Vec::new();
    let mut grouped = Vec::new();
    for (e, _) in &filtered {
        let groups = groups_of(topo, e)?;
        group_sets(&mut s, &groups, plan, members, &mut written);
        grouped.push(groups);
    }
    let trunk = crate::plan::agent::trunking::HV_TRUNK_SIDE;
    // Zones for every member, filtered or not: each has its own conntrack.
    let (zone_by_link, zone_by_mark) = member_maps(
        enis.iter().map(|(_, v)| *v),
        vlan_devices,
        |v| v.to_string(),
        |v| v.to_string(),
    );
    s += "  chain zone {\n    type filter hook prerouting priority raw; policy accept;\n";
    s += &format!(
        "    ct zone set iifname map {{ {} }}\n",
        zone_by_link.join(", ")
    );
    if !zone_by_mark.is_empty() {
        s += &format!(
            "    iifname \"{trunk}\" ct zone set meta mark map {{ {} }}\n",
            zone_by_mark.join(", ")
        );
    }
    s += "  }\n";
    let (by_link, by_mark) = member_maps(
        filtered.iter().map(|(_, v)| *v),
        vlan_devices,
        |v| format!("jump ingress_{v}"),
        |v| format!("jump egress_{v}"),
    );
    s += "  chain forward {\n    type filter hook forward priority 0; policy accept;\n";
    s += "    ct state established,related accept\n";
    s += &format!("    iifname vmap {{ {} }}\n", by_link.join(", "));
    if !by_mark.is_empty() {
        s += &format!(
            "    iifname \"{trunk}\" meta mark vmap {{ {} }}\n",
            by_mark.join(", ")
        );
    }
    s += "  }\n";
    for ((e, v), groups) in filtered.iter().zip(&grouped) {
        direction_chains(
            &mut s,
            groups,
            &format!("_{v}"),
            &member_comment_prefix(&e.id),
        )?;
    }
    s += "}\n";
    Ok(Some(s))
}

/// Every rule comment of member ENI `id` in its hypervisor starts with this.
fn member_comment_prefix(id: &str) -> String {
    format!("{}: ", PointId::eni(id))
}

/// The member ENI (`eni/<id>`) and the rule a hypervisor's rule comment
/// names, for comments that [`hv_members_nft`] wrote.
pub fn member_rule(comment: &str) -> Option<(&str, &str)> {
    comment
        .split_once(": ")
        .filter(|(owner, _)| owner.starts_with("eni/") && !owner.contains(' '))
}

/// Map elements keyed by where a member's packet arrives in hv: by
/// interface name (its link from the VPC: `from_vpc`; its 802.1Q device:
/// `from_pod`), and by mark for what the eBPF demux marked on the trunk
/// (`from_pod`).
fn member_maps(
    vlans: impl Iterator<Item = u16>,
    vlan_devices: bool,
    from_vpc: impl Fn(u16) -> String,
    from_pod: impl Fn(u16) -> String,
) -> (Vec<String>, Vec<String>) {
    use crate::plan::agent::trunking::{hv_member_link, hv_vlan_link};
    let (mut by_link, mut by_mark) = (Vec::new(), Vec::new());
    for v in vlans {
        by_link.push(format!("\"{}\" : {}", hv_member_link(v), from_vpc(v)));
        if vlan_devices {
            by_link.push(format!("\"{}\" : {}", hv_vlan_link(v), from_pod(v)));
        } else {
            by_mark.push(format!("{v} : {}", from_pod(v)));
        }
    }
    (by_link, by_mark)
}

/// The groups an ENI is in, each with its position in the topology (which
/// names its member set).
fn groups_of<'t>(
    topo: &'t Topology,
    eni: &EniRecord,
) -> Result<Vec<(usize, &'t SecurityGroup)>, PlanError> {
    eni.security_groups
        .iter()
        .map(|id| {
            let pos = topo.vpc.security_groups.iter().position(|s| &s.id == id);
            let pos = pos.ok_or_else(|| PlanError::UnknownSecurityGroup {
                owner: PointId::eni(&eni.id).to_string(),
                sg: id.clone(),
            })?;
            Ok((pos, &topo.vpc.security_groups[pos]))
        })
        .collect()
}

/// Groups whose members may reach each other (inner access not dropped).
fn inner<'g, 't>(groups: &'g [(usize, &'t SecurityGroup)]) -> Vec<&'g (usize, &'t SecurityGroup)> {
    groups
        .iter()
        .filter(|(_, g)| g.inner_access != Some(Action::Drop))
        .collect()
}

/// The member sets (`grp_<pos>`) of `groups` not in `written` yet.
fn group_sets(
    s: &mut String,
    groups: &[(usize, &SecurityGroup)],
    plan: &LabPlan,
    members: &mut GroupMembers,
    written: &mut Vec<usize>,
) {
    for (pos, g) in inner(groups) {
        if written.contains(pos) {
            continue;
        }
        written.push(*pos);
        let members = members
            .0
            .entry(g.id.clone())
            .or_insert_with(|| group_addresses(plan, &g.id));
        *s += &format!("  set grp_{pos} {{\n    comment \"members of {}\"\n    type ipv4_addr\n    flags interval\n", g.id);
        if !members.is_empty() {
            let items: Vec<String> = members
                .iter()
                .map(|n| {
                    if n.prefix_len() == 32 {
                        n.addr().to_string()
                    } else {
                        n.to_string()
                    }
                })
                .collect();
            *s += &format!("    elements = {{ {} }}\n", items.join(", "));
        }
        *s += "  }\n";
    }
}

/// Chains `ingress<suffix>` and `egress<suffix>` of `groups`, every rule
/// comment starting with `prefix`.
fn direction_chains(
    s: &mut String,
    groups: &[(usize, &SecurityGroup)],
    suffix: &str,
    prefix: &str,
) -> Result<(), PlanError> {
    for dir in [Direction::Ingress, Direction::Egress] {
        let (chain, peer, default) = match dir {
            Direction::Ingress => ("ingress", "saddr", ("drop", "default ingress drop")),
            Direction::Egress => ("egress", "daddr", ("accept", "default egress accept")),
        };
        *s += &format!("  chain {chain}{suffix} {{\n");
        for line in ordered_rules(groups, dir, prefix)? {
            *s += &format!("    {line}\n");
        }
        for (pos, g) in inner(groups) {
            *s += &format!(
                "    ip {peer} @grp_{pos} counter accept comment \"{prefix}{} inner_access\"\n",
                g.id
            );
        }
        *s += &format!(
            "    counter {} comment \"{prefix}{}\"\n  }}\n",
            default.0, default.1
        );
    }
    Ok(())
}

/// Rules of `dir` from every group, lower priority first, drop before
/// accept at equal priority, otherwise in the order written.
fn ordered_rules(
    groups: &[(usize, &SecurityGroup)],
    dir: Direction,
    prefix: &str,
) -> Result<Vec<String>, PlanError> {
    let mut picked: Vec<(u8, u8, String)> = Vec::new();
    for (_, g) in groups {
        for (i, r) in g
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.direction == dir)
        {
            let tie = if r.action == Action::Drop { 0 } else { 1 };
            picked.push((
                r.priority.unwrap_or(1),
                tie,
                rule_line(&g.id, i, r, prefix)?,
            ));
        }
    }
    picked.sort_by_key(|(p, t, _)| (*p, *t));
    Ok(picked.into_iter().map(|(_, _, l)| l).collect())
}

fn rule_line(sg: &str, index: usize, r: &SgRule, prefix: &str) -> Result<String, PlanError> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = r.cidr.filter(|c| c.prefix_len() > 0) {
        let peer = if r.direction == Direction::Ingress {
            "saddr"
        } else {
            "daddr"
        };
        parts.push(format!("ip {peer} {c}"));
    }
    match r.proto {
        Proto::Tcp | Proto::Udp => {
            parts.push(format!(
                "meta l4proto {}",
                if r.proto == Proto::Tcp { "tcp" } else { "udp" }
            ));
            let ranges = match &r.ports {
                Some(p) => parse_ports(p).map_err(|reason| PlanError::BadPorts {
                    sg: sg.into(),
                    rule: index,
                    reason,
                })?,
                None => None,
            };
            if let Some(ranges) = ranges {
                let items: Vec<String> = ranges
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                parts.push(format!("th dport {{ {} }}", items.join(", ")));
            }
        }
        Proto::Icmp => parts.push("meta l4proto icmp".into()),
        Proto::All => {}
    }
    parts.push("counter".into());
    parts.push(
        if r.action == Action::Accept {
            "accept"
        } else {
            "drop"
        }
        .into(),
    );
    parts.push(format!("comment \"{prefix}{sg} rule {index}\""));
    Ok(parts.join(" "))
}

/// Every address of every ENI in group `sg`: its private IPs and the VPC
/// route entries pointing at it (a node's pod CIDR slice), overlaps merged
/// (nft rejects overlapping intervals).
pub fn group_addresses(plan: &LabPlan, sg: &str) -> Vec<Ipv4Net> {
    let mut nets: Vec<Ipv4Net> = Vec::new();
    for e in plan
        .enis
        .iter()
        .filter(|e| e.security_groups.iter().any(|g| g == sg))
    {
        nets.extend(e.ips.iter().map(|ip| Ipv4Net::from(*ip)));
        nets.extend(
            plan.route_entries
                .iter()
                .filter(|r| r.eni == e.id)
                .map(|r| r.dest),
        );
    }
    Ipv4Net::aggregate(&nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_in_every_written_form() {
        assert_eq!(
            parse_ports(&PortSpec::Number(80)).unwrap(),
            Some(vec![(80, 80)])
        );
        assert_eq!(
            parse_ports(&PortSpec::Text("80,443".into())).unwrap(),
            Some(vec![(80, 80), (443, 443)])
        );
        assert_eq!(
            parse_ports(&PortSpec::Text("8000-9000".into())).unwrap(),
            Some(vec![(8000, 9000)])
        );
        assert_eq!(
            parse_ports(&PortSpec::Text("22/22".into())).unwrap(),
            Some(vec![(22, 22)])
        );
        assert_eq!(parse_ports(&PortSpec::Text("-1/-1".into())).unwrap(), None);
        assert!(parse_ports(&PortSpec::Text("90-80".into())).is_err());
        assert!(parse_ports(&PortSpec::Text("http".into())).is_err());
    }
}
