//! `cnlab gc`: removes what labs whose owner process is gone left behind.

use super::registry::{self, LabRecord, NS_PREFIX};
use crate::kernel::netns;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcReport {
    /// Lab ids removed (dead owner or no record at all).
    pub labs: Vec<String>,
    pub namespaces: usize,
    /// Live labs left alone.
    pub live: Vec<String>,
}

pub fn collect() -> GcReport {
    let mut report = GcReport::default();
    let records = registry::list();
    for r in &records {
        if r.owner_alive() {
            report.live.push(r.id.clone());
            continue;
        }
        let before = netns::list(&format!("{NS_PREFIX}{}-", r.id)).len();
        super::remove_lab_objects(&r.id, &r.namespaces);
        report.namespaces += before;
        report.labs.push(r.id.clone());
    }
    // Namespaces whose lab has no record at all (a record lost mid-teardown).
    for name in netns::list(NS_PREFIX) {
        let Some(id) = lab_id_of(&name) else { continue };
        if report.live.iter().any(|l| l == id) || LabRecord::path(id).exists() {
            continue;
        }
        if netns::delete(&name).is_ok() {
            report.namespaces += 1;
            if !report.labs.iter().any(|l| l == id) {
                report.labs.push(id.to_string());
            }
        }
    }
    // Orphan plan/log files and BPF pin directories.
    if let Ok(dir) = std::fs::read_dir(registry::RUN_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let id = name.split('.').next().unwrap_or_default().to_string();
            if !id.is_empty() && !LabRecord::path(&id).exists() && !report.live.contains(&id) {
                if e.path().is_dir() {
                    // A CNI state directory (`<id>.cni`): DEL what it records first.
                    for f in super::cni::del_all(&id) {
                        tracing::warn!("gc: lab {id}: {f}");
                    }
                    let _ = std::fs::remove_dir_all(e.path());
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(registry::BPF_PIN_DIR) {
        for e in dir.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            if !report.live.contains(&id) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    report
}

/// `cnl-<id>-<short>` → `<id>`.
pub fn lab_id_of(ns_name: &str) -> Option<&str> {
    let rest = ns_name.strip_prefix(NS_PREFIX)?;
    let id = rest.split('-').next()?;
    (id.len() == 6 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}
