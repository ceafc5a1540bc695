//! nftables inside a namespace: `nft` runs as a child that enters the
//! namespace before exec, so a script applies atomically there.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{KernelError, NetNs};

/// Applies `script` with `nft -f -` in `ns` (one transaction).
pub fn apply(ns: &NetNs, script: &str) -> Result<(), KernelError> {
    run_in(
        ns,
        "nft",
        &["-f", "-"],
        Some(script),
        "applying nft ruleset",
    )
    .map(|_| ())
}

/// `nft list ruleset` in `ns`.
pub fn list_ruleset(ns: &NetNs) -> Result<String, KernelError> {
    run_in(ns, "nft", &["list", "ruleset"], None, "listing nft ruleset")
}

/// `nft -j list ruleset` in `ns` (counters, handles).
pub fn list_ruleset_json(ns: &NetNs) -> Result<serde_json::Value, KernelError> {
    let out = run_in(
        ns,
        "nft",
        &["-j", "list", "ruleset"],
        None,
        "listing nft ruleset",
    )?;
    serde_json::from_str(&out).map_err(|e| {
        KernelError::new(format!(
            "listing nft ruleset in {}: parsing nft -j output: {e}",
            ns.name()
        ))
    })
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
