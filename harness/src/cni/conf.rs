//! The network configuration list (`.conflist`) and what each plugin reads
//! on stdin: its own object from the list plus `name`, `cniVersion`,
//! `prevResult` and the `runtimeConfig` of the capabilities it declares
//! (SPEC.md, "Section 1: Network configuration format" and "Section 3:
//! Execution of Network Configurations").

use serde_json::{Map, Value};
use std::path::Path;

use super::CniError;

/// Spec versions whose protocol the runtime speaks. 0.3.x results have the
/// 0.4.0 form; what 0.4.0 added is CHECK and `prevResult` on DEL.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "0.4.0", "0.3.1", "0.3.0"];

/// `a >= b` for dotted spec versions (`0.4.0`, `1.0.0`).
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) >= parts(b)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conflist {
    pub cni_version: String,
    pub name: String,
    /// Each plugin's object as written (its `type` checked to be a string).
    pub plugins: Vec<Value>,
    /// `disableCheck`: the runtime must not call CHECK for this list.
    #[serde(default)]
    pub disable_check: bool,
}

impl Conflist {
    /// A `.conflist` (`plugins: […]`), or a single `.conf` (one plugin with
    /// `type` at the top), as libcni accepts both.
    pub fn from_value(v: &Value) -> Result<Conflist, CniError> {
        let obj = v
            .as_object()
            .ok_or_else(|| CniError::Conf("expected a JSON object".into()))?;
        let text = |key: &str| -> Result<String, CniError> {
            match obj.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(other) => Err(CniError::Conf(format!(
                    "`{key}` must be a non-empty string, found {other}"
                ))),
                None => Err(CniError::Conf(format!("missing `{key}`"))),
            }
        };
        let cni_version = text("cniVersion")?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::Conf(format!(
                "cniVersion {cni_version:?} is not one the runtime speaks (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let name = text("name")?;
        let plugins = match (obj.get("plugins"), obj.get("type")) {
            (Some(Value::Array(list)), _) => list.clone(),
            (Some(other), _) => {
                return Err(CniError::Conf(format!(
                    "`plugins` must be a list, found {other}"
                )))
            }
            (None, Some(_)) => {
                let mut one = obj.clone();
                one.remove("cniVersion");
                one.remove("name");
                vec![Value::Object(one)]
            }
            (None, None) => return Err(CniError::Conf("missing `plugins`".into())),
        };
        if plugins.is_empty() {
            return Err(CniError::Conf("`plugins` is empty".into()));
        }
        for (i, p) in plugins.iter().enumerate() {
            match p.get("type") {
                Some(Value::String(t)) if !t.is_empty() && !t.contains('/') => {}
                _ => {
                    return Err(CniError::Conf(format!(
                        "plugins[{i}]: `type` must be a plugin name (a file in bin_dir)"
                    )))
                }
            }
        }
        let disable_check = match obj.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            // libcni accepts the string forms too.
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                return Err(CniError::Conf(format!(
                    "`disableCheck` must be a boolean, found {other}"
                )))
            }
        };
        Ok(Conflist {
            cni_version,
            name,
            plugins,
            disable_check,
        })
    }

    /// Why CHECK must not run for this list (SPEC.md: not before 0.4.0,
    /// nor when `disableCheck` is set), if it must not.
    pub fn check_refusal(&self) -> Option<String> {
        if !version_at_least(&self.cni_version, "0.4.0") {
            return Some(format!(
                "CHECK is not defined for cniVersion {} (runtimes must not call it before 0.4.0)",
                self.cni_version
            ));
        }
        self.disable_check.then(|| {
            format!(
                "network {:?} sets disableCheck: CHECK not called",
                self.name
            )
        })
    }

    /// Whether DEL (and CHECK) get the cached result as `prevResult`
    /// (0.4.0 and later; libcni passes none to 0.3.x plugins on DEL).
    pub fn passes_prev_result(&self) -> bool {
        version_at_least(&self.cni_version, "0.4.0")
    }

    /// The plugin types in chain order.
    pub fn types(&self) -> Vec<String> {
        (0..self.plugins.len())
            .map(|i| self.plugin_type(i).to_string())
            .collect()
    }

    pub fn plugin_type(&self, i: usize) -> &str {
        self.plugins[i]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Plugin state goes under `state_dir`, never the host's /var/lib/cni:
    /// host-local's `ipam.dataDir` (wherever an IPAM section is) and
    /// tuning's `dataDir` are set (overriding what the file said). Returns
    /// a note per value overridden.
    pub fn confine_state(&mut self, state_dir: &Path) -> Vec<String> {
        let mut notes = Vec::new();
        for p in &mut self.plugins {
            let ty = p
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if ty == "tuning" {
                set_dir(p, &state_dir.join("tuning"), &ty, &mut notes);
            }
            if let Some(ipam) = p.get_mut("ipam") {
                if ipam.get("type").and_then(Value::as_str) == Some("host-local") {
                    set_dir(
                        ipam,
                        &state_dir.join("host-local"),
                        "host-local",
                        &mut notes,
                    );
                }
            }
        }
        notes
    }

    /// The object plugin `i` reads on stdin.
    pub fn plugin_stdin(&self, i: usize, prev: Option<&Value>, runtime: &RuntimeArgs) -> Value {
        let mut obj = self.plugins[i].as_object().cloned().unwrap_or_default();
        obj.insert("name".into(), Value::String(self.name.clone()));
        obj.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(prev) = prev {
            obj.insert("prevResult".into(), prev.clone());
        }
        // Only the capabilities the plugin declares (`capabilities: {portMappings: true}`).
        let mut rc = Map::new();
        if let Some(Value::Object(caps)) = obj.get("capabilities") {
            for (cap, on) in caps {
                if on.as_bool() != Some(true) {
                    continue;
                }
                if let Some(v) = runtime.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(rc));
        }
        Value::Object(obj)
    }
}

fn set_dir(obj: &mut Value, dir: &Path, who: &str, notes: &mut Vec<String>) {
    let dir = dir.display().to_string();
    if let Some(Value::String(old)) = obj.get("dataDir") {
        if *old != dir {
            notes.push(format!(
                "{who}: dataDir {old} replaced by {dir} (plugin state lives in the lab's run directory)"
            ));
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.insert("dataDir".into(), Value::String(dir));
    }
}

/// Capability arguments the runtime can pass (`portMappings`, `bandwidth`,
/// …), by capability name, as kubelet/containerd fill them.
pub type RuntimeArgs = Map<String, Value>;

/// Reads a conflist file (JSON, or YAML which is a superset).
pub fn load_file(path: &Path) -> Result<Value, CniError> {
    let text = std::fs::read_to_string(path).map_err(|err| CniError::State {
        path: path.display().to_string(),
        err,
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Ok(v),
        Err(json) => serde_yaml_ng::from_str::<Value>(&text)
            .map_err(|_| CniError::Conf(format!("{}: not valid JSON: {json}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conflist_and_single_conf() {
        let l = Conflist::from_value(&json!({
            "cniVersion": "1.0.0", "name": "n",
            "plugins": [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]
        }))
        .unwrap();
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugin_type(1), "portmap");
        let c = Conflist::from_value(&json!({"cniVersion": "0.4.0", "name": "n", "type": "ptp"}))
            .unwrap();
        assert_eq!(c.plugin_type(0), "ptp");
        assert!(c.plugins[0].get("name").is_none());
    }

    #[test]
    fn bad_conflists_say_why() {
        for (v, want) in [
            (json!({"name": "n", "plugins": []}), "missing `cniVersion`"),
            (
                json!({"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "x"}]}),
                "not one the runtime speaks",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"ipam": {}}]}),
                "plugins[0]: `type`",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}),
                "plugins[0]: `type`",
            ),
        ] {
            let e = Conflist::from_value(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn check_only_from_0_4_0_and_not_when_disabled() {
        let mk = |v: &str, extra: Value| {
            let mut o = json!({"cniVersion": v, "name": "n", "plugins": [{"type": "ptp"}]});
            if let (Some(m), Value::Object(e)) = (o.as_object_mut(), extra) {
                m.extend(e);
            }
            Conflist::from_value(&o).unwrap()
        };
        assert_eq!(mk("1.0.0", json!({})).check_refusal(), None);
        assert_eq!(mk("0.4.0", json!({})).check_refusal(), None);
        let old = mk("0.3.1", json!({}));
        assert!(old.check_refusal().unwrap().contains("before 0.4.0"));
        assert!(!old.passes_prev_result());
        let off = mk("1.0.0", json!({"disableCheck": true}));
        assert!(off.check_refusal().unwrap().contains("disableCheck"));
        assert!(version_at_least("1.0.0", "0.4.0") && !version_at_least("0.3.1", "0.4.0"));
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_declared_capabilities_only() {
        let l = Conflist::from_value(&json!({
            "cniVersion": "1.0.0", "name": "net1",
            "plugins": [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}]
        }))
        .unwrap();
        let mut rt = RuntimeArgs::new();
        rt.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        rt.insert("bandwidth".into(), json!({"ingressRate": 1000}));
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let s0 = l.plugin_stdin(0, None, &rt);
        assert_eq!(s0["name"], "net1");
        assert!(s0.get("prevResult").is_none() && s0.get("runtimeConfig").is_none());
        let s1 = l.plugin_stdin(1, Some(&prev), &rt);
        assert_eq!(s1["prevResult"], prev);
        assert_eq!(s1["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(s1["runtimeConfig"].get("bandwidth").is_none());
    }

    #[test]
    fn host_local_and_tuning_state_move_to_the_run_dir() {
        let mut l = Conflist::from_value(&json!({
            "cniVersion": "1.0.0", "name": "n",
            "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks"}},
                        {"type": "tuning"}]
        }))
        .unwrap();
        let notes = l.confine_state(Path::new("/run/cnlab/x.cni/node-a"));
        assert_eq!(
            l.plugins[0]["ipam"]["dataDir"],
            "/run/cnlab/x.cni/node-a/host-local"
        );
        assert_eq!(l.plugins[1]["dataDir"], "/run/cnlab/x.cni/node-a/tuning");
        assert_eq!(notes.len(), 1, "{notes:?}");
    }
}
