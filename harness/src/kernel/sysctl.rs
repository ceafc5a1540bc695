//! Sysctls of the current thread's network namespace.
//!
//! `/proc/sys/net/*` resolves against the namespace of the *thread* that
//! opens the file (unlike `/proc/net`, which follows the thread-group
//! leader), so writing from a thread inside `NetNs::run` changes that
//! namespace only.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::KernelError;

/// A procfs instance of this thread's own, detached (`fsopen` + `fsmount`,
/// never attached to any mount point, gone when dropped), for writing one
/// namespace's sysctls.
///
/// Why not plain `/proc/sys`: procfs keeps one dentry per network namespace
/// for each per-namespace sysctl directory (`net/ipv6`, `conf`, `all`, …),
/// all under the same parent with the same name, so they share one dcache
/// hash chain and every lookup walks past every other namespace's entry
/// (`proc_sys_compare`). With 10,000 namespaces a write took ~1 ms and the
/// sysctl phase of a build grew quadratically. A fresh procfs superblock
/// has its own dentries: each lookup is short again.
pub struct ProcSys {
    root: Option<OwnedFd>,
}

impl ProcSys {
    /// A fresh procfs; where the kernel or the sandbox refuses one (before
    /// Linux 5.2, no CAP_SYS_ADMIN), writes go through `/proc/sys`.
    pub fn open() -> ProcSys {
        ProcSys {
            root: fresh_procfs().ok(),
        }
    }

    /// Whether writes go through a procfs of its own (else `/proc/sys`).
    pub fn is_private(&self) -> bool {
        self.root.is_some()
    }

    /// Writes `value` to `<procfs>/sys/<path>` of the calling thread's
    /// namespace.
    pub fn write(&self, path: &str, value: &str) -> Result<(), KernelError> {
        let Some(root) = &self.root else {
            return write(path, value);
        };
        let rel = full_path(path)?;
        let rel = CString::new(&rel["/proc/".len()..])
            .map_err(|_| KernelError::new(format!("invalid sysctl path {path:?}")))?;
        // SAFETY: a valid dirfd and NUL-terminated path; the returned fd is
        // owned by the File below.
        let fd = unsafe {
            libc::openat(
                root.as_raw_fd(),
                rel.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(set_failed(path, value, std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is not owned elsewhere.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        f.write_all(value.as_bytes())
            .map_err(|e| set_failed(path, value, e))
    }
}

/// How many namespaces one private procfs serves before a fresh one takes
/// over: its dentries for every namespace it has seen share hash chains
/// (see [`ProcSys`]), so a long-lived instance would grow slow again.
const NAMESPACES_PER_PROCFS: usize = 64;

thread_local! {
    /// This thread's private procfs and how many namespaces it has served.
    /// Closing one costs an expedited RCU grace period (the kernel dissolves
    /// the detached mount in `namespace_unlock`), so a build worker keeps
    /// one across the namespaces it builds instead of one per namespace.
    static PROC_SYS: std::cell::RefCell<Option<(ProcSys, usize)>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes every `(path, value)` in the calling thread's namespace, through
/// the thread's private procfs (opened only if there is anything to write).
pub fn write_all<'a>(
    sysctls: impl IntoIterator<Item = &'a (String, String)>,
) -> Result<(), KernelError> {
    let mut sysctls = sysctls.into_iter().peekable();
    if sysctls.peek().is_none() {
        return Ok(());
    }
    PROC_SYS.with_borrow_mut(|slot| {
        if slot
            .as_ref()
            .is_none_or(|(_, n)| *n >= NAMESPACES_PER_PROCFS)
        {
            *slot = Some((ProcSys::open(), 0));
        }
        let (proc, served) = slot.as_mut().expect("just filled");
        *served += 1;
        sysctls.try_for_each(|(path, value)| proc.write(path, value))
    })
}

fn set_failed(path: &str, value: &str, e: std::io::Error) -> KernelError {
    KernelError::new(format!("setting sysctl {path}={value}: {e}"))
}

/// `fsopen("proc")`, create, `fsmount`: the root of a detached procfs.
fn fresh_procfs() -> std::io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    let own = |r: libc::c_long| -> std::io::Result<OwnedFd> {
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    };
    // SAFETY: raw syscalls with valid NUL-terminated strings and flags.
    let fs = own(unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: as above; CMD_CREATE takes no key or value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    own(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
}

/// Writes `value` to `/proc/sys/<path>` (`path` like `net/ipv4/ip_forward`).
pub fn write(path: &str, value: &str) -> Result<(), KernelError> {
    let full = full_path(path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&full)
        .map_err(|e| set_failed(path, value, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| set_failed(path, value, e))
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
