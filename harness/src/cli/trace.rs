//! `cnlab trace` and `cnlab explain`: one probe in a running lab, its hops,
//! and (explain) the nft rules whose counters it moved.

use std::time::Duration;

use super::commands::{need_root, EXIT_FAIL, EXIT_OK};
use super::{running, ProbeArgs};
use crate::check::counters;
use crate::check::observe::display_point;
use crate::check::{observe, proto_word, Observation};
use crate::lab::Lab;
use crate::probe::Hop;
use crate::topology::expect::parse_origin;
use crate::topology::model::{Proto, Verdict};

pub fn trace(args: &ProbeArgs, explain: bool) -> Result<i32, i32> {
    let (from, to, which) = (args.from.as_str(), args.to.as_str(), args.lab.as_deref());
    let cmd = if explain { "explain" } else { "trace" };
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("cnlab {cmd}: {e}");
        EXIT_FAIL
    };
    need_root(cmd)?;
    let proto: Proto = serde_yaml_ng::from_str(&args.proto)
        .map_err(|_| fail(&"--proto must be tcp, udp or icmp"))?;
    parse_origin(from).map_err(|e| fail(&e))?;
    let rec = running::find(which).map_err(|e| fail(&e))?;
    let lab = Lab::attach(&rec.id).map_err(|e| fail(&e))?;
    let before = if explain {
        Some(counters::snapshot(&lab).map_err(|e| fail(&format!("reading rule counters: {e}")))?)
    } else {
        None
    };
    let o = observe(
        &lab,
        cmd,
        from,
        to,
        proto,
        Duration::from_millis(args.timeout_ms),
        true,
    );
    if let Some(e) = &o.error {
        return Err(fail(e));
    }
    print_observation(from, to, proto, &o);
    if let Some((before, _)) = before {
        let (after, verdicts) =
            counters::snapshot(&lab).map_err(|e| fail(&format!("reading rule counters: {e}")))?;
        print_rules(&lab, &counters::moved(&before, &after, &verdicts));
    }
    // Scripts branch on it: 0 only when the probe connected.
    Ok(if o.outcome.verdict == Verdict::Connected {
        EXIT_OK
    } else {
        EXIT_FAIL
    })
}

fn print_observation(from: &str, to: &str, proto: Proto, o: &Observation) {
    let out = &o.outcome;
    println!(
        "{from} → {to} ({}): {}{}",
        proto_word(proto),
        out.verdict.as_str(),
        out.refused_by
            .map(|b| format!(" by {}", b.as_str()))
            .unwrap_or_default()
    );
    if !out.detail.is_empty() {
        println!("  detail:    {}", out.detail);
    }
    if let Some(l) = out.local {
        println!("  client:    {l}");
    }
    if let Some(s) = out.seen_peer {
        let own = out.local.is_some_and(|l| l.ip() == s.ip());
        println!(
            "  server saw {s}{}",
            if own {
                " (the client's own address)"
            } else {
                ""
            }
        );
    }
    if let Some(b) = &out.served_by {
        println!("  served by  {b}");
    }
    println!("  request:   {}", chain(o, &o.request));
    println!("  reply:     {}", chain(o, &o.reply));
}

fn chain(o: &Observation, hops: &[Hop]) -> String {
    if hops.is_empty() {
        return "(nothing captured)".into();
    }
    hops.iter()
        .map(|h| h.label(o.display.get(&h.point).unwrap_or(&h.point)))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn print_rules(lab: &Lab, moved: &[counters::Moved]) {
    if moved.is_empty() {
        println!("  rules:     no commented nft rule saw this probe");
        return;
    }
    println!("  rules that saw this probe (nft counters that moved):");
    let names: Vec<String> = moved
        .iter()
        .map(|m| display_point(lab.plan(), &m.ns))
        .collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (m, ns) in moved.iter().zip(&names) {
        let pad = " ".repeat(w - ns.chars().count());
        let verdict = m
            .verdict
            .as_deref()
            .map(|v| format!(" → {v}"))
            .unwrap_or_default();
        let plural = if m.packets == 1 { "" } else { "s" };
        println!(
            "    {ns}{pad}  {}{verdict}  ({} packet{plural})",
            m.rule, m.packets
        );
    }
}
