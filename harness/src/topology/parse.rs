//! Loading a topology file: YAML → `Resolved`, reporting every problem at
//! once with its YAML path and line.
//!
//! serde stops at the first error, so the document is first read into a
//! `serde_yaml_ng::Value` and then taken apart by hand, one field at a time:
//! a bad field is reported and replaced by a placeholder, and the rest of the
//! file is still read. Kubernetes objects, whose fields all have defaults, are
//! deserialized with serde; when one fails, `blame` narrows the failure down
//! to the exact fields (see there). The result then goes through
//! `validate`, and problems that only repeat a reading error are dropped.

mod faults;

use super::k8s::PodNetworking;
use super::lines::{is_within, join_index, join_key, render, LineMap, Seg};
use super::model::*;
use super::validate;
use super::Resolved;
use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// YAML path (`nodes[2].vswitch`); empty for the whole document.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    /// A problem at `path`, its line looked up in `lines` (nearest ancestor).
    pub fn at(lines: &LineMap, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            path: path.to_string(),
            line: lines.line(path),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl PartialOrd for Problem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Problem {
    /// By line (unknown last), then path.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.line.unwrap_or(usize::MAX), &self.path, &self.message).cmp(&(
            other.line.unwrap_or(usize::MAX),
            &other.path,
            &other.message,
        ))
    }
}

/// Everything wrong with one topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file name (or whatever the caller called the text).
    pub origin: String,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

fn by_line(problems: &[Problem]) -> Vec<&Problem> {
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort();
    sorted
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} problem(s)", self.origin, self.errors.len())?;
        if !self.warnings.is_empty() {
            write!(f, ", {} warning(s)", self.warnings.len())?;
        }
        for p in by_line(&self.errors) {
            write!(f, "\n  {p}")?;
        }
        for p in by_line(&self.warnings) {
            write!(f, "\n  warning: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// A topology that loaded and validated, with the warnings met on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub resolved: Resolved,
    pub warnings: Vec<Problem>,
    /// Where each path is written in the file.
    pub lines: LineMap,
}

/// Reads, parses and validates a topology file.
pub fn load_file(path: &Path) -> Result<Loaded, Report> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &origin),
        Err(e) => Err(Report {
            origin,
            errors: vec![Problem {
                path: String::new(),
                line: None,
                message: format!("cannot read the file: {e}"),
            }],
            warnings: Vec::new(),
        }),
    }
}

/// Parses and validates a topology given as text; `origin` names it in the
/// report. The first YAML document is the topology; further documents (a
/// pasted `kubectl get -o yaml`, `kind: List` or not) are Kubernetes objects
/// added to its `kubernetes:` list.
pub fn load_str(text: &str, origin: &str) -> Result<Loaded, Report> {
    // Editors on Windows write a byte order mark; YAML does not want it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let report = |errors, warnings| Report {
        origin: origin.to_string(),
        errors,
        warnings,
    };
    let mut lines = LineMap::parse(text);
    // serde stops at the first repeated key and names one line; the event
    // walk has seen them all.
    let duplicates: Vec<Problem> = lines
        .duplicates()
        .iter()
        .map(|(path, first, again)| Problem {
            path: path.clone(),
            line: Some(*again),
            message: format!(
                "duplicate key `{}`: first at line {first}, again at line {again}",
                last_key(path)
            ),
        })
        .collect();
    if !duplicates.is_empty() {
        return Err(report(duplicates, Vec::new()));
    }
    let mut docs = match documents(text) {
        Ok(d) => d.into_iter(),
        Err(e) => return Err(report(vec![syntax_problem(text, &e)], Vec::new())),
    };
    let mut value = docs.next().unwrap_or(Value::Null);
    gather_kubernetes(&mut value, docs.collect(), &mut lines);
    let mut cx = Cx {
        lines: &lines,
        errors: Vec::new(),
        warnings: Vec::new(),
        broken: Vec::new(),
        base_dir: Path::new(origin)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let resolved = resolve(&mut cx, &value);
    let Cx {
        mut errors,
        mut warnings,
        broken,
        ..
    } = cx;
    // A field that could not be read holds a placeholder; whatever the
    // validator says about it would only repeat the reading error.
    errors.extend(
        validate::validate_with(&resolved, &lines, &broken)
            .into_iter()
            .filter(|p| !broken.iter().any(|b| is_within(&p.path, b))),
    );
    warnings.extend(validate::advise(&resolved, &lines));
    // Paths as the file writes them (a pasted List, a second document).
    for p in errors.iter_mut().chain(warnings.iter_mut()) {
        p.path = lines.display(&p.path);
    }
    if errors.is_empty() {
        Ok(Loaded {
            resolved,
            warnings,
            lines,
        })
    } else {
        Err(report(errors, warnings))
    }
}

/// The last key of a path (`nodes[0].name` → `name`).
fn last_key(path: &str) -> String {
    match super::lines::split(path).pop() {
        Some(Seg::Key(k)) => k,
        Some(Seg::Index(i)) => i.to_string(),
        None => String::new(),
    }
}

/// Every YAML document of `text`, merge keys (`<<:`) applied.
fn documents(text: &str) -> Result<Vec<Value>, serde_yaml_ng::Error> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let mut v = Value::deserialize(doc)?;
        v.apply_merge()?;
        out.push(v);
    }
    Ok(out)
}

/// Flattens `kubernetes:` and the documents after the first into one list of
/// objects, unpacking `kind: List` (what `kubectl get pods -o yaml` prints);
/// `lines` learns where each object of the flat list is written.
fn gather_kubernetes(root: &mut Value, extra: Vec<Value>, lines: &mut LineMap) {
    let Value::Mapping(top) = root else { return };
    let mut sources: Vec<(Value, String)> = Vec::new();
    match top.get("kubernetes") {
        Some(Value::Sequence(items)) => sources.extend(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), join_index("kubernetes", i))),
        ),
        Some(Value::Null) | None => {}
        // Not a list: `resolve` says so; nothing to flatten.
        Some(_) => return,
    }
    sources.extend(
        extra
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_null())
            .map(|(i, v)| (v, LineMap::document_root(i + 1))),
    );
    let mut flat = Vec::new();
    for (v, at) in sources {
        match (kube_kind(&v), v.get("items")) {
            (Some("List"), Some(Value::Sequence(items))) => {
                let items_at = join_key(&at, "items");
                for (j, item) in items.iter().enumerate() {
                    flat.push((item.clone(), join_index(&items_at, j)));
                }
            }
            _ => flat.push((v, at)),
        }
    }
    if flat.is_empty() {
        return;
    }
    for (n, (_, at)) in flat.iter().enumerate() {
        lines.alias(&join_index("kubernetes", n), at);
    }
    top.insert(
        Value::String("kubernetes".into()),
        Value::Sequence(flat.into_iter().map(|(v, _)| v).collect()),
    );
}

fn syntax_problem(text: &str, e: &serde_yaml_ng::Error) -> Problem {
    let mut message = e.to_string();
    // The message repeats the position; the line is shown by `Problem`.
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    let line = e.location().map(|l| l.line());
    // A tab in the indentation gives "found character that cannot start any
    // token", which does not say what is wrong.
    let tabbed = line
        .and_then(|l| text.lines().nth(l.saturating_sub(1)))
        .is_some_and(|l| {
            l.chars()
                .take_while(|c| c.is_whitespace())
                .any(|c| c == '\t')
        });
    if tabbed {
        message = "a tab indents this line; YAML indents with spaces only".into();
    }
    Problem {
        path: String::new(),
        line,
        message: format!("YAML syntax: {message}"),
    }
}

/// The `kind` of a raw Kubernetes object.
pub fn kube_kind(v: &Value) -> Option<&str> {
    v.get("kind").and_then(Value::as_str)
}

/// Indices into `topo.kubernetes` of the objects `resolve` typed, in order:
/// `pods[i]` came from `kubernetes[pods_at[i]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeIndex {
    pub pods: Vec<usize>,
    pub services: Vec<usize>,
    pub podnetworkings: Vec<usize>,
}

impl KubeIndex {
    pub fn of(topo: &Topology) -> KubeIndex {
        let mut ix = KubeIndex::default();
        for (i, v) in topo.kubernetes.iter().enumerate() {
            match kube_kind(v) {
                Some("Pod") => ix.pods.push(i),
                Some("Service") => ix.services.push(i),
                Some("PodNetworking") => ix.podnetworkings.push(i),
                _ => {}
            }
        }
        ix
    }
}

// ---------------------------------------------------------------- context

struct Cx<'l> {
    lines: &'l LineMap,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    /// Paths whose value could not be read and holds a placeholder.
    broken: Vec<String>,
    /// The topology file's directory (relative conflist paths).
    base_dir: std::path::PathBuf,
}

impl Cx<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(Problem::at(self.lines, path, message));
        self.broken.push(path.to_string());
    }
    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem::at(self.lines, path, message));
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_string(),
    }
}

/// A mapping being read field by field.
struct Obj<'v> {
    map: Option<&'v Mapping>,
    path: String,
}

impl<'v> Obj<'v> {
    /// `what` names the expected thing in the error when `v` is no mapping.
    fn new(cx: &mut Cx, v: &'v Value, path: &str, what: &str) -> Obj<'v> {
        let map = match v {
            Value::Mapping(m) => Some(m),
            other => {
                cx.error(path, format!("expected {what}, found {}", describe(other)));
                None
            }
        };
        Obj {
            map,
            path: path.to_string(),
        }
    }

    fn at(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    /// The value under `key`; absent and null are the same.
    fn raw(&self, key: &str) -> Option<&'v Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn opt<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        leaf: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let v = self.raw(key)?;
        match leaf(v) {
            Ok(t) => Some(t),
            Err(e) => {
                cx.error(&self.at(key), e);
                None
            }
        }
    }

    fn req<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        leaf: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        if self.map.is_some() && self.raw(key).is_none() {
            cx.error(&self.at(key), format!("missing required key `{key}`"));
            return None;
        }
        self.opt(cx, key, leaf)
    }

    fn nested<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &Value, &str) -> T,
    ) -> Option<T> {
        let v = self.raw(key)?;
        Some(read(cx, v, &self.at(key)))
    }

    fn items(&self, cx: &mut Cx, key: &str) -> Option<(&'v [Value], String)> {
        let v = self.raw(key)?;
        match v {
            Value::Sequence(items) => Some((items, self.at(key))),
            other => {
                cx.error(
                    &self.at(key),
                    format!("expected a list, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A list of records, one reader call per item (placeholders keep the
    /// indices aligned with the file).
    fn list<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        mut read: impl FnMut(&mut Cx, &Value, &str) -> T,
    ) -> Vec<T> {
        let Some((items, path)) = self.items(cx, key) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| read(cx, item, &join_index(&path, i)))
            .collect()
    }

    /// A list of scalars; bad items are reported and left out.
    fn leaves<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        leaf: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let (items, path) = self.items(cx, key)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match leaf(item) {
                Ok(t) => out.push(t),
                Err(e) => cx.error(&join_index(&path, i), e),
            }
        }
        Some(out)
    }

    /// Reports keys not in `known`: a misspelt key would silently drop
    /// an assertion or a security group, so it is an error.
    fn finish(&self, cx: &mut Cx, known: &[&str]) {
        let Some(map) = self.map else { return };
        for k in map.keys() {
            let key = key_text(k);
            if !known.contains(&key.as_str()) {
                let message = match did_you_mean(&key, known) {
                    Some(near) => format!("unknown key `{key}`; did you mean `{near}`?"),
                    None => format!("unknown key `{key}` (known here: {})", known.join(", ")),
                };
                cx.errors
                    .push(Problem::at(cx.lines, &self.at(&key), message));
            }
        }
    }
}

/// The known word closest to `word`, when it is close enough to be a typo.
pub fn did_you_mean<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&word, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1) || k.contains(word.as_str()) && word.len() > 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a transposition counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

// ---------------------------------------------------------------- leaves

fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        // `name: 1234` is a name, not a number.
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected text, found {}", describe(other))),
    }
}

fn ip(v: &Value) -> Result<Ipv4Addr, String> {
    let s = text(v)?;
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

fn cidr(v: &Value) -> Result<Ipv4Net, String> {
    let s = text(v)?;
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 10.0.0.0/16)"))
}

fn whole(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("expected a whole number, found {}", describe(v)))
}

fn uint<T: TryFrom<u64>>(v: &Value) -> Result<T, String> {
    let n = whole(v)?;
    T::try_from(n).map_err(|_| format!("{n} is too large"))
}

fn port(v: &Value) -> Result<u16, String> {
    match whole(v) {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!(
            "expected a port number 1..=65535, found {}",
            describe(v)
        )),
    }
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, found {}", describe(v)))
}

fn port_spec(v: &Value) -> Result<PortSpec, String> {
    match v {
        Value::Number(_) => Ok(PortSpec::Number(port(v)?)),
        Value::String(s) => Ok(PortSpec::Text(s.clone())),
        other => Err(format!(
            "expected ports like 80, \"8000-9000\" or \"80,443\", found {}",
            describe(other)
        )),
    }
}

fn string_map(v: &Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Mapping(m) = v else {
        return Err(format!("expected a mapping, found {}", describe(v)));
    };
    m.iter()
        .map(|(k, v)| {
            Ok((
                key_text(k),
                text(v).map_err(|e| format!("{}: {e}", key_text(k)))?,
            ))
        })
        .collect()
}

fn kube_version_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Err(format!(
            "quote the version (kubernetes: \"1.30\"): unquoted, YAML reads it as the number {n}"
        )),
        other => Err(format!(
            "expected a version like \"1.24\", found {}",
            describe(other)
        )),
    }
}

/// `cluster.terway_version`: a quoted version like "1.4.1" or "v1.17.5".
fn terway_version_text(v: &Value) -> Result<String, String> {
    let s = kube_version_text(v)?;
    super::validate::KubeVersion::parse(&s)
        .map(|_| s.clone())
        .map_err(|_| format!("{s:?} is not a Terway version (like \"1.4.1\" or \"v1.17.5\")"))
}

/// A value out of a closed set, named in errors with every accepted value.
fn choice<T: Copy>(
    what: &'static str,
    options: &'static [(&'static str, T)],
) -> impl Fn(&Value) -> Result<T, String> {
    move |v| {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let s = match v {
            Value::String(s) => s.trim().to_ascii_lowercase(),
            other => {
                return Err(format!(
                    "expected a {what}, found {} (accepted: {})",
                    describe(other),
                    names.join(", ")
                ))
            }
        };
        options
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("unknown {what} {s:?} (accepted: {})", names.join(", ")))
    }
}

pub(crate) const CNIS: &[(&str, Cni)] = &[
    ("flannel", Cni::Flannel),
    ("flannel-vxlan", Cni::FlannelVxlan),
    ("terway-vpc", Cni::TerwayVpc),
    ("terway-eni", Cni::TerwayEni),
    ("terway-eniip", Cni::TerwayEniip),
    ("terway-eniip-ipvlan", Cni::TerwayEniipIpvlan),
    ("terway-trunking", Cni::TerwayTrunking),
    ("plugins", Cni::Plugins),
];
pub(crate) const PROXIES: &[(&str, ProxyMode)] = &[
    ("ipvs", ProxyMode::Ipvs),
    ("iptables", ProxyMode::Iptables),
    ("nftables", ProxyMode::Nftables),
];
pub(crate) const DIRECTIONS: &[(&str, Direction)] = &[
    ("ingress", Direction::Ingress),
    ("egress", Direction::Egress),
];
pub(crate) const ACTIONS: &[(&str, Action)] = &[("accept", Action::Accept), ("drop", Action::Drop)];
pub(crate) const RULE_PROTOS: &[(&str, Proto)] = &[
    ("tcp", Proto::Tcp),
    ("udp", Proto::Udp),
    ("icmp", Proto::Icmp),
    ("all", Proto::All),
];
pub(crate) const PROBE_PROTOS: &[(&str, Proto)] = &[
    ("tcp", Proto::Tcp),
    ("udp", Proto::Udp),
    ("icmp", Proto::Icmp),
];
pub(crate) const LISTENER_PROTOS: &[(&str, Proto)] = &[("tcp", Proto::Tcp), ("udp", Proto::Udp)];
pub(crate) const REFUSED_BY: &[(&str, RefusedBy)] =
    &[("rst", RefusedBy::Rst), ("icmp", RefusedBy::Icmp)];
pub(crate) const VERDICTS: &[(&str, Verdict)] = &[
    ("connected", Verdict::Connected),
    ("refused", Verdict::Refused),
    ("timeout", Verdict::Timeout),
    ("pending", Verdict::Pending),
];
pub(crate) const ROUTE_ACTIONS: &[(&str, RouteAction)] = &[
    ("add", RouteAction::Add),
    ("replace", RouteAction::Replace),
    ("remove", RouteAction::Remove),
];

// ---------------------------------------------------------------- sections

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "cluster",
    "vpc",
    "nodes",
    "externals",
    "load_balancers",
    "kubernetes",
    "expect",
    "impairments",
    "events",
];

fn resolve(cx: &mut Cx, root: &Value) -> Resolved {
    let top = Obj::new(
        cx,
        root,
        "",
        "a topology (a mapping with name, cluster, vpc, nodes, …)",
    );
    let topo = Topology {
        name: top.opt(cx, "name", text).unwrap_or_default(),
        description: top.opt(cx, "description", text),
        cluster: top.nested(cx, "cluster", cluster).unwrap_or_default(),
        vpc: top.nested(cx, "vpc", vpc).unwrap_or_default(),
        nodes: top.list(cx, "nodes", node),
        externals: top.list(cx, "externals", external),
        load_balancers: top.list(cx, "load_balancers", load_balancer),
        kubernetes: top
            .items(cx, "kubernetes")
            .map(|(items, _)| items.to_vec())
            .unwrap_or_default(),
        expect: top.list(cx, "expect", expectation),
        impairments: top.list(cx, "impairments", faults::impairment),
        events: top.list(cx, "events", faults::event),
    };
    top.finish(cx, TOP_KEYS);

    let mut resolved = Resolved {
        pods: Vec::new(),
        services: Vec::new(),
        podnetworkings: Vec::new(),
        endpoint_slices: Vec::new(),
        topo,
    };
    for (i, v) in resolved.topo.kubernetes.iter().enumerate() {
        let path = join_index("kubernetes", i);
        if !v.is_mapping() {
            cx.error(
                &path,
                format!(
                    "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                    describe(v)
                ),
            );
            continue;
        }
        let api = v.get("apiVersion").and_then(Value::as_str);
        match v.get("kind") {
            Some(Value::String(kind)) => match kind.as_str() {
                "Pod" => {
                    check_api(cx, &path, api, "v1");
                    resolved.pods.push(kube_object(cx, v, &path));
                }
                "Service" => {
                    check_api(cx, &path, api, "v1");
                    resolved.services.push(kube_object(cx, v, &path));
                }
                "PodNetworking" => {
                    check_api(cx, &path, api, "network.alibabacloud.com/v1beta1");
                    resolved.podnetworkings.push(kube_object::<PodNetworking>(cx, v, &path));
                }
                "EndpointSlice" => {
                    check_api(cx, &path, api, "discovery.k8s.io/v1");
                    let es: super::k8s::EndpointSlice = kube_object(cx, v, &path);
                    if es.service().is_none() {
                        cx.error(
                            &join_key(&join_key(&path, "metadata"), "labels"),
                            format!(
                                "an EndpointSlice needs the label {} naming its Service",
                                super::k8s::SERVICE_NAME_LABEL
                            ),
                        );
                    }
                    resolved.endpoint_slices.push(es);
                }
                other => cx.warn(
                    &join_key(&path, "kind"),
                    format!("kind {other:?} is not modelled and is skipped (modelled: Pod, Service, EndpointSlice, PodNetworking)"),
                ),
            },
            Some(other) => cx.error(
                &join_key(&path, "kind"),
                format!("expected a kind like Pod, found {}", describe(other)),
            ),
            None => cx.error(&join_key(&path, "kind"), "missing required key `kind`"),
        }
    }
    resolved
}

fn check_api(cx: &mut Cx, path: &str, api: Option<&str>, expected: &str) {
    if let Some(api) = api {
        if api != expected {
            cx.warn(
                &join_key(path, "apiVersion"),
                format!("apiVersion {api:?} read as {expected}"),
            );
        }
    }
}

fn cluster(cx: &mut Cx, v: &Value, path: &str) -> Cluster {
    let o = Obj::new(cx, v, path, "a mapping");
    let d = Cluster::default();
    let c = Cluster {
        kubernetes: o
            .opt(cx, "kubernetes", kube_version_text)
            .unwrap_or(d.kubernetes),
        cni: o.opt(cx, "cni", choice("cni", CNIS)).unwrap_or(d.cni),
        proxy: o
            .opt(cx, "proxy", choice("proxy mode", PROXIES))
            .unwrap_or(d.proxy),
        service_cidr: o.opt(cx, "service_cidr", cidr),
        pod_cidr: o.opt(cx, "pod_cidr", cidr),
        node_cidr_prefix: o.opt(cx, "node_cidr_prefix", uint::<u8>),
        cni_plugins: o.nested(cx, "cni_plugins", cni_plugins),
        host_stack_cidrs: o.leaves(cx, "host_stack_cidrs", cidr).unwrap_or_default(),
        node_local_dns: o.opt(cx, "node_local_dns", ip),
        terway_version: o.opt(cx, "terway_version", terway_version_text),
    };
    o.finish(
        cx,
        &[
            "kubernetes",
            "cni",
            "proxy",
            "service_cidr",
            "pod_cidr",
            "node_cidr_prefix",
            "cni_plugins",
            "host_stack_cidrs",
            "node_local_dns",
            "terway_version",
        ],
    );
    c
}

/// `cni_plugins: {bin_dir, conflist}`: the conflist (a file relative to the
/// topology, or inline YAML) is read and checked here, so a bad one is
/// reported with its YAML line before anything is created.
fn cni_plugins(cx: &mut Cx, v: &Value, path: &str) -> CniPlugins {
    let o = Obj::new(cx, v, path, "a mapping {bin_dir, conflist}");
    let bin_dir: std::path::PathBuf = o.req(cx, "bin_dir", text).unwrap_or_default().into();
    if !bin_dir.as_os_str().is_empty() && !bin_dir.is_dir() {
        cx.error(
            &o.at("bin_dir"),
            format!("{} is not a directory", bin_dir.display()),
        );
    }
    let (conflist, source) = match o.raw("conflist") {
        None => (None, String::new()),
        Some(Value::String(file)) => {
            let p = cx.base_dir.join(file);
            match crate::cni::conf::load_file(&p) {
                Ok(v) => (Some(v), p.display().to_string()),
                Err(e) => {
                    cx.error(&o.at("conflist"), format!("reading {}: {e}", p.display()));
                    (None, p.display().to_string())
                }
            }
        }
        Some(inline @ Value::Mapping(_)) => match serde_json::to_value(inline) {
            Ok(v) => (Some(v), "inline".to_string()),
            Err(e) => {
                cx.error(
                    &o.at("conflist"),
                    format!("not a JSON-compatible mapping: {e}"),
                );
                (None, "inline".to_string())
            }
        },
        Some(other) => {
            cx.error(
                &o.at("conflist"),
                format!(
                    "expected a file path or an inline conflist mapping, found {}",
                    describe(other)
                ),
            );
            (None, String::new())
        }
    };
    if let Some(v) = &conflist {
        if let Err(e) = crate::cni::Conflist::from_value(v) {
            cx.error(&o.at("conflist"), e.to_string());
        }
    }
    o.finish(cx, &["bin_dir", "conflist"]);
    CniPlugins {
        bin_dir,
        conflist,
        source,
    }
}

fn vpc(cx: &mut Cx, v: &Value, path: &str) -> Vpc {
    let o = Obj::new(cx, v, path, "a mapping");
    let vpc = Vpc {
        cidr: o.opt(cx, "cidr", cidr),
        vswitches: o.list(cx, "vswitches", vswitch),
        route_entries: o.list(cx, "route_entries", route_entry),
        security_groups: o.list(cx, "security_groups", security_group),
    };
    o.finish(
        cx,
        &["cidr", "vswitches", "route_entries", "security_groups"],
    );
    vpc
}

fn vswitch(cx: &mut Cx, v: &Value, path: &str) -> VSwitch {
    let o = Obj::new(cx, v, path, "a vswitch {id, zone, cidr}");
    let vsw = VSwitch {
        id: o.req(cx, "id", text).unwrap_or_default(),
        zone: o.opt(cx, "zone", text),
        cidr: o.req(cx, "cidr", cidr).unwrap_or_default(),
    };
    o.finish(cx, &["id", "zone", "cidr"]);
    vsw
}

fn route_entry(cx: &mut Cx, v: &Value, path: &str) -> RouteEntry {
    let o = Obj::new(cx, v, path, "a route entry {dest, next_hop, action}");
    let action = o
        .opt(cx, "action", choice("route entry action", ROUTE_ACTIONS))
        .unwrap_or_default();
    let next_hop = if action == RouteAction::Remove {
        o.opt(cx, "next_hop", text)
    } else {
        o.req(cx, "next_hop", text)
    };
    let r = RouteEntry {
        dest: o.req(cx, "dest", cidr).unwrap_or_default(),
        next_hop: next_hop.unwrap_or_default(),
        action,
    };
    o.finish(cx, &["dest", "next_hop", "action"]);
    r
}

fn security_group(cx: &mut Cx, v: &Value, path: &str) -> SecurityGroup {
    let o = Obj::new(cx, v, path, "a security group {id, inner_access, rules}");
    let sg = SecurityGroup {
        id: o.req(cx, "id", text).unwrap_or_default(),
        inner_access: o.opt(cx, "inner_access", choice("inner_access", ACTIONS)),
        rules: o.list(cx, "rules", sg_rule),
    };
    o.finish(cx, &["id", "inner_access", "rules"]);
    sg
}

fn priority(v: &Value) -> Result<u8, String> {
    let n = whole(v)?;
    u8::try_from(n).map_err(|_| format!("priority {n} is outside 1..=100"))
}

fn sg_rule(cx: &mut Cx, v: &Value, path: &str) -> SgRule {
    let o = Obj::new(
        cx,
        v,
        path,
        "a rule {direction, action, proto, ports, cidr, priority}",
    );
    let rule = SgRule {
        direction: o
            .req(cx, "direction", choice("direction", DIRECTIONS))
            .unwrap_or(Direction::Ingress),
        action: o
            .req(cx, "action", choice("action", ACTIONS))
            .unwrap_or(Action::Drop),
        proto: o
            .opt(cx, "proto", choice("proto", RULE_PROTOS))
            .unwrap_or_default(),
        ports: o.opt(cx, "ports", port_spec),
        cidr: o.opt(cx, "cidr", cidr),
        priority: o.opt(cx, "priority", priority),
    };
    o.finish(
        cx,
        &["direction", "action", "proto", "ports", "cidr", "priority"],
    );
    rule
}

fn eni_limits(cx: &mut Cx, v: &Value, path: &str) -> EniLimits {
    let o = Obj::new(cx, v, path, "ENI limits {max, ips_per_eni, trunk, total}");
    let d = EniLimits::default();
    let e = EniLimits {
        max: o.opt(cx, "max", uint::<u32>).unwrap_or(d.max),
        ips_per_eni: o
            .opt(cx, "ips_per_eni", uint::<u32>)
            .unwrap_or(d.ips_per_eni),
        trunk: o.opt(cx, "trunk", boolean).unwrap_or(d.trunk),
        total: o.opt(cx, "total", uint::<u32>),
    };
    o.finish(cx, &["max", "ips_per_eni", "trunk", "total"]);
    e
}

fn node(cx: &mut Cx, v: &Value, path: &str) -> Node {
    let o = Obj::new(cx, v, path, "a node {name, ip, vswitch, …}");
    let n = Node {
        name: o.req(cx, "name", text).unwrap_or_default(),
        ip: o.opt(cx, "ip", ip),
        vswitch: o.req(cx, "vswitch", text).unwrap_or_default(),
        security_groups: o.leaves(cx, "security_groups", text).unwrap_or_default(),
        enis: o.nested(cx, "enis", eni_limits),
        instance_type: o.opt(cx, "instance_type", text),
        labels: o.opt(cx, "labels", string_map).unwrap_or_default(),
        ports: o.leaves(cx, "ports", port).unwrap_or_default(),
        cni_plugins: o.nested(cx, "cni_plugins", cni_plugins),
        trunk: o.nested(cx, "trunk", trunk_enis),
    };
    o.finish(
        cx,
        &[
            "name",
            "ip",
            "vswitch",
            "security_groups",
            "enis",
            "instance_type",
            "labels",
            "ports",
            "cni_plugins",
            "trunk",
        ],
    );
    n
}

fn trunk_enis(cx: &mut Cx, v: &Value, path: &str) -> TrunkEnis {
    let o = Obj::new(cx, v, path, "a trunk ENI {members}");
    let t = TrunkEnis {
        members: o.list(cx, "members", member_eni),
    };
    o.finish(cx, &["members"]);
    t
}

fn member_eni(cx: &mut Cx, v: &Value, path: &str) -> MemberEni {
    let o = Obj::new(
        cx,
        v,
        path,
        "a member ENI {vlan, ip, vswitch, security_groups}",
    );
    let vlan = o.req(cx, "vlan", uint::<u16>).unwrap_or_default();
    if !(1..=4094).contains(&vlan) && o.raw("vlan").is_some() {
        cx.error(
            &o.at("vlan"),
            format!("VLAN id {vlan} is out of range (1..4094)"),
        );
    }
    let m = MemberEni {
        vlan,
        ip: o.req(cx, "ip", ip).unwrap_or(Ipv4Addr::UNSPECIFIED),
        vswitch: o.opt(cx, "vswitch", text),
        security_groups: o.leaves(cx, "security_groups", text).unwrap_or_default(),
    };
    o.finish(cx, &["vlan", "ip", "vswitch", "security_groups"]);
    m
}

fn external(cx: &mut Cx, v: &Value, path: &str) -> External {
    let o = Obj::new(cx, v, path, "an external host {name, ip, vswitch, …}");
    let e = External {
        name: o.req(cx, "name", text).unwrap_or_default(),
        ip: o.req(cx, "ip", ip).unwrap_or(Ipv4Addr::UNSPECIFIED),
        vswitch: o.opt(cx, "vswitch", text),
        security_groups: o.leaves(cx, "security_groups", text).unwrap_or_default(),
        ports: o.leaves(cx, "ports", port).unwrap_or_default(),
        internet: o.opt(cx, "internet", boolean).unwrap_or(false),
    };
    o.finish(
        cx,
        &[
            "name",
            "ip",
            "vswitch",
            "security_groups",
            "ports",
            "internet",
        ],
    );
    e
}

fn load_balancer(cx: &mut Cx, v: &Value, path: &str) -> LoadBalancer {
    let o = Obj::new(cx, v, path, "a load balancer {id, ip, listeners}");
    let lb = LoadBalancer {
        id: o.req(cx, "id", text).unwrap_or_default(),
        ip: o.req(cx, "ip", ip).unwrap_or(Ipv4Addr::UNSPECIFIED),
        listeners: o.list(cx, "listeners", listener),
    };
    o.finish(cx, &["id", "ip", "listeners"]);
    lb
}

fn listener(cx: &mut Cx, v: &Value, path: &str) -> Listener {
    let o = Obj::new(cx, v, path, "a listener {port, proto, backends}");
    let l = Listener {
        port: o.req(cx, "port", port).unwrap_or(0),
        proto: o
            .opt(cx, "proto", choice("listener proto", LISTENER_PROTOS))
            .unwrap_or(Proto::Tcp),
        backends: o.list(cx, "backends", lb_backend),
    };
    o.finish(cx, &["port", "proto", "backends"]);
    l
}

fn lb_backend(cx: &mut Cx, v: &Value, path: &str) -> LbBackend {
    let o = Obj::new(cx, v, path, "a backend {external|node|pod, port}");
    let b = LbBackend {
        external: o.opt(cx, "external", text),
        node: o.opt(cx, "node", text),
        pod: o.opt(cx, "pod", text),
        port: o.req(cx, "port", port).unwrap_or(0),
    };
    o.finish(cx, &["external", "node", "pod", "port"]);
    b
}

fn expectation(cx: &mut Cx, v: &Value, path: &str) -> Expectation {
    let o = Obj::new(
        cx,
        v,
        path,
        "an expectation {name, from, to, proto, result, …}",
    );
    let result = o
        .req(cx, "result", choice("result", VERDICTS))
        .unwrap_or(Verdict::Timeout);
    // A pending pod is not probed: it needs no target.
    let to = if result == Verdict::Pending {
        o.opt(cx, "to", text)
    } else {
        o.req(cx, "to", text)
    };
    let e = Expectation {
        name: o.req(cx, "name", text).unwrap_or_default(),
        from: o.req(cx, "from", text).unwrap_or_default(),
        to: to.unwrap_or_default(),
        proto: o
            .opt(cx, "proto", choice("proto", PROBE_PROTOS))
            .unwrap_or(Proto::Tcp),
        result,
        source: o.opt(cx, "source", text),
        served_by: match o.raw("served_by") {
            Some(Value::Sequence(_)) => o.leaves(cx, "served_by", text),
            Some(_) => o.opt(cx, "served_by", text).map(|s| vec![s]),
            None => None,
        },
        repeat: o.opt(cx, "repeat", uint::<u32>),
        sticky: o.opt(cx, "sticky", boolean),
        refused_by: o.opt(cx, "refused_by", choice("refused_by", REFUSED_BY)),
        http_status: o.opt(cx, "http_status", uint::<u16>),
        path: o.leaves(cx, "path", text),
        avoids: o.leaves(cx, "avoids", text),
        timeout_ms: o.opt(cx, "timeout_ms", uint::<u64>),
        when: o.nested(cx, "when", when),
        reason: o.opt(cx, "reason", text),
        after: o.opt(cx, "after", text),
    };
    o.finish(
        cx,
        &[
            "name",
            "from",
            "to",
            "proto",
            "result",
            "source",
            "served_by",
            "repeat",
            "sticky",
            "refused_by",
            "http_status",
            "path",
            "avoids",
            "timeout_ms",
            "when",
            "reason",
            "after",
        ],
    );
    e
}

/// `expect[].when`: `{kubernetes: ">=1.24", cni: flannel | [flannel, …], proxy: ipvs | [iptables, …]}`.
fn when(cx: &mut Cx, v: &Value, path: &str) -> crate::topology::model::When {
    let o = Obj::new(cx, v, path, "a condition {kubernetes, cni, proxy}");
    let cni = match o.raw("cni") {
        Some(Value::Sequence(_)) => o.leaves(cx, "cni", choice("cni", CNIS)).unwrap_or_default(),
        Some(_) => o.opt(cx, "cni", choice("cni", CNIS)).into_iter().collect(),
        None => Vec::new(),
    };
    let proxy = match o.raw("proxy") {
        Some(Value::Sequence(_)) => o
            .leaves(cx, "proxy", choice("proxy", PROXIES))
            .unwrap_or_default(),
        Some(_) => o
            .opt(cx, "proxy", choice("proxy", PROXIES))
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let w = crate::topology::model::When {
        kubernetes: o.opt(cx, "kubernetes", kube_version_text),
        cni,
        proxy,
    };
    o.finish(cx, &["kubernetes", "cni", "proxy"]);
    w
}

// ---------------------------------------------------------------- Kubernetes objects

/// Fields kubectl prints that mean nothing to the lab: ignored without a
/// warning. Under `status` only the modelled fields are read.
const SILENT: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["status"],
    &["metadata", "managedFields"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "creationTimestamp"],
    &["metadata", "generation"],
    &["metadata", "selfLink"],
    &["metadata", "ownerReferences"],
    &["metadata", "finalizers"],
];

fn is_silent(segs: &[Seg]) -> bool {
    SILENT.iter().any(|prefix| {
        segs.len() >= prefix.len()
            && prefix
                .iter()
                .zip(segs)
                .all(|(p, s)| matches!(s, Seg::Key(k) if k == p))
    })
}

fn ignored_segs(p: &serde_ignored::Path) -> Vec<Seg> {
    match p {
        serde_ignored::Path::Root => Vec::new(),
        serde_ignored::Path::Seq { parent, index } => {
            let mut v = ignored_segs(parent);
            v.push(Seg::Index(*index));
            v
        }
        serde_ignored::Path::Map { parent, key } => {
            let mut v = ignored_segs(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_segs(parent),
    }
}

fn under(path: &str, segs: &[Seg]) -> String {
    let mut all = super::lines::split(path);
    all.extend_from_slice(segs);
    render(&all)
}

/// Deserializes one Kubernetes object. Every field of the k8s types has a
/// default, so a failing object is narrowed down by `blame`, the failing
/// fields are reported and removed, and the rest is still read.
fn kube_object<T: DeserializeOwned + Default>(cx: &mut Cx, v: &Value, path: &str) -> T {
    let mut value = v.clone();
    let mut blamed = Vec::new();
    blame::<T>(&mut Vec::new(), v, &mut blamed);
    for (segs, message) in &blamed {
        cx.error(&under(path, segs), message.clone());
    }
    // Remove the deepest/last paths first so earlier list indices stay valid.
    blamed.sort_by(|a, b| b.0.cmp(&a.0));
    for (segs, _) in &blamed {
        prune(&mut value, segs);
    }
    let mut ignored = Vec::new();
    let typed = serde_ignored::deserialize(&value, |p| ignored.push(ignored_segs(&p)));
    for segs in ignored.iter().filter(|s| !is_silent(s)) {
        cx.warn(&under(path, segs), "field not modelled by the lab, ignored");
    }
    match typed {
        Ok(t) => t,
        Err(e) => {
            // Pruning left something serde still rejects; keep the error.
            cx.error(path, e.to_string());
            T::default()
        }
    }
}

#[derive(Clone)]
enum Step {
    Key(Value),
    Index(usize),
}

/// `leaf` wrapped in singleton mappings/lists along `chain`: a minimal
/// document that exercises the same field types as the original.
fn embed(chain: &[Step], leaf: Value) -> Value {
    chain.iter().rev().fold(leaf, |inner, step| match step {
        Step::Key(k) => {
            let mut m = Mapping::new();
            m.insert(k.clone(), inner);
            Value::Mapping(m)
        }
        Step::Index(_) => Value::Sequence(vec![inner]),
    })
}

fn fails<T: DeserializeOwned>(doc: Value) -> Option<String> {
    serde_yaml_ng::from_value::<T>(doc)
        .err()
        .map(|e| e.to_string())
}

/// Finds the fields of `v` (at `chain` inside a `T`) that make `T` fail.
/// Works because every field of `T` has a default: a document holding only
/// one field is valid exactly when that field is. A node whose empty form
/// already fails has the wrong type and is blamed itself; otherwise each
/// child is tried alone and the failing ones are searched further. Every
/// bad field is found, not just the first.
fn blame<T: DeserializeOwned>(chain: &mut Vec<Step>, v: &Value, out: &mut Vec<(Vec<Seg>, String)>) {
    let Some(whole) = fails::<T>(embed(chain, v.clone())) else {
        return;
    };
    let before = out.len();
    match v {
        Value::Mapping(m) if fails::<T>(embed(chain, Value::Mapping(Mapping::new()))).is_none() => {
            for (k, child) in m {
                chain.push(Step::Key(k.clone()));
                blame::<T>(chain, child, out);
                chain.pop();
            }
        }
        Value::Sequence(items)
            if fails::<T>(embed(chain, Value::Sequence(Vec::new()))).is_none() =>
        {
            for (i, item) in items.iter().enumerate() {
                chain.push(Step::Index(i));
                blame::<T>(chain, item, out);
                chain.pop();
            }
        }
        _ => {}
    }
    if out.len() == before {
        let segs = chain
            .iter()
            .map(|s| match s {
                Step::Key(k) => Seg::Key(key_text(k)),
                Step::Index(i) => Seg::Index(*i),
            })
            .collect();
        out.push((segs, whole));
    }
}

/// Removes the node at `segs` from `v` (no-op when absent).
fn prune(v: &mut Value, segs: &[Seg]) {
    let Some((last, parents)) = segs.split_last() else {
        *v = Value::Null;
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match (seg, cur) {
            (Seg::Key(k), Value::Mapping(m)) => m
                .iter_mut()
                .find(|(mk, _)| key_text(mk) == *k)
                .map(|(_, c)| c),
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (Seg::Key(k), Value::Mapping(m)) => m.retain(|mk, _| key_text(mk) != *k),
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
        }
        _ => {}
    }
}
