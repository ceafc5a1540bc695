//! `impairments:` and `events:`: faults declared in the topology.

use super::{cidr, text, uint, Cx, Obj};
use crate::topology::model::{Event, EventAction, Impairment, Netem};
use serde_yaml_ng::Value;

/// The keys of an impairment (`link` and the netem settings).
pub(crate) const IMPAIRMENT_KEYS: &[&str] = &[
    "link",
    "delay_ms",
    "jitter_ms",
    "loss",
    "duplicate",
    "reorder",
    "rate",
];

/// The keys of an event: its name and one action each.
pub(crate) const EVENT_KEYS: &[&str] = &[
    "name",
    "link_down",
    "link_up",
    "pods_restarted",
    "endpoint_terminating",
    "route_entry_removed",
    "impair",
];

/// A whole percentage.
fn percent(v: &Value) -> Result<u32, String> {
    let n: u32 = uint(v)?;
    if n > 100 {
        return Err(format!("{n} is not a percentage (0..=100)"));
    }
    Ok(n)
}

/// `100kbit`, `10mbit`, `1gbit`, `500bit`: a rate as tc writes it.
pub(crate) fn rate(v: &Value) -> Result<String, String> {
    let s = text(v)?.trim().to_ascii_lowercase();
    let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
    let (n, unit) = s.split_at(digits);
    let ok = !n.is_empty()
        && n.parse::<u64>().is_ok_and(|n| n > 0)
        && matches!(unit, "bit" | "kbit" | "mbit" | "gbit");
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{s:?} is not a rate (a whole number and bit, kbit, mbit or gbit: \"10mbit\")"
        ))
    }
}

pub(super) fn impairment(cx: &mut Cx, v: &Value, path: &str) -> Impairment {
    let o = Obj::new(
        cx,
        v,
        path,
        "an impairment {link, delay_ms, jitter_ms, loss, duplicate, reorder, rate}",
    );
    let i = Impairment {
        link: o.req(cx, "link", text).unwrap_or_default(),
        netem: Netem {
            delay_ms: o.opt(cx, "delay_ms", uint::<u32>),
            jitter_ms: o.opt(cx, "jitter_ms", uint::<u32>),
            loss: o.opt(cx, "loss", percent),
            duplicate: o.opt(cx, "duplicate", percent),
            reorder: o.opt(cx, "reorder", percent),
            rate: o.opt(cx, "rate", rate),
        },
    };
    o.finish(cx, IMPAIRMENT_KEYS);
    i
}

pub(super) fn event(cx: &mut Cx, v: &Value, path: &str) -> Event {
    let o = Obj::new(
        cx,
        v,
        path,
        "an event {name, and one of link_down, link_up, pods_restarted, endpoint_terminating, route_entry_removed, impair}",
    );
    let name = o.req(cx, "name", text).unwrap_or_default();
    let mut actions: Vec<EventAction> = Vec::new();
    if let Some(p) = o.opt(cx, "link_down", text) {
        actions.push(EventAction::LinkDown(p));
    }
    if let Some(p) = o.opt(cx, "link_up", text) {
        actions.push(EventAction::LinkUp(p));
    }
    if let Some(n) = o.opt(cx, "pods_restarted", text) {
        actions.push(EventAction::PodsRestarted(n));
    }
    if let Some(p) = o.opt(cx, "endpoint_terminating", text) {
        actions.push(EventAction::EndpointTerminating(p));
    }
    if let Some(d) = o.opt(cx, "route_entry_removed", cidr) {
        actions.push(EventAction::RouteEntryRemoved(d));
    }
    if let Some(i) = o.nested(cx, "impair", impairment) {
        actions.push(EventAction::Impair(i));
    }
    o.finish(cx, EVENT_KEYS);
    let known_map = matches!(v, Value::Mapping(_));
    let read_all = EVENT_KEYS[1..]
        .iter()
        .all(|k| o.raw(k).is_none() || actions.iter().any(|a| a.key() == *k));
    if actions.len() > 1 {
        let keys: Vec<&str> = actions.iter().map(|a| a.key()).collect();
        cx.error(
            path,
            format!(
                "an event does one thing; this one has {} (split it into events)",
                keys.join(" and ")
            ),
        );
    } else if actions.is_empty() && known_map && read_all {
        cx.error(
            path,
            format!(
                "the event says nothing happens: give one of {}",
                EVENT_KEYS[1..].join(", ")
            ),
        );
    }
    Event {
        name,
        // A placeholder keeps indices aligned; the error is reported above.
        action: actions
            .into_iter()
            .next()
            .unwrap_or(EventAction::LinkUp(String::new())),
    }
}
