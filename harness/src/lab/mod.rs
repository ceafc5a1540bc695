//! A live lab: plan → registered → namespaces → kernel objects → echo
//! servers; torn down on drop, on error and on SIGINT/SIGTERM (see `live`).

pub mod cni;
pub mod events;
pub mod gc;
pub mod live;
pub mod registry;
pub mod tc;

use crate::topology::PointId;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::kernel::caps::{self, BackendChoice, Capabilities};
use crate::kernel::tc::TcAttach;
use crate::kernel::{build, netns, KernelError, NetNs};
use crate::plan::{self, Backends, LabPlan, NsIdx};
use crate::probe::EchoServers;
use crate::topology::Resolved;
use registry::LabRecord;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cnlab needs root to create network namespaces: run it with sudo (e.g. `sudo -E cargo test`, `sudo cnlab check FILE`)")]
    NotRoot,
    #[error("kernel capabilities: {0}")]
    Backend(String),
    #[error("planning the lab: {0}")]
    Plan(#[from] plan::PlanError),
    #[error("{0}")]
    Kernel(#[from] KernelError),
    #[error("registering the lab in {dir}: {err}", dir = registry::RUN_DIR)]
    Registry { err: std::io::Error },
    #[error("starting echo servers: {0}")]
    Servers(String),
    #[error("lab {0}: {1}")]
    Attach(String, String),
    #[error("CNI runtime: {0}")]
    Cni(String),
    #[error("{0}")]
    Event(String),
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub backend: BackendChoice,
    /// Topology file, recorded for `cnlab status`.
    pub file: Option<String>,
    /// How trunk VLAN programs are hooked; `None`: `CNLAB_TC_ATTACH`, else
    /// the kernel's best (`caps::choose_tc_attach`).
    pub tc_attach: Option<TcAttach>,
}

impl Default for UpOptions {
    /// The backend `CNLAB_BACKEND` names (see `BackendChoice::from_env`),
    /// `Auto` when unset; a bad value is reported and `Auto` used.
    fn default() -> Self {
        let backend = BackendChoice::from_env().unwrap_or_else(|e| {
            eprintln!("cnlab: {e}; using auto");
            BackendChoice::Auto
        });
        UpOptions {
            backend,
            file: None,
            tc_attach: None,
        }
    }
}

/// How long each phase of bring-up took.
#[derive(Debug, Clone, Default)]
pub struct UpTimings {
    pub plan: Duration,
    pub namespaces: Duration,
    pub build: Duration,
    /// Of `build`: loading the trunk VLAN programs and hooking them.
    pub tc: Duration,
    pub servers: Duration,
}

pub struct Lab {
    id: String,
    plan: LabPlan,
    names: Vec<String>,
    ns: Vec<NetNs>,
    servers: Option<EchoServers>,
    /// eBPF VLAN attachments (trunk ENIs); detached on drop.
    tc: Option<tc::TcHandles>,
    /// An owned lab tears itself down on drop; an attached one (another
    /// process's lab, for `trace` or `shell`) does not.
    owned: bool,
    next_port: AtomicU16,
    pub timings: UpTimings,
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Kernel capabilities, probed in a scratch namespace once per boot: the
/// answer is cached in /run/cnlab (a tmpfs, so a reboot or a new kernel
/// probes again) and in memory for the rest of the process.
pub fn capabilities() -> Result<Capabilities, LabError> {
    static CAPS: OnceLock<Result<Capabilities, String>> = OnceLock::new();
    CAPS.get_or_init(|| {
        let key = boot_key();
        let cache = std::path::Path::new(registry::RUN_DIR).join("capabilities.json");
        if let Some(c) = std::fs::read(&cache)
            .ok()
            .and_then(|d| serde_json::from_slice::<(String, Capabilities)>(&d).ok())
            .and_then(|(k, c)| (k == key).then_some(c))
        {
            return Ok(c);
        }
        let c = caps::probe().map_err(|e| e.to_string())?;
        if let Ok(data) = serde_json::to_vec(&(key, &c)) {
            let _ = std::fs::create_dir_all(registry::RUN_DIR);
            let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, data).is_ok() {
                let _ = std::fs::rename(&tmp, &cache);
            }
        }
        Ok(c)
    })
    .clone()
    .map_err(LabError::Backend)
}

/// This boot of this kernel: what the capability cache is valid for.
fn boot_key() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    format!(
        "{} {} cnlab {} caps 3",
        read("/proc/sys/kernel/random/boot_id"),
        read("/proc/sys/kernel/osrelease"),
        env!("CARGO_PKG_VERSION")
    )
}

/// How this process hooks tc programs: `requested`, else `CNLAB_TC_ATTACH`,
/// else what the kernel does best.
pub fn tc_attach(requested: Option<TcAttach>) -> Result<TcAttach, LabError> {
    let requested = match requested {
        Some(m) => Some(m),
        None => TcAttach::from_env().map_err(LabError::Backend)?,
    };
    caps::choose_tc_attach(&capabilities()?, requested).map_err(LabError::Backend)
}

/// A lab holds a socket per echo server (namespaces are opened only while
/// entered, see `NetNs`): a 10,000-pod lab needs far more than the usual
/// soft RLIMIT_NOFILE (1,024).
/// Raises this process's soft limit (and, being root, its hard limit up to
/// `fs.nr_open`) to what the lab needs: a per-process limit, nothing
/// host-wide; says so when even that is too low.
pub fn ensure_fd_limit(need: u64) -> Result<(), LabError> {
    netns::raise_fd_limit(need).map_err(LabError::Backend)
}

pub fn backends(choice: BackendChoice) -> Result<Backends, LabError> {
    caps::choose(&capabilities()?, choice).map_err(LabError::Backend)
}

/// Descriptors a lab may open beyond its server sockets; `cnlab bench
/// --case scale` reports the peak it measured against this.
pub const FD_HEADROOM: u64 = 512;

/// Probe source ports come from this range, one per probe, so that taps can
/// tell the probes of one lab apart.
const PROBE_PORTS: (u16, u16) = (20000, 29999);

impl Lab {
    /// Brings a lab up from a validated topology.
    pub fn up(r: &Resolved, opts: &UpOptions) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let t0 = Instant::now();
        let backends = backends(opts.backend)?;
        let plan = plan::plan(r, backends)?;
        let plan_time = t0.elapsed();
        // CNI plugins give pod addresses at bring-up: plan again with them.
        let replan = |adds: &plan::agent::plugins::CniAdds| plan::plan_cni(r, backends, adds);
        Self::up_inner(plan, opts, plan_time, Some(&replan))
    }

    /// Brings a lab up from a plan (tests and benchmarks build plans directly).
    pub fn up_plan(plan: LabPlan, opts: &UpOptions, plan_time: Duration) -> Result<Lab, LabError> {
        Self::up_inner(plan, opts, plan_time, None)
    }

    fn up_inner(
        plan: LabPlan,
        opts: &UpOptions,
        plan_time: Duration,
        replan: Option<&dyn Fn(&plan::agent::plugins::CniAdds) -> Result<LabPlan, plan::PlanError>>,
    ) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let id = registry::new_id();
        let names: Vec<String> = plan
            .namespaces
            .iter()
            .map(|n| format!("{}{id}-{}", registry::NS_PREFIX, n.short))
            .collect();
        // Register before creating anything: whatever happens next, gc finds it.
        let own_pid = std::process::id();
        let record = LabRecord {
            id: id.clone(),
            name: plan.name.clone(),
            file: opts.file.clone(),
            owner_pid: own_pid,
            owner_start: registry::process_start_time(own_pid).unwrap_or(0),
            created_unix: registry::now_unix(),
            state: "starting".into(),
            namespaces: names.clone(),
        };
        record.save().map_err(|err| LabError::Registry { err })?;
        live::register(&id, &names);
        let mut lab = Lab {
            id,
            plan,
            names,
            ns: Vec::new(),
            servers: None,
            tc: None,
            owned: true,
            next_port: AtomicU16::new(PROBE_PORTS.0),
            timings: UpTimings {
                plan: plan_time,
                ..Default::default()
            },
        };
        // One descriptor per server socket, and room for what bring-up and
        // probing open on top (a namespace and a netlink socket per build
        // worker, taps, clients, BPF programs and maps).
        let sockets: usize = lab
            .plan
            .namespaces
            .iter()
            .flat_map(|n| &n.servers)
            .map(|s| usize::from(s.tcp) + usize::from(s.udp))
            .sum();
        ensure_fd_limit(sockets as u64 + FD_HEADROOM)?;
        // From here on, an early return drops `lab`, which tears it down.
        registry::save_plan(&lab.id, &lab.plan).map_err(|err| LabError::Registry { err })?;
        if lab.plan.namespaces.iter().any(|n| n.nft.is_some()) {
            crate::kernel::nft::warm_up();
        }
        let has_tc = lab.plan.namespaces.iter().any(|n| !n.tc.is_empty());
        let programs = if has_tc {
            Some(tc::preload(&lab.plan, tc_attach(opts.tc_attach)?))
        } else {
            None
        };
        let t = Instant::now();
        lab.ns = netns::create_all(&lab.names)?;
        lab.timings.namespaces = t.elapsed();
        let t = Instant::now();
        build::build(&lab.plan, &lab.ns)?;
        if let Some(programs) = programs {
            let t = Instant::now();
            lab.tc = Some(tc::attach_all(&lab.plan, &lab.ns, programs)?);
            lab.timings.tc = t.elapsed();
        }
        if let Some(rt) = lab.plan.cni_runtime.clone() {
            let replan = replan.ok_or_else(|| {
                LabError::Cni(
                    "a plan with CNI plugins is brought up from its topology (Lab::up)".into(),
                )
            })?;
            let added = cni::add_all(&lab.id, &rt, &lab.names, &lab.ns)?;
            let mut after = replan(&added.adds)?;
            cni::apply_replan(&lab.plan, &after, &lab.ns)?;
            after.notes.extend(added.notes);
            cni::save_results(&lab.id, &added.records)?;
            lab.plan = after;
            registry::save_plan(&lab.id, &lab.plan).map_err(|err| LabError::Registry { err })?;
        }
        lab.apply_impairments()?;
        lab.timings.build = t.elapsed();
        let t = Instant::now();
        let servers: Vec<_> = lab
            .plan
            .namespaces
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.servers.iter().map(move |s| (i, s.clone())))
            .map(|(i, s)| (&lab.ns[i], s))
            .collect();
        lab.servers =
            Some(EchoServers::start(&servers).map_err(|e| LabError::Servers(e.to_string()))?);
        lab.timings.servers = t.elapsed();
        let tm = &lab.timings;
        tracing::info!(
            "lab {} up: plan {:?}, namespaces {:?}, build {:?} (tc {:?}), servers {:?}",
            lab.id,
            tm.plan,
            tm.namespaces,
            tm.build,
            tm.tc,
            tm.servers
        );
        let mut record = record;
        record.state = "ready".into();
        record.save().map_err(|err| LabError::Registry { err })?;
        Ok(lab)
    }

    /// Opens a lab another process owns (for `trace`, `probe`, `shell`).
    pub fn attach(id: &str) -> Result<Lab, LabError> {
        let record = LabRecord::load(id)
            .map_err(|e| LabError::Attach(id.into(), format!("no such lab ({e})")))?;
        if !record.owner_alive() {
            return Err(LabError::Attach(
                id.into(),
                format!(
                    "its owner (pid {}) is gone; run `cnlab gc`",
                    record.owner_pid
                ),
            ));
        }
        let plan = registry::load_plan(id)
            .map_err(|e| LabError::Attach(id.into(), format!("reading its plan: {e}")))?;
        let ns = record
            .namespaces
            .iter()
            .map(|n| NetNs::open(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lab {
            id: id.into(),
            plan,
            names: record.namespaces,
            ns,
            servers: None,
            tc: None,
            owned: false,
            // Another process probes from the top of the range downwards.
            next_port: AtomicU16::new(PROBE_PORTS.0 + (std::process::id() % 5000) as u16 + 5000),
            timings: UpTimings::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn plan(&self) -> &LabPlan {
        &self.plan
    }
    pub fn namespace_names(&self) -> &[String] {
        &self.names
    }
    /// Kernel ids of the lab's trunk VLAN programs (none without trunks).
    pub fn tc_program_ids(&self) -> Vec<u32> {
        self.tc
            .as_ref()
            .map(|t| t.program_ids())
            .unwrap_or_default()
    }

    /// How the lab's trunk VLAN programs are hooked, if it has any.
    pub fn tc_attach(&self) -> Option<TcAttach> {
        self.tc.as_ref().and_then(|t| t.mode())
    }

    pub fn netns(&self, i: NsIdx) -> &NetNs {
        &self.ns[i]
    }
    /// The namespace keyed `key` (a [`crate::topology::PointId`] or its text).
    pub fn netns_by_key<K: std::fmt::Display + ?Sized>(&self, key: &K) -> Option<&NetNs> {
        self.plan.ns_index(key).map(|i| &self.ns[i])
    }

    /// A source port no other probe of this lab is using right now.
    pub fn next_probe_port(&self) -> u16 {
        let span = PROBE_PORTS.1 - PROBE_PORTS.0 + 1;
        let n = self.next_port.fetch_add(1, Ordering::Relaxed);
        PROBE_PORTS.0 + (n - PROBE_PORTS.0) % span
    }

    /// Restarts a pod the way a kubelet recreates its sandbox: its network
    /// namespace is deleted and created anew, the CNI plumbing is applied
    /// again from the plan, and its echo servers start again. The address
    /// is the plan's: a pod keeps it across restarts, as a Fixed
    /// PodNetworking (StatefulSet) pod does under Terway.
    pub fn restart_pod(&mut self, pod: &str) -> Result<(), LabError> {
        // A name that does not parse is reported as not found, as written.
        let key = PointId::parse_pod(pod).map_or_else(|_| pod.to_string(), |k| k.to_string());
        let Some(i) = self.plan.ns_index(&key) else {
            return Err(LabError::Attach(
                self.id.clone(),
                format!("no pod namespace {key} (pending pods and hostNetwork pods have none)"),
            ));
        };
        let name = self.names[i].clone();
        // CNI DEL first: remove the pod's interfaces, which takes the host
        // ends of its veths with them. Deleting the namespace alone would not
        // do it while anything (its echo servers) still holds it open.
        self.ns[i].run(|| -> Result<(), KernelError> {
            let mut nl = crate::kernel::netlink::Netlink::open()?;
            for l in nl.links()? {
                if l.name != "lo" && nl.link_index(&l.name)?.is_some() {
                    nl.del_link(&l.name)?;
                }
            }
            Ok(())
        })??;
        netns::delete(&name)?;
        self.ns[i] = NetNs::create(&name)?;
        build::rebuild_namespace(&self.plan, &self.ns, i)?;
        if let Some(servers) = self.servers.as_mut() {
            for s in &self.plan.namespaces[i].servers {
                servers
                    .add(&self.ns[i], s)
                    .map_err(|e| LabError::Servers(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Tears the lab down now (also what drop does).
    pub fn down(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        if !self.owned {
            return;
        }
        self.owned = false;
        // Stop servers and close our namespace handles first, so the kernel
        // can free each namespace as soon as its mount is gone.
        let t = Instant::now();
        self.servers = None;
        let servers = t.elapsed();
        self.tc = None;
        self.ns.clear();
        remove_lab_objects(&self.id, &self.names);
        live::unregister(&self.id);
        tracing::debug!(
            "lab {} down: servers stopped {servers:?}, namespaces and files removed {:?}",
            self.id,
            t.elapsed() - servers
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Deletes a lab's namespaces (never link by link: the kernel frees the
/// links with the namespace), its BPF pins and its files under /run/cnlab.
pub fn remove_lab_objects(id: &str, names: &[String]) {
    // Namespaces of the lab that its record does not name (a CNI plugin's,
    // a restarted pod's): a set, not a scan per name (20,000 in a big lab).
    let mut all: Vec<String> = names.to_vec();
    let known: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let extra: Vec<String> = netns::list(&format!("{}{id}-", registry::NS_PREFIX))
        .into_iter()
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    all.extend(extra);
    // CNI DEL for every ADD while the namespaces still exist.
    for f in cni::del_all(id) {
        tracing::warn!("tearing down lab {id}: {f}");
    }
    if let Err(e) = build::teardown(&all) {
        tracing::warn!("tearing down lab {id}: {e}");
    }
    let pins = std::path::Path::new(registry::BPF_PIN_DIR).join(id);
    if pins.exists() {
        let _ = std::fs::remove_dir_all(&pins);
    }
    LabRecord::remove_files(id);
}
