//! The lab registry under `/run/cnlab`: one record per lab, written before
//! the lab creates anything, so that `cnlab gc` can always find what a dead
//! lab (killed with SIGKILL, a panicking test) left behind.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::plan::LabPlan;

pub const RUN_DIR: &str = "/run/cnlab";
/// Every lab namespace is named `cnl-<lab id>-<short>`.
pub const NS_PREFIX: &str = "cnl-";
/// Where a lab would pin BPF objects; `gc` removes `<this>/<lab id>`.
pub const BPF_PIN_DIR: &str = "/sys/fs/bpf/cnlab";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabRecord {
    pub id: String,
    /// Topology name.
    pub name: String,
    /// Topology file, if the lab came from one.
    pub file: Option<String>,
    pub owner_pid: u32,
    /// Owner start time (clock ticks since boot, `/proc/<pid>/stat` field 22):
    /// tells a live owner from a recycled PID.
    pub owner_start: u64,
    pub created_unix: u64,
    /// `starting` | `ready` | `stopping`
    pub state: String,
    /// Kernel names of the lab's namespaces.
    pub namespaces: Vec<String>,
}

impl LabRecord {
    pub fn path(id: &str) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.json"))
    }
    pub fn plan_path(id: &str) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.plan.json"))
    }
    pub fn log_path(id: &str) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.log"))
    }
    /// A request for the lab's keeper (one line, e.g. `restart pod/ns/name`).
    pub fn request_path(id: &str) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.request"))
    }
    /// The keeper's answer to the request.
    pub fn reply_path(id: &str) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.reply"))
    }

    /// Writes the record atomically (temp file + rename).
    pub fn save(&self) -> std::io::Result<()> {
        write_atomic(
            &Self::path(&self.id),
            &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )
    }

    pub fn load(id: &str) -> std::io::Result<LabRecord> {
        let data = fs::read(Self::path(id))?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }

    pub fn owner_alive(&self) -> bool {
        process_start_time(self.owner_pid) == Some(self.owner_start)
    }

    /// Removes the record and every file that belongs to the lab.
    pub fn remove_files(id: &str) {
        for p in [
            Self::path(id),
            Self::plan_path(id),
            Self::log_path(id),
            Self::request_path(id),
            Self::reply_path(id),
        ] {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes a small file atomically (temp file + rename).
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic(path, data)
}

pub fn save_plan(id: &str, plan: &LabPlan) -> std::io::Result<()> {
    write_atomic(
        &LabRecord::plan_path(id),
        &serde_json::to_vec(plan).map_err(std::io::Error::other)?,
    )
}

pub fn load_plan(id: &str) -> std::io::Result<LabPlan> {
    let data = fs::read(LabRecord::plan_path(id))?;
    serde_json::from_slice(&data).map_err(std::io::Error::other)
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(RUN_DIR)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
    }
    fs::rename(&tmp, path)
}

/// All lab records, sorted by creation time. Unreadable records are skipped
/// (a record being written is renamed into place atomically).
pub fn list() -> Vec<LabRecord> {
    let Ok(dir) = fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<LabRecord> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.to_string_lossy().ends_with(".plan.json")
        })
        .filter_map(|p| fs::read(p).ok())
        .filter_map(|d| serde_json::from_slice(&d).ok())
        .collect();
    v.sort_by_key(|r: &LabRecord| (r.created_unix, r.id.clone()));
    v
}

/// Start time of a process (field 22 of `/proc/<pid>/stat`), None if gone.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A fresh lab id: 6 hex digits from the kernel's random pool, not used by
/// any record or namespace yet.
pub fn new_id() -> String {
    loop {
        let mut b = [0u8; 3];
        if let Ok(mut f) = fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut b);
        }
        let id = format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]);
        let taken = LabRecord::path(&id).exists()
            || !crate::kernel::netns::list(&format!("{NS_PREFIX}{id}-")).is_empty();
        if !taken {
            return id;
        }
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
