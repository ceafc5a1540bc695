//! Named network namespaces (`/run/netns/<name>`, as `ip netns` keeps them)
//! and running code inside one.
//!
//! A netlink, packet or TCP socket belongs to the namespace of the thread
//! that created it. So work inside a namespace runs on a short-lived std
//! thread that `setns`es first; a tokio worker or the caller's thread never
//! changes namespace.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::KernelError;

pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace. It holds no descriptor: the namespace file
/// is opened for each trip inside and closed after, so a 10,000-pod lab
/// does not keep 10,000 descriptors open (RLIMIT_NOFILE is per process and
/// a sandbox may cap its hard limit below that). The bind mount under
/// /run/netns keeps the namespace alive; deleting it ends the namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Starts `cmd` inside this namespace, so a program (nft, iptables, a CNI
    /// plugin, a shell) runs there without `ip netns exec`.
    ///
    /// The child is spawned from a short-lived thread that has entered the
    /// namespace (a new process inherits its creating thread's namespaces),
    /// not by a `pre_exec` setns: a `pre_exec` closure makes std fall back
    /// from posix_spawn (vfork) to fork(), which copies this process's page
    /// tables for every nft run. Under `check -j` that copy-and-unmap was
    /// the largest single cost of a bring-up.
    pub fn spawn(&self, cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
        self.run(|| cmd.spawn())
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    pub fn path_of(name: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(name)
    }

    /// Creates a new named namespace, like `ip netns add NAME`.
    pub fn create(name: &str) -> Result<NetNs, KernelError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            KernelError::new(format!("creating namespace {name}: {what}: {e}"))
        };
        fs::create_dir_all(NETNS_DIR).map_err(|e| err("creating /run/netns", &e))?;
        let path = Self::path_of(name);
        File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| err("creating mount point", &e))?;
        // unshare() on a fresh thread, then bind its namespace onto the file:
        // the namespace lives on after the thread exits.
        let p = path.clone();
        let res = std::thread::spawn(move || -> Result<(), String> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind mount: {e}"))?;
            Ok(())
        })
        .join()
        .map_err(|_| err("thread", &"panicked"))?;
        if let Err(e) = res {
            let _ = fs::remove_file(&path);
            return Err(err("kernel", &e));
        }
        Self::open(name)
    }

    /// An existing named namespace (checked: its file must be there).
    pub fn open(name: &str) -> Result<NetNs, KernelError> {
        let ns = NetNs {
            name: name.to_string(),
        };
        ns.open_file()?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh descriptor on the namespace, for the caller to hold as long
    /// as it needs it (e.g. until a netlink request naming it is acked).
    pub fn open_file(&self) -> Result<File, KernelError> {
        File::open(Self::path_of(&self.name))
            .map_err(|e| KernelError::new(format!("opening namespace {}: {e}", self.name)))
    }

    /// Joins this namespace on the calling thread; the descriptor is closed
    /// again at once (the thread's membership does not need it).
    fn join(&self) -> Result<(), KernelError> {
        let file = self.open_file()?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::new(format!("entering namespace {}: {e}", self.name)))
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result.
    pub fn run<F, R>(&self, f: F) -> Result<R, KernelError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.join()?;
                Ok(f())
            })
            .join()
            .map_err(|_| {
                KernelError::new(format!("work inside namespace {} panicked", self.name))
            })?
        })
    }

    /// Enters this namespace on the *current* thread. Only for threads the
    /// caller owns and dedicates to this namespace (never a shared worker).
    pub fn enter_current_thread(&self) -> Result<(), KernelError> {
        self.join()
    }
}

/// Runs `program args` inside `ns` (spawned from a thread inside it), feeding
/// `stdin`; returns stdout, or an error with the program's stderr.
pub(crate) fn run_in(
    ns: &NetNs,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    what: &str,
) -> Result<String, KernelError> {
    let err = |m: String| KernelError::new(format!("{what} in {}: {m}", ns.name()));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ns
        .spawn(&mut cmd)
        .map_err(|e| err(format!("starting {program}: {e}")))?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The child reads all of stdin before answering; a write error shows
        // up again as the child's own failure below, with its stderr.
        let _ = pipe.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for {program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            stderr.trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| err(format!("{program} output is not UTF-8: {e}")))
}

/// Creates all namespaces in parallel (a few threads, each creating a share).
pub fn create_all(names: &[String]) -> Result<Vec<NetNs>, KernelError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    super::in_chunks(
        names,
        workers,
        |n| NetNs::create(n),
        || Err(KernelError::new("namespace worker panicked")),
    )
    .into_iter()
    .collect()
}

/// Deletes a named namespace, like `ip netns delete NAME`. The kernel frees
/// it, and every link inside, once the last handle (fd, socket, process) is
/// gone. Missing is not an error.
pub fn delete(name: &str) -> Result<(), KernelError> {
    let path = NetNs::path_of(name);
    if !path.exists() {
        return Ok(());
    }
    // MNT_DETACH: a reader (`ip netns exec`, a tap) may still hold it.
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(KernelError::new(format!(
                "deleting namespace {name}: umount: {e}"
            )))
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KernelError::new(format!("deleting namespace {name}: {e}"))),
    }
}

/// Raises this process's soft RLIMIT_NOFILE (and, being root, its hard
/// limit up to `fs.nr_open`) to `need`: a per-process limit, nothing
/// host-wide. Says so when even that is too low.
pub fn raise_fd_limit(need: u64) -> Result<(), String> {
    let Some(mut lim) = fd_limits() else {
        return Ok(());
    };
    if lim.rlim_cur >= need {
        return Ok(());
    }
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if lim.rlim_max < need && need <= nr_open {
        // CAP_SYS_RESOURCE lets root raise its own hard limit (a sandbox
        // may have dropped it: setrlimit then fails and says so).
        lim.rlim_max = need;
    }
    if lim.rlim_max < need {
        return Err(format!(
            "this lab needs about {need} open descriptors, the process may have {} (RLIMIT_NOFILE hard limit): raise it (ulimit -Hn)",
            lim.rlim_max
        ));
    }
    lim.rlim_cur = need.max(lim.rlim_cur).min(lim.rlim_max);
    // SAFETY: setrlimit only reads `lim`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!(
            "raising RLIMIT_NOFILE to {need}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Descriptors on as many of the named namespaces as this process may
/// open (RLIMIT_NOFILE, raised to the hard limit), the first ones first.
pub fn hold_first(names: &[String]) -> Vec<File> {
    const SPARE: u64 = 64;
    let open_now = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as u64;
    let want = open_now + names.len() as u64 + SPARE;
    let room = match raise_fd_limit(want) {
        Ok(()) => names.len() as u64,
        Err(_) => {
            let hard = fd_limits().map_or(0, |l| l.rlim_max);
            let _ = raise_fd_limit(hard);
            hard.saturating_sub(open_now + SPARE)
        }
    };
    names
        .iter()
        .take(usize::try_from(room).unwrap_or(usize::MAX))
        .filter_map(|n| File::open(NetNs::path_of(n)).ok())
        .collect()
}

/// This process's RLIMIT_NOFILE (soft and hard), if readable.
fn fd_limits() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes `lim`.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Names of the namespaces under /run/netns that start with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}
