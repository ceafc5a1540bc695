//! Live progress of a long `cnlab check`: one event per finished
//! expectation, reported on stderr by whoever installed a sink (the CLI).
//! A library user installs none and nothing is printed.

use std::sync::OnceLock;

use super::CheckResult;

type Sink = Box<dyn Fn(&str, &CheckResult) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the process's progress sink (first one wins): called from the
/// probing threads with the topology file and each finished result.
pub fn install(sink: impl Fn(&str, &CheckResult) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// One expectation of `topology` is done.
pub fn finished(topology: &str, r: &CheckResult) {
    if let Some(s) = SINK.get() {
        s(topology, r);
    }
}

/// The one-word outcome progress lines show.
pub fn word(r: &CheckResult) -> &'static str {
    if r.is_na() {
        "n/a"
    } else if r.passed() {
        "ok"
    } else {
        "FAIL"
    }
}
