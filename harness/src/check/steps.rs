//! A topology with `events:` is checked step by step: the expectations
//! without `after` first, then each event in turn followed by the
//! expectations that name it. Results keep the file's order.

use super::{run_with, CheckResult, RunOptions};
use crate::lab::Lab;
use crate::topology::model::Expectation;

/// Checks `expects` against `lab`, applying the lab's planned events in
/// order between the steps. An event that cannot be applied fails every
/// expectation from its step on (no later event is attempted).
pub fn run_steps(
    lab: &mut Lab,
    expects: &[Expectation],
    parallel: usize,
    opts: &RunOptions,
) -> Vec<CheckResult> {
    let events: Vec<String> = lab.plan().events.iter().map(|e| e.name.clone()).collect();
    // Step 0: before any event; step k: after event k-1.
    let step_of = |e: &Expectation| match &e.after {
        None => Some(0),
        Some(name) => events.iter().position(|n| n == name).map(|k| k + 1),
    };
    let mut out: Vec<(usize, CheckResult)> = Vec::new();
    let last = expects.iter().filter_map(step_of).max().unwrap_or(0);
    let mut broken: Option<String> = None;
    for step in 0..=last {
        if step > 0 && broken.is_none() {
            if let Err(e) = lab.apply_event(step - 1) {
                broken = Some(e.to_string());
            }
        }
        let here: Vec<(usize, &Expectation)> = expects
            .iter()
            .enumerate()
            .filter(|(_, e)| step_of(e) == Some(step))
            .collect();
        if here.is_empty() {
            continue;
        }
        let results = match &broken {
            Some(why) => here
                .iter()
                .map(|(_, e)| super::failed_before_probe(e, why.clone()))
                .collect(),
            None => {
                let list: Vec<Expectation> = here.iter().map(|(_, e)| (*e).clone()).collect();
                run_with(lab, &list, parallel, opts)
            }
        };
        out.extend(here.iter().map(|(i, _)| *i).zip(results));
    }
    // `after` naming no event of the lab (the validator reports it first).
    for (i, e) in expects.iter().enumerate() {
        if step_of(e).is_none() {
            let why = format!(
                "after {:?}: no such event",
                e.after.as_deref().unwrap_or("")
            );
            out.push((i, super::failed_before_probe(e, why)));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
