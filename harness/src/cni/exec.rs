//! Running one plugin: the binary found in `CNI_PATH`, the CNI environment
//! (SPEC.md "Section 2: Execution Protocol"), the config on stdin, and the
//! process inside the node's network namespace (entered between fork and
//! exec), so the host-side interfaces it creates land in the node.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use super::result::ErrorObject;
use super::{CniError, Command};
use crate::kernel::NetNs;

/// The environment of one invocation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Env {
    pub container_id: String,
    /// `CNI_NETNS`: the pod's namespace path (`/run/netns/cnl-…`).
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K=V` as kubelet passes them.
    pub args: String,
    /// `CNI_PATH`: where plugins (and the IPAM plugins they delegate to) are.
    pub path: Vec<PathBuf>,
}

impl Env {
    pub fn path_var(&self) -> String {
        self.path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The binary for `plugin` in `CNI_PATH`, as libcni's FindInPath.
pub fn find(plugin: &str, env: &Env) -> Result<PathBuf, CniError> {
    env.path
        .iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::NotFound {
            plugin: plugin.into(),
            path: format!("[{}]", env.path_var().replace(':', " ")),
        })
}

/// Runs `plugin` for `command` with `stdin` inside `node`; the parsed
/// stdout (`None`: the plugin printed nothing, as DEL and CHECK may).
pub fn invoke(
    plugin: &str,
    command: Command,
    env: &Env,
    stdin: &Value,
    node: &NetNs,
) -> Result<Option<Value>, CniError> {
    let bin = find(plugin, env)?;
    run(&bin, plugin, command, env, stdin, node)
}

fn run(
    bin: &Path,
    plugin: &str,
    command: Command,
    env: &Env,
    stdin: &Value,
    node: &NetNs,
) -> Result<Option<Value>, CniError> {
    let mut cmd = Process::new(bin);
    cmd.env_clear()
        // Plugins call iptables, ip6tables and the like.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", env.path_var())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn = |err| CniError::Spawn {
        plugin: plugin.into(),
        err,
    };
    let mut child = node.spawn(&mut cmd).map_err(spawn)?;
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin that exits before reading shows its own error below.
        let _ = pipe.write_all(stdin.to_string().as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(match ErrorObject::parse(&out.stdout) {
            Some(e) => CniError::Plugin {
                plugin: plugin.into(),
                command,
                code: e.code,
                msg: e.msg,
                details: e.details,
            },
            None => CniError::Crashed {
                plugin: plugin.into(),
                command,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            },
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CniError::BadOutput {
            plugin: plugin.into(),
            command,
            what: format!("stdout is not JSON ({e}): {}", text.trim()),
        })
}
