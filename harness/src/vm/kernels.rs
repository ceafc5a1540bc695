//! Bootable kernels: `/boot/vmlinuz-KVER` with modules in `/lib/modules/KVER`,
//! as Debian and Ubuntu kernel packages install them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Result, VmError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.12.117+deb12-amd64`.
    pub release: String,
    pub image: PathBuf,
}

impl Kernel {
    pub fn modules(&self) -> PathBuf {
        Path::new("/lib/modules").join(&self.release)
    }
}

/// Every kernel in /boot whose modules are installed, newest first.
pub fn list() -> Vec<Kernel> {
    list_in(Path::new("/boot"), Path::new("/lib/modules"))
}

fn list_in(boot: &Path, modules: &Path) -> Vec<Kernel> {
    let mut v: Vec<Kernel> = std::fs::read_dir(boot)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let release = name.strip_prefix("vmlinuz-")?.to_string();
            modules.join(&release).is_dir().then(|| Kernel {
                release,
                image: e.path(),
            })
        })
        .collect();
    v.sort_by_key(|k| std::cmp::Reverse(version_key(&k.release)));
    v
}

/// Numeric version components, so 6.12 sorts after 6.9.
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0))
        .collect()
}

/// `want` is a release or a version prefix: `6.1` matches `6.1.0-57-amd64`
/// but not `6.12.117+deb12-amd64`.
pub fn matches(release: &str, want: &str) -> bool {
    release == want
        || release
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with(['.', '-', '+']))
}

/// The newest installed kernel matching `want` (any when `None`); when none
/// matches, installs one with apt and looks again.
pub fn resolve(want: Option<&str>) -> Result<Kernel> {
    let pick = |ks: Vec<Kernel>| {
        ks.into_iter()
            .find(|k| want.is_none_or(|w| matches(&k.release, w)))
    };
    if let Some(k) = pick(list()) {
        return Ok(k);
    }
    let have = || {
        let l: Vec<String> = list().into_iter().map(|k| k.release).collect();
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    let Some(w) = want else {
        return Err(VmError::NoKernel("any".into(), have()));
    };
    install(w)?;
    pick(list()).ok_or_else(|| VmError::NoKernel(w.into(), have()))
}

/// Debian names a kernel series `linux-image-6.12-amd64` and single builds
/// `linux-image-6.1.0-57-amd64`; Ubuntu `linux-image-6.8.0-45-generic`.
/// The newest package apt knows whose name starts with the version wins.
fn install(version: &str) -> Result<()> {
    if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c))
    {
        return Err(VmError::Install(
            version.into(),
            "not a kernel version".into(),
        ));
    }
    let out = Command::new("apt-cache")
        .args(["search", "--names-only"])
        .arg(format!(
            "^linux-image-(unsigned-)?{}[.+-]",
            regex_escape(version)
        ))
        .output()
        .map_err(|e| VmError::Install(version.into(), format!("apt-cache: {e}")))?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n.ends_with("-amd64") || n.ends_with("-generic"))
        .filter(|n| !n.contains("-dbg") && !n.contains("-rt-") && !n.contains("cloud"))
        .collect();
    names.sort_by_key(|n| version_key(n));
    let Some(pkg) = names.pop() else {
        return Err(VmError::Install(
            version.into(),
            "apt knows no linux-image package of that version".into(),
        ));
    };
    eprintln!("cnlab vm: installing {pkg}");
    let st = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", &pkg])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| VmError::Install(version.into(), format!("apt-get: {e}")))?;
    if !st.success() {
        return Err(VmError::Install(
            version.into(),
            format!("apt-get install {pkg}: {st}"),
        ));
    }
    Ok(())
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc = matches!(c, '.' | '+').then_some('\\');
            esc.into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// Writable names for cache keys and logs.
pub fn key(release: &str) -> String {
    release
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes_match_whole_components() {
        assert!(matches("6.1.0-57-amd64", "6.1"));
        assert!(!matches("6.12.117+deb12-amd64", "6.1"));
        assert!(matches("6.12.117+deb12-amd64", "6.12"));
        assert!(matches("6.12.117+deb12-amd64", "6.12.117"));
        assert!(matches("6.8.0-45-generic", "6.8.0-45-generic"));
    }

    #[test]
    fn newest_first_and_only_with_modules() {
        let d = tempfile::tempdir().unwrap();
        let (boot, mods) = (d.path().join("boot"), d.path().join("mods"));
        std::fs::create_dir_all(&boot).unwrap();
        for r in ["6.1.0-57-amd64", "6.12.117+deb12-amd64", "6.9.0-1-amd64"] {
            std::fs::write(boot.join(format!("vmlinuz-{r}")), b"").unwrap();
        }
        for r in ["6.1.0-57-amd64", "6.12.117+deb12-amd64"] {
            std::fs::create_dir_all(mods.join(r)).unwrap();
        }
        let l: Vec<String> = list_in(&boot, &mods)
            .into_iter()
            .map(|k| k.release)
            .collect();
        assert_eq!(l, ["6.12.117+deb12-amd64", "6.1.0-57-amd64"]);
    }

    #[test]
    fn escapes_for_apt() {
        assert_eq!(regex_escape("6.12"), "6\\.12");
        assert_eq!(key("6.12.117+deb12-amd64"), "6.12.117_deb12-amd64");
    }
}
