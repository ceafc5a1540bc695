//! One qemu run: a per-run share carrying the second stage, the command and
//! its results; the console goes to a log printed only when the run fails.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::kernels::Kernel;
use super::{cache_dir, Result, VmError, VmOptions, VmRun};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

const QEMU: &str = "qemu-system-x86_64";

/// KVM where it really starts a vCPU: `/dev/kvm` can exist and still fail
/// (nested virtualisation refusing an MSR aborts qemu), so ask qemu itself
/// with a paused machine that quits at once.
pub fn kvm_works() -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let child = Command::new(QEMU)
        .args(Accel::Kvm.args())
        .args([
            "-machine",
            "q35",
            "-m",
            "64",
            "-display",
            "none",
            "-nodefaults",
        ])
        .args(["-monitor", "stdio", "-S"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(b"quit\n");
    }
    child.wait().is_ok_and(|s| s.success())
}

/// Single-quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Environment the command keeps: what selects tools and logging, never
/// the host's session (sudo, display, ssh).
fn kept_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k == "PATH"
                || k == "LANG"
                || k == "TERM"
                || k.starts_with("RUST_")
                || k.starts_with("CNLAB_")
                || k.starts_with("CARGO_")
        })
        .collect()
}

/// The guest's second stage, run by the host's /bin/sh in the host root
/// (the initramfs did the mounts): the environment, then the command.
fn stage2(cwd: &Path) -> String {
    let out = super::initramfs::OUT_DIR;
    let mut s = format!("#!/bin/sh\no={out}\nexport HOME=/root USER=root\n");
    for (k, v) in kept_env() {
        s.push_str(&format!("export {k}={}\n", quote(&v)));
    }
    s.push_str(&format!(
        "cd {} && /bin/sh $o/cmd </dev/null >$o/stdout 2>$o/stderr\n\
         echo $? > $o/rc\n\
         sync\n\
         echo o > /proc/sysrq-trigger\n\
         sleep 30\n",
        quote(&cwd.to_string_lossy())
    ));
    s
}

/// Copies what the guest appended to `path` since `*pos` to `to`.
fn pump(path: &Path, pos: &mut u64, to: &mut dyn Write) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    if f.seek(SeekFrom::Start(*pos)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
        *pos += buf.len() as u64;
        let _ = to.write_all(&buf);
        let _ = to.flush();
    }
}

/// The run's share: removed when the run ends, and by the signal thread
/// when a signal ends `cnlab vm` (no `Drop` runs then).
struct RunDir(PathBuf);

impl RunDir {
    fn new(dir: PathBuf) -> Self {
        crate::lab::live::register_scratch(&dir);
        RunDir(dir)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        crate::lab::live::unregister_scratch(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The console from the first oops or panic line on (at most 60 lines):
/// the tail alone shows only the last of several oopses.
fn panic_report(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let v: Vec<&str> = s.lines().collect();
    let first = v
        .iter()
        .position(|l| l.contains("Oops:") || l.contains("BUG:") || l.contains("Kernel panic"))?;
    let end = v.len().min(first + 60);
    let mut r = v[first..end].join("\n");
    if end < v.len() {
        // …and how it ended.
        r.push_str("\n…\n");
        r.push_str(&v[v.len().saturating_sub(15).max(end)..].join("\n"));
    }
    Some(r)
}

fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn boot(kernel: &Kernel, image: &Path, initramfs: &Path, opts: &VmOptions) -> Result<VmRun> {
    boot_once(kernel, image, initramfs, opts, 0)
}

/// Boots after a guest kernel panic at boot, before giving up.
const BOOT_RETRIES: u32 = 3;

/// One boot; `reboots`: how many boots before this one ended in a guest
/// kernel panic before the command started.
fn boot_once(
    kernel: &Kernel,
    image: &Path,
    initramfs: &Path,
    opts: &VmOptions,
    reboots: u32,
) -> Result<VmRun> {
    let accel = opts
        .accel
        .unwrap_or_else(|| if kvm_works() { Accel::Kvm } else { Accel::Tcg });
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = cache_dir()
        .join("runs")
        .join(format!("{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(VmError::io(format!("creating {}", dir.display())))?;
    let run = RunDir::new(dir.clone());
    let write = |name: &str, body: String| {
        std::fs::write(dir.join(name), body).map_err(VmError::io(format!("writing {name}")))
    };
    write("stage2", stage2(&opts.cwd))?;
    let cmd: Vec<String> = opts.command.iter().map(|a| quote(a)).collect();
    write("cmd", format!("exec {}\n", cmd.join(" ")))?;
    let console = dir.join("console.log");
    let append = "console=ttyS0 loglevel=4 panic=-1 reboot=t i8042.noaux i8042.nokbd \
                  i8042.nopnp tsc=reliable no_timer_check random.trust_cpu=on \
                  mitigations=off nowatchdog edd=off";
    let mut q = Command::new(QEMU);
    q.args(accel.args())
        .args([
            "-machine",
            "q35",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
        ])
        .args([
            "-smp",
            &opts.cpus.to_string(),
            "-m",
            &opts.mem_mb.to_string(),
        ])
        .arg("-kernel")
        .arg(image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", append])
        .args([
            "-fsdev",
            "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap",
        ])
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
        .arg("-fsdev")
        .arg(format!(
            "local,id=out,path={},security_model=none",
            dir.display()
        ))
        .args(["-device", "virtio-9p-pci,fsdev=out,mount_tag=out"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // qemu must not outlive `cnlab vm` (killed, or exiting on SIGTERM from
    // the signal thread): the kernel kills it when its parent goes.
    // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut q, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if opts.verbose {
        eprintln!("cnlab vm: {:?}", q);
    }
    let t0 = Instant::now();
    let mut child = q
        .spawn()
        .map_err(|e| VmError::Qemu(format!("{QEMU} {}", accel.name()), e))?;
    let mut qerr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = qerr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let (mut opos, mut epos) = (0u64, 0u64);
    let mut started: Option<Duration> = None;
    let status = loop {
        if started.is_none() && dir.join("started").exists() {
            started = Some(t0.elapsed());
        }
        pump(&dir.join("stdout"), &mut opos, &mut std::io::stdout());
        pump(&dir.join("stderr"), &mut epos, &mut std::io::stderr());
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(VmError::Qemu("waiting".into(), e)),
        }
    };
    pump(&dir.join("stdout"), &mut opos, &mut std::io::stdout());
    pump(&dir.join("stderr"), &mut epos, &mut std::io::stderr());
    let elapsed = t0.elapsed();
    let qemu_err = err_reader.join().unwrap_or_default();
    let rc = std::fs::read_to_string(dir.join("rc"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let Some(rc) = rc else {
        let mut c = panic_report(&console).unwrap_or_else(|| tail(&console, 30));
        if !qemu_err.trim().is_empty() {
            c.push_str("\nqemu: ");
            c.push_str(qemu_err.trim());
        }
        // A KVM that exists but cannot run a vCPU: once more with TCG.
        if accel == Accel::Kvm && opts.accel.is_none() && started.is_none() {
            eprintln!(
                "cnlab vm: KVM failed ({}), retrying with TCG",
                qemu_err.trim()
            );
            drop(run);
            let o = VmOptions {
                accel: Some(Accel::Tcg),
                ..opts.clone()
            };
            return boot_once(kernel, image, initramfs, &o, reboots);
        }
        // The guest kernel panicked while booting, before the command
        // started: no command ran, so booting again decides nothing for
        // it. Seen under TCG: an int3 oops in sched_clock_cpu while the
        // kernel patched a static branch on another vCPU at boot, twice in
        // a row once, so up to BOOT_RETRIES more boots (about 3 s each).
        let panicked = std::fs::read_to_string(&console).is_ok_and(|s| s.contains("Kernel panic"));
        if started.is_none() && reboots < BOOT_RETRIES && panicked {
            eprintln!(
                "cnlab vm: the guest kernel panicked while booting, before the command started; booting once more. Console:\n{c}"
            );
            drop(run);
            return boot_once(kernel, image, initramfs, opts, reboots + 1);
        }
        return Err(VmError::NoResult {
            status: status.to_string(),
            console: c,
        });
    };
    if opts.verbose {
        eprintln!("cnlab vm: console:\n{}", tail(&console, 200));
    }
    drop(run);
    Ok(VmRun {
        kernel: kernel.clone(),
        accel,
        status: rc,
        initramfs: Duration::ZERO,
        initramfs_cached: false,
        start_to_command: started,
        command: started
            .map(|s| elapsed.saturating_sub(s))
            .unwrap_or(elapsed),
        total: elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::panic_report;

    #[test]
    fn a_panic_report_starts_at_the_first_oops() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let mut log: Vec<String> = (0..100).map(|i| format!("[ 0.{i}] booting")).collect();
        log.push("[ 1.37] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI".into());
        log.extend((0..80).map(|i| format!("[ 1.38] trace {i}")));
        log.push("[ 1.39] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI".into());
        log.push("[ 1.40] Kernel panic - not syncing: Fatal exception in interrupt".into());
        std::fs::write(&console, log.join("\n")).unwrap();
        let r = panic_report(&console).unwrap();
        assert!(r.starts_with("[ 1.37] Oops: int3: 0000 [#1]"), "{r}");
        assert!(r.contains("Kernel panic"), "{r}");
        std::fs::write(&console, "[ 0.1] booting\n[ 0.2] still booting\n").unwrap();
        assert_eq!(panic_report(&console), None);
    }
}
