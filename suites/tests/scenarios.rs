//! One lab test per shipped topology: bring it up, probe every expectation
//! with real packets, tear it down. Needs root (`sudo -E cargo test`).

use std::path::PathBuf;

use cnlab::check::file::check_file;
use cnlab::check::report::{self, FileResults};
use cnlab::lab::UpOptions;
use rstest::rstest;

fn run(path: PathBuf) {
    let o = check_file(&path, &UpOptions::default(), 8);
    let view = FileResults {
        file: &o.file,
        lab_id: &o.lab_id,
        results: &o.results,
        error: o.error.clone(),
        pending: o.pending.clone(),
        not_modelled: o.not_modelled.clone(),
    };
    let table = report::table(&[view]);
    println!("{table}");
    if let Some(e) = &o.error {
        panic!("{}: {e}", path.display());
    }
    assert!(
        !o.results.is_empty(),
        "{}: the topology states no expectation",
        path.display()
    );
    assert!(
        o.passed(),
        "{}: expectations failed:\n{table}",
        path.display()
    );
}

#[rstest]
fn scenario(
    #[base_dir = "../topologies/scenarios"]
    #[files("*.yaml")]
    path: PathBuf,
) {
    run(path);
}

#[rstest]
fn example(
    #[base_dir = "../topologies/examples"]
    #[files("*.yaml")]
    path: PathBuf,
) {
    run(path);
}

/// Faults declared in YAML (`impairments`, `events`, `after`): each file
/// holds the verdicts before and after its events, so a fault that did not
/// happen fails it.
#[rstest]
fn fault(
    #[base_dir = "../topologies/faults"]
    #[files("*.yaml")]
    path: PathBuf,
) {
    run(path);
}
