//! The cached initramfs: busybox-static, the kernel modules the boot and the
//! labs need (resolved with `modprobe -S KVER --show-depends`, decompressed,
//! loaded in dependency order) and an `/init` that mounts the host's root
//! read-only over 9p and switches to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha1::{Digest, Sha1};

use super::cpio::Cpio;
use super::kernels::{key, Kernel};
use super::{Result, VmError};

/// Where the guest mounts the writable per-run share.
pub const OUT_DIR: &str = "/run/cnlab-vm";

/// Needed to reach the host's root at all; a missing one is an error.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// What labs use, loaded up front so a lab never waits for a module load
/// over 9p (the kernel would still find the others on the host's
/// /lib/modules). Modules a kernel lacks are left out and listed by
/// `--verbose`.
const LAB_MODULES: &[&str] = &[
    "veth",
    "bridge",
    // Real kubeadm nodes have it (bridge-nf-call-iptables=1). Loaded only
    // here, in the guest: on a host it would change the host's own bridges.
    "br_netfilter",
    "8021q",
    "macvlan",
    "ipvlan",
    "dummy",
    "vxlan",
    "ifb",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "nf_tables",
    "nf_conntrack",
    "nft_ct",
    "nft_nat",
    "nft_chain_nat",
    "nft_masq",
    "nft_redir",
    "nft_reject_inet",
    "nft_fib_inet",
    "nft_numgen",
    "nft_compat",
    "nft_limit",
    "nft_hash",
    "xt_conntrack",
    "xt_mark",
    "xt_comment",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_statistic",
    "xt_multiport",
    "sch_ingress",
    "sch_netem",
    "cls_bpf",
    "act_bpf",
    "act_mirred",
    "fib_rules",
];

const BUSYBOX: &[&str] = &["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"];

/// PID 1 of the initramfs. Prints to the console (the run's console.log).
/// Everything up to the command runs from busybox in RAM: a host binary
/// started over 9p costs far more under TCG. Lab modules load in the
/// background while the host root is mounted.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "cnlab-vm: $*"; poweroff -f; }
load() {
  for m in "$@"; do
    # Loading dummy or ifb would otherwise create dummy0, ifb0, ifb1.
    case $m in *-dummy.ko) p=numdummies=0 ;; *-ifb.ko) p=numifbs=0 ;; *) p= ;; esac
    insmod "$m" $p 2>/dev/null || echo "cnlab-vm: insmod ${m#/mod/} failed"
  done
}
load /mod/boot/*.ko
load /mod/lab/*.ko &
lab=$!
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /newroot \
  || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "cannot mount /run"
for d in etc var tmp root home; do
  [ -d /newroot/$d ] || continue
  o=/newroot/run/.cnlab-vm-overlay/$d
  mkdir -p $o/upper $o/work
  mount -t overlay overlay -o lowerdir=/newroot/$d,upperdir=$o/upper,workdir=$o/work /newroot/$d \
    || fail "cannot overlay /$d"
done
chmod 1777 /newroot/tmp
mkdir -p /newroot/run/cnlab-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /newroot/run/cnlab-vm \
  || fail "cannot mount the result share"
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
mount -t bpf bpf /newroot/sys/fs/bpf
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
mount -t debugfs debugfs /newroot/sys/kernel/debug
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
ln -sf pts/ptmx /newroot/dev/ptmx
# What udev would add: bash's process substitution needs /dev/fd.
ln -sf /proc/self/fd /newroot/dev/fd
ln -sf /proc/self/fd/0 /newroot/dev/stdin
ln -sf /proc/self/fd/1 /newroot/dev/stdout
ln -sf /proc/self/fd/2 /newroot/dev/stderr
mount -t tmpfs tmpfs /newroot/dev/shm
ip link set lo up
hostname cnlab-vm
wait $lab
cat /newroot/proc/uptime > /newroot/run/cnlab-vm/started
exec chroot /newroot /bin/sh /run/cnlab-vm/stage2
"#;

/// `insmod` lines for `module`, in load order; `None` if the kernel has
/// no such module. Built-in modules resolve to nothing.
fn depends(kver: &str, module: &str) -> Result<Option<Vec<PathBuf>>> {
    let out = Command::new("modprobe")
        .args(["-S", kver, "--show-depends", module])
        .output()
        .map_err(|e| VmError::Modules {
            module: module.into(),
            kver: kver.into(),
            detail: format!("running modprobe: {e}"),
        })?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("insmod "))
            .filter_map(|l| l.split_whitespace().next())
            .map(PathBuf::from)
            .collect(),
    ))
}

/// Modules in load order without repeats (the first `usize` of them are
/// the boot modules), and the lab modules the kernel lacks.
pub fn resolve(kver: &str) -> Result<(Vec<PathBuf>, usize, Vec<String>)> {
    let mut order: Vec<PathBuf> = Vec::new();
    let mut missing = Vec::new();
    let mut boot_count = 0;
    for (i, m) in BOOT_MODULES.iter().chain(LAB_MODULES).enumerate() {
        if i == BOOT_MODULES.len() {
            boot_count = order.len();
        }
        match depends(kver, m)? {
            Some(files) => {
                for f in files {
                    if !order.contains(&f) {
                        order.push(f);
                    }
                }
            }
            None if BOOT_MODULES.contains(m) => {
                return Err(VmError::Modules {
                    module: m.to_string(),
                    kver: kver.into(),
                    detail:
                        "modprobe does not know it (is the kernel's modules package installed?)"
                            .into(),
                })
            }
            None => missing.push(m.to_string()),
        }
    }
    Ok((order, boot_count, missing))
}

/// Drops a module's appended signature. Checking it (RSA over SHA-256) is
/// most of a module load under TCG; an unsigned module loads all the same
/// (the kernel is not in lockdown) and only taints the kernel once.
fn strip_signature(mut ko: Vec<u8>) -> Vec<u8> {
    const MAGIC: &[u8] = b"~Module signature appended~\n";
    // struct module_signature: 12 bytes, sig_len big-endian in the last 4.
    if !ko.ends_with(MAGIC) || ko.len() < MAGIC.len() + 12 {
        return ko;
    }
    let info = ko.len() - MAGIC.len() - 12;
    let sig_len = u32::from_be_bytes([ko[info + 8], ko[info + 9], ko[info + 10], ko[info + 11]]);
    match info.checked_sub(sig_len as usize) {
        Some(end) => {
            ko.truncate(end);
            ko
        }
        None => ko,
    }
}

/// A module file's contents, decompressed (`.ko.xz`, `.ko.zst`, `.ko.gz`).
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext));
    match tool {
        None => std::fs::read(path).map_err(VmError::io(format!("reading {name}"))),
        Some((_, tool)) => {
            let out = Command::new(tool)
                .args(["-dc"])
                .arg(path)
                .output()
                .map_err(VmError::io(format!("running {tool} -dc {name}")))?;
            if !out.status.success() {
                return Err(VmError::Io {
                    what: format!("{tool} -dc {name}"),
                    source: std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    ),
                });
            }
            Ok(out.stdout)
        }
    }
}

fn busybox() -> Result<PathBuf> {
    BUSYBOX
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| VmError::Io {
            what: "finding busybox (install busybox-static)".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

/// The initramfs for `kernel`, built unless a cached one of the same
/// inputs exists. Returns its path and whether it came from the cache.
pub fn ensure(kernel: &Kernel, cache: &Path) -> Result<(PathBuf, bool)> {
    let (modules, boot_count, missing) = resolve(&kernel.release)?;
    let bb = busybox()?;
    let mut h = Sha1::new();
    h.update(INIT.as_bytes());
    for p in std::iter::once(&bb).chain(&modules) {
        h.update(p.to_string_lossy().as_bytes());
        if let Ok(m) = std::fs::metadata(p) {
            h.update(m.len().to_le_bytes());
            if let Ok(t) = m.modified() {
                h.update(format!("{t:?}").as_bytes());
            }
        }
    }
    let digest: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache.join(key(&kernel.release));
    let path = dir.join(format!("initramfs-{digest}.cpio"));
    if path.is_file() {
        return Ok((path, true));
    }
    std::fs::create_dir_all(&dir).map_err(VmError::io(format!("creating {}", dir.display())))?;
    let mut c = Cpio::new();
    for d in [
        "bin", "dev", "proc", "sys", "newroot", "mod", "mod/boot", "mod/lab",
    ] {
        c.dir(d);
    }
    let bb_bytes = std::fs::read(&bb).map_err(VmError::io(format!("reading {}", bb.display())))?;
    c.file("bin/busybox", 0o755, &bb_bytes);
    c.file("init", 0o755, INIT.as_bytes());
    for (i, m) in modules.iter().enumerate() {
        let stage = if i < boot_count { "boot" } else { "lab" };
        let base = m
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = base.split(".ko").next().unwrap_or(&base).to_string();
        let bytes = strip_signature(module_bytes(m)?);
        c.file(&format!("mod/{stage}/{i:03}-{base}.ko"), 0o644, &bytes);
    }
    let tmp = dir.join(format!(".initramfs-{}.tmp", std::process::id()));
    std::fs::write(&tmp, c.finish()).map_err(VmError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(VmError::io(format!("renaming to {}", path.display())))?;
    // What the kernel lacks, for `--verbose`.
    let _ = std::fs::write(dir.join("missing-modules"), missing.join("\n"));
    Ok((path, false))
}
