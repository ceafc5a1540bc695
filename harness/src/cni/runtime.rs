//! ADD through a pod's plugin chain, CHECK and DEL (SPEC.md "Section 4:
//! Plugin Delegation" and "Section 3": ADD in order, each plugin getting
//! the previous result as `prevResult`; CHECK in order with the cached
//! result; DEL in reverse order with the cached result).
//!
//! Everything DEL needs is written to `<run dir>/pods/<container id>.json`
//! before ADD starts and after every plugin, so a lab whose owner died
//! (kill -9) is still torn down plugin by plugin from `cnlab gc`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::conf::{Conflist, RuntimeArgs};
use super::exec::{self, Env};
use super::result::CniResult;
use super::{CniError, Command};
use crate::kernel::NetNs;

/// The pod a runtime sets up, as kubelet describes it to the CNI.
#[derive(Debug, Clone)]
pub struct PodSandbox {
    /// `pod/<ns>/<name>`
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Kernel name of the pod's and the node's namespaces.
    pub netns: String,
    pub node_netns: String,
}

impl PodSandbox {
    /// A sandbox id as a container runtime makes one (hex, stable per pod
    /// of this lab, so a restarted keeper finds its own attachments).
    pub fn container_id(&self, lab_id: &str) -> String {
        crate::plan::names::sha1_hex(&format!("{lab_id}/{}", self.key))
    }

    /// `CNI_ARGS` as kubelet's dockershim/containerd pass them.
    pub fn cni_args(&self, container_id: &str) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={}",
            self.namespace, self.name, self.uid
        )
    }
}

/// One pod's attachment to one network: what ADD ran, what DEL needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub pod: String,
    pub node_netns: String,
    pub env: Env,
    pub conflist: Conflist,
    pub runtime: RuntimeArgs,
    /// The result after the last plugin that succeeded (libcni caches it
    /// under /var/lib/cni/results; here in the lab's run directory).
    pub result: Option<Value>,
    /// Plugins whose ADD was started: DEL runs for the whole list anyway
    /// (plugins must tolerate DEL of what they never made).
    pub started: usize,
}

impl Attachment {
    pub fn new(
        sandbox: &PodSandbox,
        lab_id: &str,
        bin_dirs: Vec<PathBuf>,
        conflist: Conflist,
        runtime: RuntimeArgs,
    ) -> Attachment {
        let container_id = sandbox.container_id(lab_id);
        Attachment {
            pod: sandbox.key.clone(),
            node_netns: sandbox.node_netns.clone(),
            env: Env {
                args: sandbox.cni_args(&container_id),
                container_id,
                netns: NetNs::path_of(&sandbox.netns),
                ifname: "eth0".into(),
                path: bin_dirs,
            },
            conflist,
            runtime,
            result: None,
            started: 0,
        }
    }

    pub fn file(&self, dir: &Path) -> PathBuf {
        pods_dir(dir).join(format!("{}.json", self.env.container_id))
    }

    pub fn save(&self, dir: &Path) -> Result<(), CniError> {
        let path = self.file(dir);
        let state = |err| CniError::State {
            path: path.display().to_string(),
            err,
        };
        std::fs::create_dir_all(pods_dir(dir)).map_err(state)?;
        let data = serde_json::to_vec_pretty(self).map_err(|e| state(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, data).map_err(state)?;
        std::fs::rename(&tmp, &path).map_err(state)
    }

    /// Every attachment recorded under `dir`.
    pub fn load_all(dir: &Path) -> Vec<Attachment> {
        let Ok(entries) = std::fs::read_dir(pods_dir(dir)) else {
            return Vec::new();
        };
        let mut out: Vec<Attachment> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|d| serde_json::from_slice(&d).ok())
            .collect();
        out.sort_by(|a, b| a.pod.cmp(&b.pod));
        out
    }

    /// ADD through the chain; the final result. On a plugin's error the
    /// chain stops there, as libcni's AddNetworkList does.
    pub fn add(&mut self, node: &NetNs, dir: &Path) -> Result<CniResult, CniError> {
        self.save(dir)?;
        let mut prev: Option<Value> = None;
        for i in 0..self.conflist.plugins.len() {
            let plugin = self.conflist.plugin_type(i).to_string();
            let stdin = self.conflist.plugin_stdin(i, prev.as_ref(), &self.runtime);
            self.started = i + 1;
            self.save(dir)?;
            let out = exec::invoke(&plugin, Command::Add, &self.env, &stdin, node)?;
            let out = out.ok_or_else(|| CniError::BadOutput {
                plugin: plugin.clone(),
                command: Command::Add,
                what: "printed no result".into(),
            })?;
            prev = Some(out);
            self.result = prev.clone();
            self.save(dir)?;
        }
        let v = prev.unwrap_or(Value::Null);
        CniResult::parse(&v).map_err(|what| CniError::BadOutput {
            plugin: self
                .conflist
                .plugin_type(self.conflist.plugins.len() - 1)
                .into(),
            command: Command::Add,
            what,
        })
    }

    /// CHECK through the chain with the cached result as `prevResult`
    /// (SPEC.md: only for 0.4.0 and later, never with `disableCheck`, and
    /// the first plugin's error ends it, as libcni's CheckNetworkList).
    pub fn check(&self, node: &NetNs) -> Result<(), CniError> {
        if let Some(why) = self.conflist.check_refusal() {
            return Err(CniError::NotCalled(why));
        }
        let Some(prev) = self.result.as_ref() else {
            return Err(CniError::NotCalled(
                "no cached result: its ADD did not complete".into(),
            ));
        };
        for i in 0..self.conflist.plugins.len() {
            let plugin = self.conflist.plugin_type(i);
            let stdin = self.conflist.plugin_stdin(i, Some(prev), &self.runtime);
            exec::invoke(plugin, Command::Check, &self.env, &stdin, node)?;
        }
        Ok(())
    }

    /// DEL in reverse order with the cached result. Every plugin gets its
    /// DEL even when an earlier one failed; the record is removed only when
    /// all succeeded.
    pub fn del(&self, node: &NetNs, dir: &Path) -> Vec<CniError> {
        let mut errors = Vec::new();
        let prev = self
            .result
            .as_ref()
            .filter(|_| self.conflist.passes_prev_result());
        for i in (0..self.conflist.plugins.len()).rev() {
            let plugin = self.conflist.plugin_type(i);
            let stdin = self.conflist.plugin_stdin(i, prev, &self.runtime);
            if let Err(e) = exec::invoke(plugin, Command::Del, &self.env, &stdin, node) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            let _ = std::fs::remove_file(self.file(dir));
        }
        errors
    }
}

fn pods_dir(dir: &Path) -> PathBuf {
    dir.join("pods")
}

/// DEL for every attachment recorded under `dir` (teardown, and `gc` after
/// the owner died), newest pod names last-in-first-out; the node namespaces
/// must still exist. Returns one message per failure.
pub fn del_all(dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let mut all = Attachment::load_all(dir);
    all.reverse();
    for a in all {
        match NetNs::open(&a.node_netns) {
            Ok(node) => {
                for e in a.del(&node, dir) {
                    failures.push(format!("{}: DEL: {e}", a.pod));
                }
            }
            Err(e) => failures.push(format!("{}: DEL not run: {e}", a.pod)),
        }
    }
    failures
}
