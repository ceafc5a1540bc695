//! Reports: an aligned table for people, JSON for tools, JUnit XML for CI.

use serde_json::json;

use super::{proto_word, show_journey, CheckResult};

/// One topology file's results.
pub struct FileResults<'a> {
    pub file: &'a str,
    pub lab_id: &'a str,
    pub results: &'a [CheckResult],
    /// Problems that stopped the file before any probe (bad YAML, bring-up).
    pub error: Option<String>,
    /// Pods left pending by the CNI, with their reason.
    pub pending: Vec<String>,
}

fn observed_source(r: &CheckResult) -> String {
    match (r.observed.outcome.seen_peer, r.observed.outcome.local) {
        (Some(seen), Some(local)) if seen.ip() == local.ip() => format!("{} (client)", seen.ip()),
        (Some(seen), _) => seen.ip().to_string(),
        _ => "—".into(),
    }
}

pub fn table(files: &[FileResults]) -> String {
    let mut out = String::new();
    for f in files {
        out.push_str(&format!(
            "== {}{}\n",
            f.file,
            if f.lab_id.is_empty() {
                String::new()
            } else {
                format!("  (lab {})", f.lab_id)
            }
        ));
        if let Some(e) = &f.error {
            out.push_str(&format!("   ERROR {e}\n\n"));
            continue;
        }
        for p in &f.pending {
            out.push_str(&format!("   pending pod {p}\n"));
        }
        let head = [
            "",
            "expectation",
            "from → to",
            "expect",
            "observed",
            "source",
            "served by",
            "time",
        ];
        let rows: Vec<[String; 8]> = f
            .results
            .iter()
            .map(|r| {
                [
                    if r.is_na() {
                        "n/a".into()
                    } else if r.passed() {
                        "ok".into()
                    } else {
                        "FAIL".into()
                    },
                    r.expect.name.clone(),
                    format!(
                        "{} → {} {}",
                        r.expect.from,
                        r.expect.to,
                        proto_word(r.expect.proto)
                    ),
                    r.expect.result.as_str().into(),
                    if r.is_na() {
                        "—".into()
                    } else if r.observed.error.is_some() {
                        "error".into()
                    } else {
                        r.observed.outcome.verdict.as_str().into()
                    },
                    observed_source(r),
                    r.observed
                        .outcome
                        .served_by
                        .clone()
                        .unwrap_or_else(|| "—".into()),
                    format!("{} ms", r.elapsed.as_millis()),
                ]
            })
            .collect();
        let mut w = head.map(|h| h.chars().count());
        for row in &rows {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("  ");
            for (i, c) in cells.iter().enumerate() {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&head.map(String::from)));
        for (row, r) in rows.iter().zip(f.results) {
            out.push_str(&line(row));
            if r.expect.path.is_some() || r.expect.avoids.is_some() {
                out.push_str(&format!("      path: {}\n", show_journey(&r.observed)));
            }
            for fail in &r.failures {
                out.push_str(&format!("      ✗ {fail}\n"));
            }
        }
        let na = f.results.iter().filter(|r| r.is_na()).count();
        let passed = f
            .results
            .iter()
            .filter(|r| r.passed() && !r.is_na())
            .count();
        let na_text = if na > 0 {
            format!(" ({na} n/a for this cluster)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {passed}/{} expectations hold{na_text}\n\n",
            f.results.len() - na
        ));
    }
    let na: usize = files
        .iter()
        .flat_map(|f| f.results.iter())
        .filter(|r| r.is_na())
        .count();
    let total: usize = files.iter().map(|f| f.results.len()).sum::<usize>() - na;
    let passed: usize = files
        .iter()
        .flat_map(|f| f.results.iter())
        .filter(|r| r.passed() && !r.is_na())
        .count();
    let errors = files.iter().filter(|f| f.error.is_some()).count();
    let na_text = if na > 0 {
        format!(", {na} n/a")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{passed} passed, {} failed{na_text}{}\n",
        total - passed,
        if errors > 0 {
            format!(", {errors} file(s) with errors")
        } else {
            String::new()
        }
    ));
    out
}

pub fn json(files: &[FileResults]) -> serde_json::Value {
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            json!({
                "file": f.file,
                "lab": f.lab_id,
                "error": f.error,
                "pending": f.pending,
                "results": f.results.iter().map(|r| json!({
                    "name": r.expect.name,
                    "from": r.expect.from,
                    "to": r.expect.to,
                    "proto": proto_word(r.expect.proto),
                    "expected": r.expect.result.as_str(),
                    "observed": r.observed.outcome.verdict.as_str(),
                    "error": r.observed.error,
                    "detail": r.observed.outcome.detail,
                    "client": r.observed.outcome.local.map(|a| a.to_string()),
                    "source_seen": r.observed.outcome.seen_peer.map(|a| a.to_string()),
                    "served_by": r.observed.outcome.served_by,
                    "request_path": r.observed.request.iter().map(|h| json!({"point": h.point, "vlan": h.vlan, "src": h.src.to_string(), "dst": h.dst.to_string(), "encap": h.encap})).collect::<Vec<_>>(),
                    "reply_path": r.observed.reply.iter().map(|h| json!({"point": h.point, "vlan": h.vlan, "src": h.src.to_string(), "dst": h.dst.to_string(), "encap": h.encap})).collect::<Vec<_>>(),
                    "passed": r.passed() && !r.is_na(),
                    "not_applicable": r.not_applicable,
                    "failures": r.failures,
                    "elapsed_ms": r.elapsed.as_millis() as u64,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "files": files })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn junit(files: &[FileResults]) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cnlab\">\n");
    for f in files {
        let failures = f.results.iter().filter(|r| !r.passed()).count();
        let time: f64 = f.results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">\n",
            xml_escape(f.file),
            f.results.len().max(usize::from(f.error.is_some())),
            failures,
            usize::from(f.error.is_some()),
            time
        ));
        if let Some(e) = &f.error {
            out.push_str(&format!("    <testcase name=\"bring-up\" classname=\"{}\"><error message=\"{}\"/></testcase>\n", xml_escape(f.file), xml_escape(e)));
        }
        for r in f.results {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">",
                xml_escape(&r.expect.name),
                xml_escape(f.file),
                r.elapsed.as_secs_f64()
            ));
            if let Some(why) = &r.not_applicable {
                out.push_str(&format!("<skipped message=\"n/a: {}\"/>", xml_escape(why)));
            } else if !r.passed() {
                out.push_str(&format!(
                    "<failure message=\"{}\"/>",
                    xml_escape(&r.failures.join("; "))
                ));
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
