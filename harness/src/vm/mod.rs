//! `cnlab vm`: boot a stock distribution kernel in qemu with the host's root
//! filesystem shared read-only, run one command inside and hand back its
//! output and exit status. Native backends (802.1Q, ipvlan, dummy, IPVS)
//! are tested this way on machines whose own kernel lacks them.
//!
//! The guest sees the host's `/` over 9p (read-only), a tmpfs on `/run`,
//! overlays on `/etc /var /tmp /root /home` and a writable 9p share at
//! [`initramfs::OUT_DIR`] through which the command's stdout, stderr and
//! exit status come back (a serial port loses its last bytes at power-off).

mod cpio;
mod image;
pub mod initramfs;
pub mod kernels;
mod qemu;

use std::path::PathBuf;
use std::time::Duration;

pub use kernels::Kernel;
pub use qemu::Accel;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("no bootable kernel matches {0:?} (have: {1}); install one with `apt-get install linux-image-…`")]
    NoKernel(String, String),
    #[error("installing a kernel for {0}: {1}")]
    Install(String, String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resolving module {module} for {kver}: {detail}")]
    Modules {
        module: String,
        kver: String,
        detail: String,
    },
    #[error("starting qemu ({0}): {1}")]
    Qemu(String, std::io::Error),
    #[error(
        "the VM stopped before the command finished (qemu exit {status}); console tail:\n{console}"
    )]
    NoResult { status: String, console: String },
    #[error("nothing to run: give a command after `--`")]
    NoCommand,
}

impl VmError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| VmError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, VmError>;

/// What `cnlab vm` was asked to do.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Kernel version or prefix (`6.12`, `6.1`, `6.12.117+deb12-amd64`);
    /// `None` picks the newest kernel found.
    pub kernel: Option<String>,
    pub cpus: u32,
    pub mem_mb: u32,
    pub verbose: bool,
    /// Forced accelerator; `None` uses KVM when it works, TCG otherwise.
    pub accel: Option<Accel>,
    pub command: Vec<String>,
    /// Directory the command starts in (must exist on the host).
    pub cwd: PathBuf,
}

/// Where the run went and how long its parts took.
#[derive(Debug, Clone)]
pub struct VmRun {
    pub kernel: Kernel,
    pub accel: Accel,
    /// The command's own exit status.
    pub status: i32,
    pub initramfs: Duration,
    pub initramfs_cached: bool,
    /// qemu started → the command started in the guest.
    pub start_to_command: Option<Duration>,
    pub command: Duration,
    pub total: Duration,
}

/// The cache: `$CNLAB_VM_CACHE`, else `$XDG_CACHE_HOME/cnlab/vm`, else
/// `~/.cache/cnlab/vm`, one subdirectory per kernel version.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CNLAB_VM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cnlab/vm");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/cnlab/vm")
}

/// Boots the kernel, runs the command, streams its output to ours.
pub fn run(opts: &VmOptions) -> Result<VmRun> {
    if opts.command.is_empty() {
        return Err(VmError::NoCommand);
    }
    let kernel = kernels::resolve(opts.kernel.as_deref())?;
    let t0 = std::time::Instant::now();
    let (initrd, cached) = initramfs::ensure(&kernel, &cache_dir())?;
    let image = image::ensure(&kernel, &cache_dir())?;
    let initramfs = t0.elapsed();
    let mut r = qemu::boot(&kernel, &image, &initrd, opts)?;
    r.initramfs = initramfs;
    r.initramfs_cached = cached;
    r.total = t0.elapsed();
    Ok(r)
}
