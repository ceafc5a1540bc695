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
    // Scratch namespaces named after their process (`cnl-t<pid>-…` from the
    // test suites, `cnl-b<pid>…` from bench baselines, `cnl-doctor-<pid>-…`
    // from capability probes): a SIGKILLed process cannot delete its own.
    for name in netns::list(NS_PREFIX) {
        if let Some(pid) = scratch_owner_of(&name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists()
                && netns::delete(&name).is_ok()
            {
                report.namespaces += 1;
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

/// The process a scratch namespace belongs to: `cnl-t<pid>-…`,
/// `cnl-b<pid>…` or `cnl-doctor-<pid>-…`.
pub fn scratch_owner_of(ns_name: &str) -> Option<u32> {
    // A lab's namespace (`cnl-<six hex>-…`, e.g. `cnl-b12345-node1`) is
    // never a scratch one, whatever its id looks like.
    if lab_id_of(ns_name).is_some() {
        return None;
    }
    let rest = ns_name.strip_prefix(NS_PREFIX)?;
    let digits = rest
        .strip_prefix("doctor-")
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix('b'))?;
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok().filter(|&pid: &u32| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_namespaces_name_their_process_and_labs_do_not() {
        assert_eq!(scratch_owner_of("cnl-t31796-bt-hv"), Some(31796));
        assert_eq!(scratch_owner_of("cnl-b812mn-0"), Some(812));
        assert_eq!(scratch_owner_of("cnl-doctor-77-0"), Some(77));
        // A lab id is six hex digits: never read as a pid.
        assert_eq!(scratch_owner_of("cnl-1a2b3c-node1"), None);
        assert_eq!(scratch_owner_of("cnl-b0c1d2-pod3"), None);
        assert_eq!(scratch_owner_of("cnl-b12345-node1"), None);
        assert_eq!(scratch_owner_of("cnl-t"), None);
    }
}
