//! Benchmark results: every sample kept, medians and ratios shown in an
//! aligned table, everything as JSON for machines.

use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

use super::mininet::Mininet;
use super::Tool;
use crate::plan::LabPlan;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn here() -> Machine {
        let nproc = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            nproc,
            mem_total_kib,
            kernel,
        }
    }
}

/// One phase of a case: milliseconds per run, per tool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub phase: String,
    pub cnlab_ms: Vec<f64>,
    pub mininet_ms: Vec<f64>,
    pub floor_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub case: String,
    pub namespaces: usize,
    pub veths: usize,
    /// Expectations probed per cnlab run, and how many of the last run
    /// connected / held.
    pub probes: usize,
    pub connected: usize,
    pub passed: usize,
    pub first_failure: Option<String>,
    pub mininet_pings: usize,
    pub mininet_loss_percent: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    /// Most descriptors open at once during cnlab runs (sampled every 100 ms).
    pub peak_fds: Option<usize>,
    /// Times the kernel's shared ARP table overflowed during cnlab runs.
    pub arp_table_fulls: u64,
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

impl CaseReport {
    pub fn new(case: &str, plan: &LabPlan) -> CaseReport {
        CaseReport {
            case: case.into(),
            namespaces: plan.namespaces.len(),
            veths: plan.veths.len(),
            probes: 0,
            connected: 0,
            passed: 0,
            first_failure: None,
            mininet_pings: 0,
            mininet_loss_percent: None,
            peak_rss_kib: None,
            peak_fds: None,
            arp_table_fulls: 0,
            notes: Vec::new(),
            rows: Vec::new(),
        }
    }

    pub fn add(&mut self, phase: &str, tool: Tool, d: Duration) {
        let i = match self.rows.iter().position(|r| r.phase == phase) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    phase: phase.into(),
                    ..Default::default()
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        let v = d.as_secs_f64() * 1000.0;
        match tool {
            Tool::Cnlab => row.cnlab_ms.push(v),
            Tool::Mininet => row.mininet_ms.push(v),
            Tool::Floor => row.floor_ms.push(v),
        }
    }

    pub fn row(&self, phase: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.phase == phase)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub repeat: usize,
    /// Mininet's version, or why it did not run.
    pub mininet: String,
    /// The host's cap on ARP entries over all namespaces.
    pub arp_gc_thresh3: Option<u64>,
    pub cases: Vec<CaseReport>,
}

/// The middle sample (mean of the two middle ones for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

fn cell_ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
        _ => "-".into(),
    }
}

impl BenchReport {
    pub fn new(repeat: usize, mininet: Option<&Result<Mininet, String>>) -> BenchReport {
        let mininet = match mininet {
            None => "not run".into(),
            Some(Ok(m)) => format!("mininet {} ({})", m.version, m.python),
            Some(Err(why)) => why.clone(),
        };
        BenchReport {
            machine: Machine::here(),
            repeat,
            mininet,
            arp_gc_thresh3: super::arp_gc_thresh3(),
            cases: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Medians in milliseconds; `vs mininet` = Mininet ÷ cnlab (how many
    /// times faster cnlab is), `vs floor` = cnlab ÷ floor (how far above
    /// the kernel's cheapest).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine: {} cpus, {:.1} GiB, kernel {}; medians of {} run(s), ms",
            m.nproc,
            m.mem_total_kib as f64 / 1024.0 / 1024.0,
            m.kernel,
            self.repeat
        );
        let _ = writeln!(out, "{}", self.mininet);
        let header = [
            "case",
            "phase",
            "cnlab",
            "mininet",
            "floor",
            "vs mininet",
            "vs floor",
        ];
        let mut lines: Vec<[String; 7]> = Vec::new();
        for c in &self.cases {
            for r in &c.rows {
                let (a, b, f) = (
                    median(&r.cnlab_ms),
                    median(&r.mininet_ms),
                    median(&r.floor_ms),
                );
                lines.push([
                    c.case.clone(),
                    r.phase.clone(),
                    cell_ms(a),
                    cell_ms(b),
                    cell_ms(f),
                    ratio(b, a),
                    ratio(a, f),
                ]);
            }
        }
        let width = |i: usize| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..7).map(width).collect();
        let fmt = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i < 2 {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                }
                s.push_str("  ");
            }
            s.trim_end().to_string()
        };
        let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let _ = writeln!(out, "{}", fmt(&head));
        let mut last_case = String::new();
        for l in &lines {
            let mut cells = l.clone();
            if cells[0] == last_case {
                cells[0] = String::new();
            } else {
                last_case = cells[0].clone();
            }
            let _ = writeln!(out, "{}", fmt(&cells));
        }
        for c in &self.cases {
            let mut facts = vec![
                format!("{} namespaces, {} veths", c.namespaces, c.veths),
                format!(
                    "probes {}/{} connected, {} held",
                    c.connected, c.probes, c.passed
                ),
            ];
            if c.mininet_pings > 0 {
                facts.push(format!(
                    "mininet {} pings, {}% lost",
                    c.mininet_pings,
                    c.mininet_loss_percent.unwrap_or(100.0)
                ));
            }
            if let Some(kib) = c.peak_rss_kib {
                facts.push(format!("peak RSS {:.0} MiB", kib as f64 / 1024.0));
            }
            if let Some(n) = c.peak_fds {
                facts.push(format!("peak open fds {n}"));
            }
            if c.arp_table_fulls > 0 {
                facts.push(format!(
                    "ARP table full {} times (host gc_thresh3 = {}, shared by every namespace)",
                    c.arp_table_fulls,
                    self.arp_gc_thresh3.map_or("?".into(), |v| v.to_string())
                ));
            }
            facts.extend(c.notes.iter().cloned());
            let _ = writeln!(out, "{}: {}", c.case, facts.join("; "));
            if let Some(f) = &c.first_failure {
                let _ = writeln!(out, "  first failure: {f}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_show_missing_sides_as_dashes() {
        assert_eq!(ratio(Some(10.0), Some(2.0)), "5.0×");
        assert_eq!(ratio(None, Some(2.0)), "-");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "-");
    }
}
