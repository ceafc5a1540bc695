//! One topology file from YAML to results: load, validate, bring up, probe,
//! tear down. Shared by `cnlab check` and the integration suites.

use std::path::Path;
use std::time::{Duration, Instant};

use super::CheckResult;
use crate::lab::{Lab, LabError, UpOptions};
use crate::plan::agent::plugins::CNI_ADD_FAILED;
use crate::topology::{Loaded, Problem};

pub struct FileOutcome {
    pub file: String,
    pub lab_id: String,
    pub results: Vec<CheckResult>,
    /// Why the file produced no results (bad input, bring-up failure).
    pub error: Option<String>,
    /// The error came from the environment (not root, missing kernel feature):
    /// exit code 2 rather than 1.
    pub environment: bool,
    pub warnings: Vec<Problem>,
    pub pending: Vec<String>,
    /// What the file says that decides nothing in the lab (fields and
    /// objects not modelled), so the report shows what its verdicts ignore.
    pub not_modelled: Vec<String>,
    pub up_time: Duration,
    pub check_time: Duration,
    pub down_time: Duration,
}

impl FileOutcome {
    /// A file that produced no results because of `error`.
    pub fn failed(path: &Path, error: String, environment: bool) -> FileOutcome {
        FileOutcome {
            file: path.display().to_string(),
            lab_id: String::new(),
            results: vec![],
            error: Some(error),
            environment,
            warnings: vec![],
            pending: vec![],
            not_modelled: vec![],
            up_time: Duration::ZERO,
            check_time: Duration::ZERO,
            down_time: Duration::ZERO,
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && self.results.iter().all(|r| r.passed()) && !self.cni_failed()
    }

    /// A pod whose CNI plugin chain failed (`cni: plugins`) fails the file,
    /// as a pod stuck in ContainerCreating would.
    pub fn cni_failed(&self) -> bool {
        self.pending.iter().any(|p| p.contains(CNI_ADD_FAILED))
    }
}

/// The words every "decides nothing here" warning and plan note carries.
pub const NOT_MODELLED: &str = "not modelled";

pub fn check_file(path: &Path, opts: &UpOptions, parallel: usize) -> FileOutcome {
    check_loaded(path, super::input::load_planned(path), opts, parallel)
}

/// As `check_file`, for a file the caller has loaded already.
pub fn check_loaded(
    path: &Path,
    loaded: Result<Loaded, crate::topology::Report>,
    opts: &UpOptions,
    parallel: usize,
) -> FileOutcome {
    check_keeping(path, loaded, opts, parallel, false, None).0
}

/// As `check_loaded`; with `keep_failed`, a lab whose expectations did not
/// all hold is handed back still up (for `check --keep`) instead of torn
/// down.
pub fn check_keeping(
    path: &Path,
    loaded: Result<Loaded, crate::topology::Report>,
    opts: &UpOptions,
    parallel: usize,
    keep_failed: bool,
    pcap: Option<&Path>,
) -> (FileOutcome, Option<Lab>) {
    let file = path.display().to_string();
    let mut out = FileOutcome::failed(path, String::new(), false);
    out.error = None;
    let Loaded {
        resolved, warnings, ..
    } = match loaded {
        Ok(l) => l,
        Err(report) => {
            out.error = Some(report.to_string());
            return (out, None);
        }
    };
    out.not_modelled = warnings
        .iter()
        .filter(|w| w.to_string().contains(NOT_MODELLED))
        .map(|w| w.to_string())
        .collect();
    out.warnings = warnings;
    let opts = UpOptions {
        file: Some(file),
        ..opts.clone()
    };
    let t = Instant::now();
    let mut lab = match Lab::up(&resolved, &opts) {
        Ok(l) => l,
        Err(e) => {
            out.environment = matches!(e, LabError::NotRoot | LabError::Backend(_));
            out.error = Some(e.to_string());
            return (out, None);
        }
    };
    out.up_time = t.elapsed();
    out.lab_id = lab.id().to_string();
    out.pending = lab
        .plan()
        .pending
        .iter()
        .map(|p| format!("{}: {}", p.pod, p.reason))
        .collect();
    out.not_modelled.extend(
        lab.plan()
            .notes
            .iter()
            .filter(|n| n.contains(NOT_MODELLED))
            .cloned(),
    );
    let t = Instant::now();
    let run = super::RunOptions {
        pcap: pcap.map(Path::to_path_buf),
        topology: out.file.clone(),
    };
    out.results = super::steps::run_steps(&mut lab, &resolved.topo.expect, parallel, &run);
    out.check_time = t.elapsed();
    if keep_failed && !out.passed() {
        return (out, Some(lab));
    }
    let t = Instant::now();
    lab.down();
    out.down_time = t.elapsed();
    (out, None)
}

/// Topology files named by the arguments: files as given, directories
/// expanded to their `*.yaml`/`*.yml` files (sorted). A directory that holds
/// no topology but subdirectories (`topologies/conformance`) expands to
/// theirs, recursively; a directory with topologies of its own does not
/// descend (`topologies/faults/netem` needs real netem and is named on its own).
pub fn expand_paths(args: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let v = dir_topologies(a)?;
            if v.is_empty() {
                return Err(format!(
                    "{}: no *.yaml topology in this directory or its subdirectories",
                    a.display()
                ));
            }
            files.extend(v);
        } else if a.exists() {
            files.push(a.clone());
        } else {
            return Err(format!("{}: no such file", a.display()));
        }
    }
    Ok(files)
}

fn dir_topologies(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let own: Vec<_> = entries
        .iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .cloned()
        .collect();
    if !own.is_empty() {
        return Ok(own);
    }
    let mut out = Vec::new();
    for sub in entries.iter().filter(|p| p.is_dir()) {
        out.extend(dir_topologies(sub)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand_paths;
    use std::path::PathBuf;

    #[test]
    fn a_directory_of_directories_expands_to_theirs_and_one_with_topologies_does_not_descend() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topologies");
        let conf = expand_paths(&[root.join("conformance")]).unwrap();
        assert!(!conf.is_empty());
        assert!(conf
            .iter()
            .all(|f| f.starts_with(root.join("conformance/kube-proxy"))));
        let faults = expand_paths(&[root.join("faults")]).unwrap();
        assert!(!faults.is_empty());
        assert!(faults
            .iter()
            .all(|f| f.parent() == Some(root.join("faults").as_path())));
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("sub")).unwrap();
        let e = expand_paths(&[empty.path().to_path_buf()]).unwrap_err();
        assert!(e.contains("no *.yaml topology"), "{e}");
    }
}
