//! The lab as a CNI runtime (as containerd and kubelet are to a plugin):
//! it runs a user's plugin chain per the CNI spec (containernetworking/cni
//! `SPEC.md`, versions 1.0.0, 0.4.0 and 0.3.x) for every pod.
//!
//! - `conf`: the network configuration list, and the per-plugin config the
//!   runtime writes on each plugin's stdin (`name`, `cniVersion`,
//!   `prevResult`, `runtimeConfig` for the capabilities it declares);
//! - `exec`: finding a plugin in `CNI_PATH` and running it with the CNI
//!   environment, its process inside the node's network namespace;
//! - `result`: the success result (1.0.0 and 0.4.0) and the error object;
//! - `runtime`: ADD through the chain, CHECK, DEL in reverse order, with
//!   what DEL needs persisted in the lab's run directory (so `cnlab gc` can
//!   run DEL after the lab's owner was killed).

pub mod conf;
pub mod exec;
pub mod result;
pub mod runtime;

pub use conf::Conflist;
pub use result::CniResult;
pub use runtime::{Attachment, PodSandbox};

/// CNI_COMMAND values the runtime issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    Add,
    Check,
    Del,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// What libcni answers when a `type` has no binary in CNI_PATH.
    #[error("failed to find plugin {plugin:?} in path {path}")]
    NotFound { plugin: String, path: String },
    /// The plugin's own error object (`code`, `msg`, `details`).
    #[error("plugin type={plugin:?} {command}: error code {code}: {msg}{details}",
        command = command.as_str(),
        details = if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Plugin {
        plugin: String,
        command: Command,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("plugin type={plugin:?} {command}: exited with {status} and no CNI error on stdout (stderr: {stderr})",
        command = command.as_str())]
    Crashed {
        plugin: String,
        command: Command,
        status: String,
        stderr: String,
    },
    #[error("plugin type={plugin:?} {command}: {what}", command = command.as_str())]
    BadOutput {
        plugin: String,
        command: Command,
        what: String,
    },
    #[error("running plugin type={plugin:?}: {err}")]
    Spawn {
        plugin: String,
        #[source]
        err: std::io::Error,
    },
    /// The spec forbids the call (CHECK before 0.4.0, `disableCheck`).
    #[error("{0}")]
    NotCalled(String),
    #[error("network configuration: {0}")]
    Conf(String),
    #[error("{path}: {err}")]
    State {
        path: String,
        #[source]
        err: std::io::Error,
    },
}

impl CniError {
    /// The CNI error code, where the plugin gave one.
    pub fn code(&self) -> Option<u64> {
        match self {
            CniError::Plugin { code, .. } => Some(*code),
            _ => None,
        }
    }
}
