//! Compiles the tc eBPF programs in `bpf/*.c` with clang into `$OUT_DIR/<name>.o`;
//! `src/kernel/tc.rs` embeds them with `include_bytes_aligned!`.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str =
    "install the eBPF toolchain: apt-get install clang llvm libbpf-dev (scripts/setup does this)";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let bpf_dir = manifest.join("bpf");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    let mut sources: Vec<PathBuf> = match std::fs::read_dir(&bpf_dir) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "c"))
            .collect(),
        Err(e) => fail(&format!("reading {}: {e}", bpf_dir.display())),
    };
    sources.sort();

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    match Command::new(&clang).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => fail(&format!(
            "`{clang} --version` failed ({}); {INSTALL_HINT}",
            out.status
        )),
        Err(e) => fail(&format!("cannot run `{clang}` ({e}); {INSTALL_HINT}")),
    }

    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, src, &out_dir);
    }
}

fn compile(clang: &str, src: &Path, out_dir: &Path) {
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("prog");
    let obj = out_dir.join(format!("{stem}.o"));
    let mut cmd = Command::new(clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]);
    // <linux/bpf.h> pulls <asm/types.h>, which Debian keeps under the
    // multiarch directory that `-target bpf` does not search by itself.
    for dir in multiarch_include_dirs() {
        cmd.arg("-I").arg(dir);
    }
    cmd.arg("-c").arg(src).arg("-o").arg(&obj);
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => fail(&format!(
            "clang failed on {} ({}):\n{}\nIf headers such as <bpf/bpf_helpers.h> are missing: {INSTALL_HINT}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => fail(&format!("running clang on {}: {e}; {INSTALL_HINT}", src.display())),
    }
}

fn multiarch_include_dirs() -> Vec<PathBuf> {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => "",
    };
    let dir = Path::new("/usr/include").join(triple);
    if !triple.is_empty() && dir.join("asm").is_dir() {
        vec![dir]
    } else {
        Vec::new()
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: building the tc eBPF programs: {msg}");
    std::process::exit(1);
}
