//! Sysctls of the current thread's network namespace.
//!
//! `/proc/sys/net/*` resolves against the namespace of the *thread* that
//! opens the file (unlike `/proc/net`, which follows the thread-group
//! leader), so writing from a thread inside `NetNs::run` changes that
//! namespace only.

use std::io::Write;

use super::KernelError;

/// Writes `value` to `/proc/sys/<path>` (`path` like `net/ipv4/ip_forward`).
pub fn write(path: &str, value: &str) -> Result<(), KernelError> {
    let full = full_path(path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&full)
        .map_err(|e| KernelError::new(format!("setting sysctl {path}={value}: {e}")))?;
    f.write_all(value.as_bytes())
        .map_err(|e| KernelError::new(format!("setting sysctl {path}={value}: {e}")))
}

/// Reads `/proc/sys/<path>`, trimmed.
pub fn read(path: &str) -> Result<String, KernelError> {
    let full = full_path(path)?;
    std::fs::read_to_string(&full)
        .map(|s| s.trim().to_string())
        .map_err(|e| KernelError::new(format!("reading sysctl {path}: {e}")))
}

fn full_path(path: &str) -> Result<String, KernelError> {
    let p = path.trim_start_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(KernelError::new(format!("invalid sysctl path {path:?}")));
    }
    Ok(format!("/proc/sys/{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_paths_leaving_proc_sys() {
        assert!(full_path("net/../../etc/passwd").is_err());
        assert!(full_path("").is_err());
        assert_eq!(
            full_path("net/ipv4/ip_forward").unwrap(),
            "/proc/sys/net/ipv4/ip_forward"
        );
    }
}
