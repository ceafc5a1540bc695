//! Expectations answered by several probes: `served_by: [pod/a, pod/b]`
//! (repeated probes reach every listed backend and nothing else), `sticky`
//! (every probe answered by the same backend: session affinity) and
//! `repeat: N`. Each probe is its own connection from its own source port,
//! so a scheduler spreading connections (IPVS `rr`, iptables `random`)
//! spreads them.

use std::collections::BTreeMap;

use super::Observation;
use crate::probe::ProbeOutcome;
use crate::topology::model::{Expectation, Verdict, DEFAULT_REPEAT};

/// Probes for `e`: `repeat` as written; otherwise enough that a scheduler
/// picking uniformly at random (iptables mode's `statistic random`) misses
/// one of `k` listed backends with probability below 1e-4
/// (k·((k−1)/k)^n < 1e-4), and at least `DEFAULT_REPEAT`; 1 for a plain
/// expectation.
pub fn probes_for(e: &Expectation) -> u32 {
    if let Some(n) = e.repeat {
        return n.max(1);
    }
    let k = e.served_by.as_ref().map_or(0, |l| l.len());
    if k >= 2 {
        let k = k as f64;
        let n = ((k / 1e-4).ln() / (k / (k - 1.0)).ln()).ceil() as u32;
        return n.max(DEFAULT_REPEAT);
    }
    if e.sticky == Some(true) {
        return DEFAULT_REPEAT;
    }
    1
}

/// `pod/a ×5, pod/b ×3` (and `nobody ×N` for probes nobody answered).
pub fn answered_by(o: &Observation) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for out in o.outcomes() {
        let who = out.served_by.clone().unwrap_or_else(|| "nobody".into());
        *m.entry(who).or_insert(0) += 1;
    }
    m
}

pub fn show_answered(m: &BTreeMap<String, u32>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the repeated probes got wrong (the first probe's verdict and
/// refusal are compared by the caller; who served is judged over all).
pub fn compare(e: &Expectation, o: &Observation) -> Vec<String> {
    let mut f = Vec::new();
    let total = o.repeats.len() + 1;
    let wrong: Vec<(usize, &ProbeOutcome)> = o
        .outcomes()
        .enumerate()
        .skip(1)
        .filter(|(_, out)| out.verdict != e.result)
        .collect();
    if let Some((i, out)) = wrong.first() {
        f.push(format!(
            "{} of {total} probes were not {}: probe {} was {} ({})",
            wrong.len(),
            e.result.as_str(),
            i + 1,
            out.verdict.as_str(),
            out.detail
        ));
    }
    if e.result == Verdict::Connected {
        let by = answered_by(o);
        if let Some(want) = &e.served_by {
            let single = want.len() == 1 && total == 1;
            if !single {
                let extra: Vec<&String> = by.keys().filter(|k| !want.contains(k)).collect();
                let missing: Vec<&String> = want.iter().filter(|w| !by.contains_key(*w)).collect();
                if !extra.is_empty() || !missing.is_empty() {
                    let mut why = Vec::new();
                    if !missing.is_empty() {
                        why.push(format!(
                            "never reached {}",
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if !extra.is_empty() {
                        why.push(format!(
                            "also answered by {}",
                            extra
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    f.push(format!(
                        "expected served by exactly {} over {total} probes: {}; observed {}",
                        want.join(", "),
                        why.join("; "),
                        show_answered(&by)
                    ));
                }
            }
        }
        if e.sticky == Some(true) && by.len() > 1 {
            f.push(format!(
                "expected one backend for all {total} probes (affinity), observed {}",
                show_answered(&by)
            ));
        }
    }
    if let (Some(want), Verdict::Refused) = (e.refused_by, e.result) {
        // The first probe's refusal is compared by the caller.
        let other: Vec<String> = o
            .outcomes()
            .skip(1)
            .filter(|out| out.verdict == Verdict::Refused && out.refused_by != Some(want))
            .map(|out| {
                out.refused_by
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into())
            })
            .collect();
        if let Some(got) = other.first() {
            f.push(format!(
                "expected refused by {}, refused by {got}",
                want.as_str()
            ));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(served: &[&str], repeat: Option<u32>, sticky: bool) -> Expectation {
        Expectation {
            served_by: (!served.is_empty()).then(|| served.iter().map(|s| s.to_string()).collect()),
            repeat,
            sticky: sticky.then_some(true),
            ..Expectation::new("t", "pod/a/c", "service/a/s:80", Verdict::Connected)
        }
    }

    fn obs(by: &[&str]) -> Observation {
        let out = |b: &str| ProbeOutcome {
            verdict: Verdict::Connected,
            served_by: Some(b.into()),
            ..ProbeOutcome::timeout("")
        };
        Observation {
            outcome: out(by[0]),
            dst: None,
            request: vec![],
            reply: vec![],
            error: None,
            display: Default::default(),
            repeats: by[1..].iter().map(|b| out(b)).collect(),
        }
    }

    #[test]
    fn default_repeat_makes_a_random_miss_unlikely() {
        assert_eq!(probes_for(&exp(&["pod/a/x"], None, false)), 1);
        assert_eq!(probes_for(&exp(&["pod/a/x", "pod/a/y"], None, false)), 15);
        assert_eq!(probes_for(&exp(&["a", "b", "c"], None, false)), 26);
        assert_eq!(probes_for(&exp(&[], None, true)), DEFAULT_REPEAT);
        assert_eq!(probes_for(&exp(&["a", "b"], Some(4), false)), 4);
    }

    #[test]
    fn every_listed_backend_and_nothing_else() {
        let e = exp(&["pod/a/x", "pod/a/y"], Some(4), false);
        assert!(compare(&e, &obs(&["pod/a/x", "pod/a/y", "pod/a/x", "pod/a/y"])).is_empty());
        let f = compare(&e, &obs(&["pod/a/x", "pod/a/x", "pod/a/x", "pod/a/x"]));
        assert!(f[0].contains("never reached pod/a/y"), "{f:?}");
        let f = compare(&e, &obs(&["pod/a/x", "pod/a/y", "pod/a/z", "pod/a/y"]));
        assert!(f[0].contains("also answered by pod/a/z"), "{f:?}");
    }

    #[test]
    fn sticky_means_one_backend() {
        let e = exp(&[], Some(3), true);
        assert!(compare(&e, &obs(&["pod/a/x", "pod/a/x", "pod/a/x"])).is_empty());
        let f = compare(&e, &obs(&["pod/a/x", "pod/a/y", "pod/a/x"]));
        assert!(f[0].contains("affinity"), "{f:?}");
    }
}
