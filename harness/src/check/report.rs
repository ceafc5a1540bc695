//! Reports: an aligned table for people, JSON for tools, JUnit XML for CI.

use serde_json::json;

use super::style::Style;
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
    /// Fields and objects of the file that decide nothing in the lab.
    pub not_modelled: Vec<String>,
}

fn observed_source(r: &CheckResult) -> String {
    match (r.observed.outcome.seen_peer, r.observed.outcome.local) {
        (Some(seen), Some(local)) if seen.ip() == local.ip() => format!("{} (client)", seen.ip()),
        (Some(seen), _) => seen.ip().to_string(),
        _ => "—".into(),
    }
}

pub fn table(files: &[FileResults]) -> String {
    table_styled(files, Style::PLAIN)
}

/// As `table`, with `style`'s colours (a terminal: `Style::for_stdout`).
pub fn table_styled(files: &[FileResults], style: Style) -> String {
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
            out.push_str(&format!("   {} {e}\n\n", style.bad("ERROR")));
            continue;
        }
        for p in &f.pending {
            out.push_str(&format!("   pending pod {p}\n"));
        }
        for n in &f.not_modelled {
            out.push_str(&format!("   not modelled (decides nothing here): {n}\n"));
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
                    } else {
                        match r.observed.outcome.refused_by {
                            Some(by) if r.observed.error.is_none() => {
                                format!("{} ({})", observed_word(r), by.as_str())
                            }
                            _ => observed_word(r).into(),
                        }
                    },
                    observed_source(r),
                    if r.observed.repeats.is_empty() {
                        r.observed
                            .outcome
                            .served_by
                            .clone()
                            .unwrap_or_else(|| "—".into())
                    } else {
                        super::repeat::show_answered(&super::repeat::answered_by(&r.observed))
                    },
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
            let text = line(row);
            // Padding was measured on the plain word: paint it afterwards.
            let status = &row[0];
            let painted = if r.is_na() {
                style.dim(status)
            } else if r.passed() {
                style.good(status)
            } else {
                style.bad(status)
            };
            out.push_str(&text.replacen(status.as_str(), &painted, 1));
            let asked = r.expect.path.is_some() || r.expect.avoids.is_some();
            if asked && (r.passed() || r.explanation.is_none()) {
                out.push_str(&format!("      path: {}\n", show_journey(&r.observed)));
            }
            for fail in &r.failures {
                out.push_str(&format!("      {} {fail}\n", style.bad("✗")));
            }
            for l in r.explanation.iter().flat_map(|x| x.lines()) {
                out.push_str(&format!("        {l}\n"));
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
                "not_modelled": f.not_modelled,
                "results": f.results.iter().map(|r| json!({
                    "name": r.expect.name,
                    "from": r.expect.from,
                    "to": r.expect.to,
                    "proto": proto_word(r.expect.proto),
                    "expected": r.expect.result.as_str(),
                    "observed": observed_word(r),
                    "error": r.observed.error,
                    "detail": r.observed.outcome.detail,
                    "client": r.observed.outcome.local.map(|a| a.to_string()),
                    "source_seen": r.observed.outcome.seen_peer.map(|a| a.to_string()),
                    "served_by": r.observed.outcome.served_by,
                    "refused_by": r.observed.outcome.refused_by.map(|b| b.as_str()),
                    "probes": r.observed.repeats.len() + 1,
                    "answered_by": super::repeat::answered_by(&r.observed),
                    "request_path": r.observed.request.iter().map(|h| json!({"point": h.point, "at": h.label(&h.point), "vlan": h.vlan, "src": h.src.to_string(), "dst": h.dst.to_string(), "encap": h.encap})).collect::<Vec<_>>(),
                    "reply_path": r.observed.reply.iter().map(|h| json!({"point": h.point, "at": h.label(&h.point), "vlan": h.vlan, "src": h.src.to_string(), "dst": h.dst.to_string(), "encap": h.encap})).collect::<Vec<_>>(),
                    "passed": r.passed() && !r.is_na(),
                    "not_applicable": r.not_applicable,
                    "failures": r.failures,
                    "explanation": r.explanation.as_ref().map(|x| x.json()),
                    "elapsed_ms": r.elapsed.as_millis() as u64,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "files": files })
}

/// What the probe observed, `error` when it could not run (never a fake
/// `timeout`), `n/a` when it did not apply.
pub fn observed_word(r: &CheckResult) -> &'static str {
    use crate::topology::model::Verdict;
    if r.is_na() {
        "n/a"
    } else if r.observed.error.is_some() {
        "error"
    } else if r.expect.result == Verdict::Pending && r.observed.outcome.verdict != Verdict::Pending
    {
        "running"
    } else {
        r.observed.outcome.verdict.as_str()
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\t' | '\r' => out.push(c),
            // XML 1.0 has no way to carry other control characters.
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The first line of a possibly multi-line message (for `message=`; the
/// whole text goes into the element's body).
fn headline(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, as the JUnit schema wants it (no zone).
fn timestamp(t: std::time::SystemTime) -> String {
    crate::clock::Utc::of(t).iso_seconds()
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The body of a failing test case: every failure, then how the packets
/// went.
pub fn explanation(r: &CheckResult) -> String {
    let mut out = String::new();
    for f in &r.failures {
        out.push_str(f);
        out.push('\n');
    }
    match &r.explanation {
        Some(x) => {
            for l in x.lines() {
                out.push_str(&l);
                out.push('\n');
            }
        }
        None if r.observed.error.is_none() => {
            out.push_str(&format!("path: {}\n", show_journey(&r.observed)));
        }
        None => {}
    }
    out
}

/// JUnit XML valid against the strict (windyroad) JUnit schema, with the
/// Jenkins `skipped` element for expectations that do not apply: every
/// suite has its `properties`, `system-out` and `system-err`, a timestamp
/// and host; a file that could not be read or brought up is an `error` test
/// case; a failing expectation is a `failure` whose body explains it.
pub fn junit(files: &[FileResults]) -> String {
    let stamp = timestamp(std::time::SystemTime::now());
    let host = xml_escape(&hostname());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (id, f) in files.iter().enumerate() {
        let errored = f
            .results
            .iter()
            .filter(|r| r.observed.error.is_some())
            .count();
        let failures = f
            .results
            .iter()
            .filter(|r| !r.passed() && r.observed.error.is_none())
            .count();
        let skipped = f.results.iter().filter(|r| r.is_na()).count();
        let time: f64 = f.results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let file = xml_escape(f.file);
        out.push_str(&format!(
            "  <testsuite name=\"{file}\" package=\"cnlab\" id=\"{id}\" timestamp=\"{stamp}\" hostname=\"{host}\" \
             tests=\"{}\" failures=\"{failures}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
            f.results.len() + usize::from(f.error.is_some()),
            errored + usize::from(f.error.is_some()),
        ));
        out.push_str(&format!(
            "    <properties>\n      <property name=\"lab\" value=\"{}\"/>\n    </properties>\n",
            xml_escape(f.lab_id)
        ));
        if let Some(e) = &f.error {
            out.push_str(&format!(
                "    <testcase name=\"load and bring up\" classname=\"{file}\" time=\"0\"><error message=\"{}\" type=\"cnlab.file\">{}</error></testcase>\n",
                xml_escape(headline(e)),
                xml_escape(e)
            ));
        }
        for r in f.results {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{file}\" time=\"{:.3}\">",
                xml_escape(&r.expect.name),
                r.elapsed.as_secs_f64()
            ));
            if let Some(why) = &r.not_applicable {
                out.push_str(&format!(
                    "<skipped type=\"n/a\">{}</skipped>",
                    xml_escape(why)
                ));
            } else if let Some(err) = &r.observed.error {
                out.push_str(&format!(
                    "<error message=\"{}\" type=\"cnlab.probe\">{}</error>",
                    xml_escape(headline(err)),
                    xml_escape(&explanation(r))
                ));
            } else if !r.passed() {
                out.push_str(&format!(
                    "<failure message=\"{}\" type=\"cnlab.expectation\">{}</failure>",
                    xml_escape(&r.failures.join("; ")),
                    xml_escape(&explanation(r))
                ));
            }
            out.push_str("</testcase>\n");
        }
        let mut text = String::new();
        for p in &f.pending {
            text.push_str(&format!("pending pod {p}\n"));
        }
        out.push_str(&format!(
            "    <system-out>{}</system-out>\n    <system-err/>\n  </testsuite>\n",
            xml_escape(&text)
        ));
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_without_zone() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_577_200);
        assert_eq!(super::timestamp(t), "2025-12-01T08:20:00");
        assert_eq!(
            super::timestamp(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00"
        );
    }
}
