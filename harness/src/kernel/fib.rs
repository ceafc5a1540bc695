//! The kernel's own forwarding decision for a packet, as `ip route get DST
//! from SRC iif DEV` prints it (RTM_GETROUTE), and the policy routing rule
//! that led to the table the route came from.
//!
//! Runs in the calling thread's namespace (use `NetNs::run`). Nothing is
//! changed: both requests only read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use super::netlink::Netlink;
use super::KernelError;

/// A packet as a route lookup sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub dst: Ipv4Addr,
    pub src: Option<Ipv4Addr>,
    /// The interface it arrived on (a forwarded packet); `None` for a
    /// packet this namespace sends itself.
    pub iif: Option<String>,
    /// The packet's mark (`fwmark` rules select on it): what tc set before
    /// the stack saw the packet, as the eBPF VLAN demux does on a trunk.
    pub mark: Option<u32>,
}

/// What the kernel decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub lookup: Lookup,
    /// `unicast`, `local`, `unreachable`, `blackhole`, `prohibit`, … or
    /// `none` when no table had a route (the kernel's error in `error`).
    pub kind: String,
    pub dev: Option<String>,
    pub via: Option<Ipv4Addr>,
    pub prefsrc: Option<Ipv4Addr>,
    pub table: Option<u32>,
    /// The rule that chose `table` (`2048: from 10.0.4.27 lookup 1027`).
    pub rule: Option<String>,
    pub error: Option<String>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.lookup;
        write!(f, "route get {}", l.dst)?;
        if let Some(s) = l.src {
            write!(f, " from {s}")?;
        }
        if let Some(i) = &l.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(m) = l.mark {
            write!(f, " mark {m:#x}")?;
        }
        f.write_str(" → ")?;
        if let Some(e) = &self.error {
            return write!(f, "no route ({e})");
        }
        if self.kind != "unicast" {
            write!(f, "{} ", self.kind)?;
        }
        if let Some(v) = self.via {
            write!(f, "via {v} ")?;
        }
        if let Some(d) = &self.dev {
            write!(f, "dev {d} ")?;
        }
        if let Some(t) = self.table {
            write!(f, "table {}", table_name(t))?;
        }
        if let Some(r) = &self.rule {
            write!(f, " (rule {r})")?;
        }
        Ok(())
    }
}

fn table_name(t: u32) -> String {
    match t {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}

/// Asks the kernel of the current namespace how it would route `l`.
pub fn route_get(l: &Lookup) -> Result<Decision, KernelError> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let name_of = |idx: u32| {
        links
            .iter()
            .find(|k| k.index == idx)
            .map(|k| k.name.clone())
            .unwrap_or_else(|| format!("if{idx}"))
    };
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = 32;
    // Report the table the route really came from (iproute2 does the same).
    msg.header.flags = RouteFlags::LookupTable;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(l.dst)));
    if let Some(src) = l.src {
        msg.header.source_prefix_length = 32;
        msg.attributes
            .push(RouteAttribute::Source(RouteAddress::Inet(src)));
    }
    if let Some(iif) = &l.iif {
        let idx = links
            .iter()
            .find(|k| &k.name == iif)
            .map(|k| k.index)
            .ok_or_else(|| KernelError::new(format!("route get: no interface {iif}")))?;
        msg.attributes.push(RouteAttribute::Iif(idx));
    }
    if let Some(m) = l.mark {
        msg.attributes.push(RouteAttribute::Mark(m));
    }
    let mut d = Decision {
        lookup: l.clone(),
        kind: "none".into(),
        dev: None,
        via: None,
        prefsrc: None,
        table: None,
        rule: None,
        error: None,
    };
    let answer = match nl.get_route(msg, "route get") {
        Ok(a) => a,
        Err(e) => {
            // No route is an answer, not a failure of the question.
            d.error = Some(e.to_string().trim_start_matches("route get: ").to_string());
            return Ok(d);
        }
    };
    let Some(r) = answer.into_iter().next() else {
        d.error = Some("the kernel gave no answer".into());
        return Ok(d);
    };
    d.kind = kind_name(r.header.kind);
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => d.dev = Some(name_of(*i)),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => d.via = Some(*g),
            RouteAttribute::PrefSource(RouteAddress::Inet(s)) => d.prefsrc = Some(*s),
            RouteAttribute::Table(t) => d.table = Some(*t),
            _ => {}
        }
    }
    if d.table.is_none() && r.header.table != 0 {
        d.table = Some(u32::from(r.header.table));
    }
    if let Some(t) = d.table {
        d.rule = nl
            .rules()
            .ok()
            .and_then(|rules| choosing_rule(&rules, l, t));
    }
    Ok(d)
}

fn kind_name(k: RouteType) -> String {
    match k {
        RouteType::Unicast => "unicast".into(),
        RouteType::Local => "local".into(),
        RouteType::BlackHole => "blackhole".into(),
        RouteType::Unreachable => "unreachable".into(),
        RouteType::Prohibit => "prohibit".into(),
        RouteType::Broadcast => "broadcast".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The first rule, by priority, whose selector matches the packet and that
/// looks up `table`: the rule the kernel followed to its answer.
fn choosing_rule(rules: &[RuleMessage], l: &Lookup, table: u32) -> Option<String> {
    let mut sorted: Vec<(u32, &RuleMessage)> = rules
        .iter()
        .map(|r| {
            let prio = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RuleAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0);
            (prio, r)
        })
        .collect();
    sorted.sort_by_key(|(p, _)| *p);
    sorted
        .into_iter()
        .find(|(_, r)| rule_table(r) == Some(table) && selects(r, l))
        .map(|(p, r)| describe(p, r))
}

fn rule_table(r: &RuleMessage) -> Option<u32> {
    if r.header.action != RuleAction::ToTable {
        return None;
    }
    r.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .or(Some(u32::from(r.header.table)))
}

fn in_prefix(addr: Option<Ipv4Addr>, net: Option<&IpAddr>, len: u8) -> bool {
    match (net, len) {
        (_, 0) | (None, _) => true,
        (Some(IpAddr::V4(n)), len) => addr.is_some_and(|a| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(*n) & mask
        }),
        (Some(IpAddr::V6(_)), _) => false,
    }
}

fn selects(r: &RuleMessage, l: &Lookup) -> bool {
    let mut src = None;
    let mut dst = None;
    let mut iif = None;
    let (mut mark, mut mask) = (0, u32::MAX);
    for a in &r.attributes {
        match a {
            RuleAttribute::Source(s) => src = Some(s),
            RuleAttribute::Destination(d) => dst = Some(d),
            RuleAttribute::Iifname(i) => iif = Some(i),
            RuleAttribute::FwMark(m) => mark = *m,
            RuleAttribute::FwMask(m) => mask = *m,
            _ => {}
        }
    }
    if mark != 0 && l.mark.unwrap_or(0) & mask != mark {
        return false;
    }
    // A locally sent packet has the loopback device as its input.
    let arrived = l.iif.as_deref().unwrap_or("lo");
    in_prefix(l.src, src, r.header.src_len)
        && in_prefix(Some(l.dst), dst, r.header.dst_len)
        && iif.is_none_or(|i| i == arrived)
}

fn describe(prio: u32, r: &RuleMessage) -> String {
    let prefix = |x: &IpAddr, len: u8| {
        if len == 32 {
            x.to_string()
        } else {
            format!("{x}/{len}")
        }
    };
    let mut from = "all".to_string();
    let mut rest = String::new();
    for a in &r.attributes {
        match a {
            RuleAttribute::Source(x) => from = prefix(x, r.header.src_len),
            RuleAttribute::Destination(x) => {
                rest.push_str(&format!(" to {}", prefix(x, r.header.dst_len)))
            }
            RuleAttribute::Iifname(i) => rest.push_str(&format!(" iif {i}")),
            RuleAttribute::FwMark(m) if *m != 0 => rest.push_str(&format!(" fwmark {m:#x}")),
            _ => {}
        }
    }
    let table = rule_table(r).map(table_name).unwrap_or_default();
    format!("{prio}: from {from}{rest} lookup {table}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prio: u32, table: u32, src: Option<(Ipv4Addr, u8)>, iif: Option<&str>) -> RuleMessage {
        let mut r = RuleMessage::default();
        r.header.action = RuleAction::ToTable;
        r.attributes.push(RuleAttribute::Priority(prio));
        r.attributes.push(RuleAttribute::Table(table));
        if let Some((a, len)) = src {
            r.header.src_len = len;
            r.attributes.push(RuleAttribute::Source(IpAddr::V4(a)));
        }
        if let Some(i) = iif {
            r.attributes.push(RuleAttribute::Iifname(i.into()));
        }
        r
    }

    #[test]
    fn the_first_matching_rule_for_the_table_is_named() {
        let rules = vec![
            rule(32766, 254, None, None),
            rule(0, 255, None, None),
            rule(2048, 1027, Some(("10.0.4.27".parse().unwrap(), 32)), None),
            rule(1500, 1027, None, Some("eth9")),
        ];
        let l = Lookup {
            dst: "10.0.5.9".parse().unwrap(),
            src: Some("10.0.4.27".parse().unwrap()),
            iif: Some("cali1".into()),
            mark: None,
        };
        assert_eq!(
            choosing_rule(&rules, &l, 1027).as_deref(),
            Some("2048: from 10.0.4.27 lookup 1027")
        );
        assert_eq!(
            choosing_rule(&rules, &l, 254).as_deref(),
            Some("32766: from all lookup main")
        );
        let other = Lookup {
            src: Some("10.0.4.28".parse().unwrap()),
            ..l
        };
        assert_eq!(choosing_rule(&rules, &other, 1027), None);
    }
}
