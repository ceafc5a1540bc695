//! `cnlab matrix FILE`: the Terway connectivity report for any topology.
//! Rows are sources (an ECS outside the cluster, a node, a pod), columns
//! targets (pod IP, ClusterIP, NodePort and LoadBalancer with eTP Cluster and
//! Local, the backend on the source's node or another); every cell is one
//! real TCP probe, reported with the source address the server saw.
//! `--save` keeps the JSON, `--expect` compares a run against it.

mod select;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::commands::{need_root, EXIT_FAIL, EXIT_OK};
use super::BackendArg;
use crate::check::input::load_planned;
use crate::check::observe::{self, observe};
use crate::lab::{Lab, UpOptions};
use crate::plan::LabPlan;
use crate::probe::ProbeOutcome;
use crate::topology::model::Proto;
use select::{Cell, Column, Source};

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Topology file.
    pub file: PathBuf,
    /// Print the matrix as JSON instead of the Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Compare with a matrix saved by --save; exit 1 listing the cells that differ.
    #[arg(long, value_name = "SAVED")]
    pub expect: Option<PathBuf>,
    /// Write the matrix (JSON) to this file.
    #[arg(long, value_name = "OUT")]
    pub save: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Probe deadline in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub timeout_ms: u64,
}

/// One probed (or unformable) cell.
struct Result_ {
    source: usize,
    col: Column,
    cell: Cell,
    outcome: Option<Result<Probed, String>>,
}

/// A probe's outcome and, when it did not connect, the last observation
/// point that saw the request (where it stopped).
struct Probed {
    outcome: ProbeOutcome,
    stopped_after: Option<String>,
}

pub fn run(args: &MatrixArgs) -> Result<i32, i32> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("cnlab matrix: {e}");
        EXIT_FAIL
    };
    let loaded = load_planned(&args.file).map_err(|r| {
        eprintln!("{r}");
        EXIT_FAIL
    })?;
    for w in &loaded.warnings {
        eprintln!("{}: warning: {w}", args.file.display());
    }
    // Read the saved matrix before building anything: a bad file is a usage error.
    let saved = match &args.expect {
        Some(p) => Some(read_saved(p).map_err(|e| fail(&e))?),
        None => None,
    };
    need_root("matrix")?;
    let opts = UpOptions {
        backend: args.backend.into(),
        file: Some(args.file.display().to_string()),
        ..Default::default()
    };
    let lab = Lab::up(&loaded.resolved, &opts).map_err(|e| {
        eprintln!("cnlab matrix: {e}");
        super::commands::EXIT_ENV
    })?;
    let (sources, missing) = select::sources(lab.plan());
    let results = probe_all(&lab, &sources, Duration::from_millis(args.timeout_ms));
    let doc = to_json(lab.plan(), &args.file, &sources, &missing, &results);
    let table = markdown(lab.plan(), &sources, &missing, &results);
    lab.down();
    if let Some(out) = &args.save {
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        std::fs::write(out, text).map_err(|e| fail(&format!("--save {}: {e}", out.display())))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{table}");
    }
    if let Some((path, saved)) = args.expect.as_ref().zip(saved) {
        let diffs = differences(&saved, &doc);
        if diffs.is_empty() {
            eprintln!("matrix matches {}", path.display());
        } else {
            eprintln!(
                "matrix differs from {} in {} cell(s):",
                path.display(),
                diffs.len()
            );
            for d in &diffs {
                eprintln!("  {d}");
            }
            return Ok(EXIT_FAIL);
        }
    }
    Ok(EXIT_OK)
}

fn probe_all(lab: &Lab, sources: &[Source], deadline: Duration) -> Vec<Result_> {
    let plan = lab.plan();
    let cells: Vec<Result_> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            Column::all().into_iter().map(move |col| Result_ {
                source: i,
                col,
                cell: s.cell(plan, col),
                outcome: None,
            })
        })
        .collect();
    let outcomes = crate::check::runner::run_ordered(
        &cells,
        8,
        |_, c| match &c.cell {
            Cell::Probe { from, to, .. } => {
                // Taps open: a cell that does not connect says where it stopped.
                let o = observe(lab, "matrix", from, to, Proto::Tcp, deadline, true);
                let connected = o.outcome.verdict == crate::topology::model::Verdict::Connected;
                let stopped_after = (!connected)
                    .then(|| {
                        o.request
                            .last()
                            .map(|h| observe::display_point(plan, &h.point))
                    })
                    .flatten();
                Some(match o.error {
                    Some(e) => Err(e),
                    None => Ok(Probed {
                        outcome: o.outcome,
                        stopped_after,
                    }),
                })
            }
            Cell::Cannot(_) => None,
        },
        |_, _| {},
    );
    cells
        .into_iter()
        .zip(outcomes)
        .map(|(mut c, o)| {
            c.outcome = o;
            c
        })
        .collect()
}

/// Who the address the server saw belongs to: `client` (the prober's own
/// address), `node/<n>`, `pod/<ns>/<n>`, `external/<n>`, `slb/<id>`, or the
/// bare address.
fn seen_as(plan: &LabPlan, o: &ProbeOutcome) -> Option<String> {
    let seen = *o.seen_peer?.ip();
    if o.local.is_some_and(|l| *l.ip() == seen) {
        return Some("client".into());
    }
    if let Some(e) = plan.endpoints.iter().find(|e| e.ip == seen) {
        return Some(e.id.to_string());
    }
    if let Some(s) = plan.slbs.iter().find(|s| s.ip == seen) {
        return Some(format!("slb/{}", s.id));
    }
    Some(seen.to_string())
}

fn cell_json(plan: &LabPlan, r: &Result_) -> Value {
    let mut v = json!({ "column": r.col.id(), "label": r.col.label() });
    match (&r.cell, &r.outcome) {
        (Cell::Cannot(why), _) => {
            v["result"] = json!("cannot");
            v["why"] = json!(why);
        }
        (Cell::Probe { from, to, via, .. }, o) => {
            v["from"] = json!(from);
            v["to"] = json!(to);
            v["via"] = json!(via);
            match o {
                Some(Ok(p)) => {
                    let o = &p.outcome;
                    v["result"] = json!(o.verdict.as_str());
                    v["stopped_after"] = json!(p.stopped_after);
                    v["seen"] = json!(o.seen_peer.map(|s| s.ip().to_string()));
                    v["seen_as"] = json!(seen_as(plan, o));
                    v["served_by"] = json!(o.served_by);
                    if !o.detail.is_empty() {
                        v["detail"] = json!(o.detail);
                    }
                }
                Some(Err(e)) => {
                    v["result"] = json!("error");
                    v["detail"] = json!(e);
                }
                None => v["result"] = json!("error"),
            }
        }
    }
    v
}

fn to_json(
    plan: &LabPlan,
    file: &Path,
    sources: &[Source],
    missing: &[String],
    results: &[Result_],
) -> Value {
    let rows: Vec<Value> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "role": s.role,
                "source": s.id,
                "anchor": s.anchor,
                "note": s.note,
                "cells": results.iter().filter(|r| r.source == i)
                    .map(|r| cell_json(plan, r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "topology": plan.name,
        "file": file.display().to_string(),
        "rows": rows,
        "missing_rows": missing,
    })
}

fn cell_text(plan: &LabPlan, row: &Source, r: &Result_) -> String {
    match (&r.cell, &r.outcome) {
        (Cell::Cannot(_), _) => "—".into(),
        (Cell::Probe { from, anchor, .. }, Some(Ok(p))) => {
            let o = &p.outcome;
            let mut s = o.verdict.as_str().to_string();
            if let Some(seen) = o.seen_peer {
                let who = seen_as(plan, o).unwrap_or_default();
                s.push_str(&format!(", saw {} ({who})", seen.ip()));
            }
            if *from != row.id {
                s.push_str(&format!(" *(from {from})*"));
            } else if !anchor.is_empty() && *anchor != row.anchor {
                s.push_str(&format!(" *(to {anchor})*"));
            }
            s
        }
        (_, Some(Err(_))) | (_, None) => "error".into(),
    }
}

fn markdown(plan: &LabPlan, sources: &[Source], missing: &[String], results: &[Result_]) -> String {
    let cols = Column::all();
    let mut out = format!("## Connectivity matrix: {}\n\n", plan.name);
    out.push_str("| source |");
    for c in &cols {
        out.push_str(&format!(" {} |", c.label()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(cols.len()));
    out.push('\n');
    for (i, s) in sources.iter().enumerate() {
        out.push_str(&format!("| {} `{}` (node {}) |", s.role, s.id, s.anchor));
        for r in results.iter().filter(|r| r.source == i) {
            out.push_str(&format!(" {} |", cell_text(plan, s, r)));
        }
        out.push('\n');
    }
    out.push_str("\nCell: outcome of one real TCP probe, and the source address the server saw (whose it is).\n");
    for s in sources {
        out.push_str(&format!("\n- {} `{}`: {}\n", s.role, s.id, s.note));
    }
    out.push_str("\nProbes sent:\n\n");
    for r in results {
        let s = &sources[r.source];
        match (&r.cell, &r.outcome) {
            (Cell::Probe { from, to, .. }, Some(Err(e))) => out.push_str(&format!(
                "- {} × {}: `{from}` → `{to}`: error: {e}\n",
                s.role,
                r.col.label()
            )),
            (Cell::Probe { from, to, .. }, Some(Ok(p))) => {
                let o = &p.outcome;
                let stopped = p
                    .stopped_after
                    .as_deref()
                    .map(|h| format!("; the request was last seen at {h}"))
                    .unwrap_or_default();
                let detail = match (&o.served_by, o.detail.is_empty()) {
                    (_, false) => format!(" ({})", o.detail),
                    (Some(b), true) => format!(", served by {b}"),
                    (None, true) => String::new(),
                };
                out.push_str(&format!(
                    "- {} × {}: `{from}` → `{to}`: {}{detail}{stopped}\n",
                    s.role,
                    r.col.label(),
                    o.verdict.as_str()
                ))
            }
            _ => {}
        }
    }
    let cannot: Vec<_> = results
        .iter()
        .filter_map(|r| match &r.cell {
            Cell::Cannot(why) => Some((r, why)),
            _ => None,
        })
        .collect();
    if !cannot.is_empty() || !missing.is_empty() {
        out.push_str("\nCells this topology cannot form (—):\n\n");
        for m in missing {
            out.push_str(&format!("- row {m}\n"));
        }
        for (r, why) in cannot {
            out.push_str(&format!(
                "- {} × {}: {why}\n",
                sources[r.source].role,
                r.col.label()
            ));
        }
    }
    out
}

fn read_saved(p: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("--expect {}: {e}", p.display()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("--expect {}: not a saved matrix: {e}", p.display()))?;
    if !v["rows"].is_array() {
        return Err(format!(
            "--expect {}: not a saved matrix (no \"rows\"; write one with --save)",
            p.display()
        ));
    }
    Ok(v)
}

/// What a cell asserts: the probe, its outcome, whose address the server
/// saw and who answered.
const COMPARED: [&str; 6] = [
    "from",
    "to",
    "result",
    "seen_as",
    "served_by",
    "stopped_after",
];

/// Every cell (and row) whose compared fields differ, as one line each.
fn differences(saved: &Value, now: &Value) -> Vec<String> {
    let rows = |v: &Value| -> Vec<(String, Value)> {
        v["rows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| (r["role"].as_str().unwrap_or("").to_string(), r.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (rows(saved), rows(now));
    let mut out = Vec::new();
    let show = |c: &Value| -> String {
        COMPARED
            .iter()
            .filter(|k| !c[**k].is_null())
            .map(|k| format!("{k}={}", c[*k]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (role, ra) in &a {
        let Some((_, rb)) = b.iter().find(|(r, _)| r == role) else {
            out.push(format!(
                "row {role}: saved, but this topology forms no such row"
            ));
            continue;
        };
        if ra["source"] != rb["source"] {
            out.push(format!(
                "row {role}: source was {}, now {}",
                ra["source"], rb["source"]
            ));
        }
        let cells = |r: &Value| r["cells"].as_array().cloned().unwrap_or_default();
        let cb = cells(rb);
        for ca in cells(ra) {
            let id = ca["column"].as_str().unwrap_or("");
            let Some(now) = cb.iter().find(|c| c["column"].as_str() == Some(id)) else {
                out.push(format!("{role} × {id}: saved, missing now"));
                continue;
            };
            if COMPARED.iter().any(|k| ca[*k] != now[*k]) {
                out.push(format!(
                    "{role} × {id}: expected {}, observed {}",
                    show(&ca),
                    show(now)
                ));
            }
        }
    }
    for (role, _) in &b {
        if !a.iter().any(|(r, _)| r == role) {
            out.push(format!("row {role}: new (not in the saved matrix)"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_cells_are_named() {
        let saved = json!({"rows": [{"role": "pod", "source": "pod/a/b", "cells": [
            {"column": "pod-ip-same", "to": "pod/a/c:80", "result": "connected", "seen_as": "client"},
            {"column": "lb-local-other", "result": "cannot"}]}]});
        let mut now = saved.clone();
        assert!(differences(&saved, &now).is_empty());
        now["rows"][0]["cells"][0]["result"] = json!("timeout");
        now["rows"][0]["cells"][0]["seen_as"] = Value::Null;
        let d = differences(&saved, &now);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("pod × pod-ip-same: expected "), "{}", d[0]);
        assert!(d[0].contains("result=\"timeout\""), "{}", d[0]);
    }
}
