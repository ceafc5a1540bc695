//! Helpers the integration suites share; the suites themselves live in tests/.

use std::path::{Path, PathBuf};

use cnlab::topology::{load_file, Resolved};

/// `topologies/<rel>` of this repository.
pub fn topology_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(rel)
}

/// Loads and validates `topologies/<rel>`; a shipped file that does not
/// load is a test failure with the loader's full report.
pub fn topology(rel: &str) -> Resolved {
    match load_file(&topology_path(rel)) {
        Ok(l) => l.resolved,
        Err(r) => panic!("{r}"),
    }
}
