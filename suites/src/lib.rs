//! Helpers the integration suites share; the suites themselves live in tests/.

use std::path::{Path, PathBuf};

use cnlab::kernel::nft;
use cnlab::lab::Lab;
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

/// Deletes, in namespace `key`, every rule of `table` whose comment is `comment`.
pub fn delete_nft_rules(lab: &Lab, key: &str, table: &str, comment: &str) {
    let ns = lab
        .netns_by_key(key)
        .unwrap_or_else(|| panic!("{key} planned"));
    let rules = nft::list_ruleset_json(ns).unwrap_or_else(|e| panic!("{e}"));
    let mut script = String::new();
    for r in rules["nftables"].as_array().into_iter().flatten() {
        let r = &r["rule"];
        if r["table"] == table && r["comment"] == comment {
            script += &format!(
                "delete rule ip {table} {} handle {}\n",
                r["chain"].as_str().unwrap_or_default(),
                r["handle"]
            );
        }
    }
    assert!(!script.is_empty(), "{key}: no rule {comment:?} in {table}");
    nft::apply(ns, &script).unwrap_or_else(|e| panic!("{e}"));
}
