//! The kernel as qemu boots it fastest: the uncompressed ELF inside the
//! bzImage, entered through its PVH note. Decompressing a bzImage under TCG
//! costs about two seconds at every boot; here it is done once and cached.
//! Kernels built without CONFIG_PVH boot from the bzImage as shipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::kernels::{key, Kernel};
use super::{Result, VmError};

/// Compressed payload magics of a bzImage and the tool that expands them.
const PAYLOADS: &[(&[u8], &str)] = &[
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
    (&[0x1f, 0x8b, 0x08], "gzip"),
];

fn has_pvh(kernel: &Kernel) -> bool {
    std::fs::read_to_string(format!("/boot/config-{}", kernel.release))
        .is_ok_and(|c| c.lines().any(|l| l == "CONFIG_PVH=y"))
}

/// Expands the first payload that turns out to be an ELF; trailing data
/// after the stream makes some tools complain, so their status is ignored.
fn extract(bz: &[u8]) -> Option<Vec<u8>> {
    for (magic, tool) in PAYLOADS {
        let Some(off) = bz.windows(magic.len()).position(|w| w == *magic) else {
            continue;
        };
        let mut child = Command::new(tool)
            .args(["-dc", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let data = bz[off..].to_vec();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().ok()?;
        let _ = feeder.join();
        if out.stdout.starts_with(b"\x7fELF") {
            return Some(out.stdout);
        }
    }
    None
}

/// The image to hand to `-kernel`.
pub fn ensure(kernel: &Kernel, cache: &Path) -> Result<PathBuf> {
    if !has_pvh(kernel) {
        return Ok(kernel.image.clone());
    }
    let dir = cache.join(key(&kernel.release));
    let meta = std::fs::metadata(&kernel.image)
        .map_err(VmError::io(format!("reading {}", kernel.image.display())))?;
    let path = dir.join(format!("vmlinux-{}", meta.len()));
    if path.is_file() {
        return Ok(path);
    }
    let bz = std::fs::read(&kernel.image)
        .map_err(VmError::io(format!("reading {}", kernel.image.display())))?;
    let Some(elf) = extract(&bz) else {
        return Ok(kernel.image.clone());
    };
    std::fs::create_dir_all(&dir).map_err(VmError::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".vmlinux-{}.tmp", std::process::id()));
    std::fs::write(&tmp, elf).map_err(VmError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(VmError::io(format!("renaming to {}", path.display())))?;
    Ok(path)
}
