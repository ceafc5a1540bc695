//! The topology's keys, each with its type and meaning: `cnlab schema`
//! prints them as a JSON Schema (for editors), `docs/topology.md` documents
//! them, and tests hold both to what the parser accepts.

use serde_json::{json, Map, Value};

use super::parse::{
    ACTIONS, CNIS, DIRECTIONS, LISTENER_PROTOS, PROBE_PROTOS, PROXIES, REFUSED_BY, ROUTE_ACTIONS,
    RULE_PROTOS, VERDICTS,
};

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Text,
    Ipv4,
    Cidr,
    Port,
    /// A whole number, at least `min`, at most `max`.
    Uint(u64, Option<u64>),
    Bool,
    /// One of these words.
    Enum(&'static [&'static str]),
    /// `80`, `"8000-9000"`, `"80,443"`.
    Ports,
    /// A quoted Kubernetes version (`"1.24"`).
    Version,
    /// Another section, by name.
    Section(&'static str),
    /// A list of this.
    List(&'static Ty),
    /// text → text.
    Labels,
    /// A Kubernetes object as `kubectl get -o yaml` prints it.
    KubeObject,
    /// This or a list of it.
    OneOrList(&'static Ty),
    /// A CNI conflist: a file name or an inline mapping.
    ConfList,
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

/// A mapping of the topology (`node`, `vpc`, …).
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub name: &'static str,
    pub doc: &'static str,
    pub keys: &'static [Key],
}

const fn key(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        required: false,
        doc,
    }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        required: true,
        doc,
    }
}

macro_rules! words {
    ($table:expr) => {{
        const N: usize = $table.len();
        const W: [&str; N] = {
            let mut out = [""; N];
            let mut i = 0;
            while i < N {
                out[i] = $table[i].0;
                i += 1;
            }
            out
        };
        &W
    }};
}

const TEXT: Ty = Ty::Text;
const PORT: Ty = Ty::Port;

/// Every section, the document root first.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "topology",
        doc: "The document: one lab. Further YAML documents in the same file are Kubernetes objects added to `kubernetes`.",
        keys: &[
            key("name", TEXT, "The lab's name; labs and reports are named after it."),
            key("description", TEXT, "What the topology reproduces, for people."),
            key("cluster", Ty::Section("cluster"), "Kubernetes version, CNI, kube-proxy mode and address ranges."),
            key("vpc", Ty::Section("vpc"), "The VPC: CIDR, vSwitches, route entries, security groups."),
            key("nodes", Ty::List(&Ty::Section("node")), "Cluster nodes (ECS instances with a primary ENI)."),
            key("externals", Ty::List(&Ty::Section("external")), "Hosts outside the cluster: ECS in the VPC or hosts on the internet."),
            key("load_balancers", Ty::List(&Ty::Section("load_balancer")), "CLBs not managed by the cloud controller."),
            key("kubernetes", Ty::List(&Ty::KubeObject), "Pods, Services and PodNetworkings as `kubectl get -o yaml` prints them (a `kind: List` is unpacked); other kinds are skipped with a warning."),
            key("expect", Ty::List(&Ty::Section("expectation")), "What must happen, each proven by a probe."),
            key("impairments", Ty::List(&Ty::Section("impairment")), "netem impairments (delay, loss, duplication, reordering, rate) on links, from bring-up on."),
            key("events", Ty::List(&Ty::Section("event")), "Faults that happen one after another while the lab runs; `expect[].after` says which step an expectation is probed at."),
        ],
    },
    Section {
        name: "cluster",
        doc: "The Kubernetes cluster.",
        keys: &[
            key("kubernetes", Ty::Version, "Kubernetes version, quoted (\"1.24\"); decides version-dependent kube-proxy behaviour. Default \"1.24\"."),
            key("cni", Ty::Enum(words!(CNIS)), "The CNI and its mode. Default flannel."),
            key("proxy", Ty::Enum(words!(PROXIES)), "kube-proxy mode. Default ipvs."),
            key("service_cidr", Ty::Cidr, "Service cluster IP range; required when there are Services."),
            key("pod_cidr", Ty::Cidr, "Cluster pod CIDR, sliced per node (flannel, terway-vpc)."),
            key("node_cidr_prefix", Ty::Uint(1, Some(32)), "Prefix length of each node's pod CIDR slice. Default 24."),
            key("cni_plugins", Ty::Section("cni_plugins"), "With `cni: plugins`: the CNI plugin chain every node runs; with flannel and no conflist, cnlab plays flanneld and the real plugins plumb the pods."),
            key("host_stack_cidrs", Ty::List(&Ty::Cidr), "terway-eniip-ipvlan and terway-eni: Terway's eni-config `host_stack_cidrs`, destinations pods reach through the node's own stack (IPVLAN: added to the tc redirect to ipvl_N; exclusive ENI: routes via veth1)."),
            key("node_local_dns", Ty::Ipv4, "The node-local-dns add-on's address (e.g. 169.254.20.10): every node binds it on a `nodelocaldns` dummy interface and answers on port 53 (TCP and UDP)."),
            key("terway_version", Ty::Version, "terway-eniip and terway-trunking: Terway's version, quoted. From \"1.4.2\" rule 2048 is `from <podIP> lookup <table>`; older, and when absent, `from <podIP> iif <host veth> lookup <table>`, which real IPVS's locally-output packets miss (T6). Absent with `proxy: ipvs`: a warning at `cluster.cni` says which layout was planned."),
        ],
    },
    Section {
        name: "cni_plugins",
        doc: "A CNI plugin chain: where the binaries are and the network configuration list.",
        keys: &[
            req("bin_dir", TEXT, "`CNI_PATH`: the directory of the plugin binaries (`/usr/lib/cni`)."),
            key("conflist", Ty::ConfList, "The network configuration list: a file (relative to the topology) or an inline mapping; absent, the flannel variant derives it from the node's subnet.env."),
        ],
    },
    Section {
        name: "vpc",
        doc: "The VPC and its router.",
        keys: &[
            key("cidr", Ty::Cidr, "The VPC CIDR; every vSwitch lies inside it."),
            key("vswitches", Ty::List(&Ty::Section("vswitch")), "Subnets, each in a zone."),
            key("route_entries", Ty::List(&Ty::Section("route_entry")), "The VPC route table as the customer has it: extra entries, replaced or removed cloud-controller entries."),
            key("security_groups", Ty::List(&Ty::Section("security_group")), "Stateful security groups, applied per ENI."),
        ],
    },
    Section {
        name: "vswitch",
        doc: "A vSwitch (subnet).",
        keys: &[
            req("id", TEXT, "Its id (`vsw-a`), referenced by nodes, externals and PodNetworkings."),
            key("zone", TEXT, "Availability zone, for people."),
            req("cidr", Ty::Cidr, "Its CIDR; the first address is the gateway, the last three are reserved."),
        ],
    },
    Section {
        name: "route_entry",
        doc: "One entry of the VPC route table.",
        keys: &[
            req("dest", Ty::Cidr, "Destination CIDR."),
            key("next_hop", TEXT, "A node name or an ENI address in the VPC; required unless `action: remove`."),
            key("action", Ty::Enum(words!(ROUTE_ACTIONS)), "`add` (default): an extra entry; `replace`: stands in place of the entry the cloud controller creates for `dest` (a wrong next hop); `remove`: the controller's entry for `dest` is missing."),
        ],
    },
    Section {
        name: "security_group",
        doc: "A stateful security group: replies of an accepted flow pass both ways.",
        keys: &[
            req("id", TEXT, "Its id (`sg-node`), referenced by nodes, externals and PodNetworkings."),
            key("inner_access", Ty::Enum(words!(ACTIONS)), "Whether members of the group reach each other without a rule. Default accept."),
            key("rules", Ty::List(&Ty::Section("sg_rule")), "Rules, by priority (1 first), then drop before accept."),
        ],
    },
    Section {
        name: "sg_rule",
        doc: "A security group rule.",
        keys: &[
            req("direction", Ty::Enum(words!(DIRECTIONS)), "Which traffic it judges."),
            req("action", Ty::Enum(words!(ACTIONS)), "What it does."),
            key("proto", Ty::Enum(words!(RULE_PROTOS)), "Protocol. Default all."),
            key("ports", Ty::Ports, "Destination ports: 80, \"8000-9000\", \"80,443\" (tcp/udp only)."),
            key("cidr", Ty::Cidr, "Peer CIDR (source for ingress, destination for egress). Default 0.0.0.0/0."),
            key("priority", Ty::Uint(1, Some(100)), "1 (first) to 100. Default 1."),
        ],
    },
    Section {
        name: "eni_limits",
        doc: "ENI limits of an instance type.",
        keys: &[
            key("max", Ty::Uint(1, None), "ENIs the instance takes, the primary included."),
            key("ips_per_eni", Ty::Uint(1, None), "Private addresses per ENI."),
            key("trunk", Ty::Bool, "Whether the instance type supports a trunk ENI."),
            key(
                "total",
                Ty::Uint(1, None),
                "Every ENI the instance takes, member ENIs included (the ECS API's `EniTotalQuantity`). With `trunk`, Terway's member-ENI quota (the node's `aliyun/member-eni`) is `total − max`; trunk pods beyond it stay pending. Absent: taken from `instance_type` where the built-in table knows it, else member ENIs are not capped (the plan says so).",
            ),
        ],
    },
    Section {
        name: "node",
        doc: "A cluster node: an ECS instance with its primary ENI.",
        keys: &[
            req("name", TEXT, "Node name (`kubectl get nodes`), referenced by pods' `spec.nodeName`."),
            key("ip", Ty::Ipv4, "Primary address; allocated from the vSwitch when absent."),
            req("vswitch", TEXT, "The vSwitch of its primary ENI."),
            key("security_groups", Ty::List(&TEXT), "Security groups of its primary ENI."),
            key("enis", Ty::Section("eni_limits"), "ENI limits; default from `instance_type`."),
            key("instance_type", TEXT, "ECS instance type (`ecs.g7.xlarge`), for ENI limits."),
            key("labels", Ty::Labels, "Node labels."),
            key("ports", Ty::List(&PORT), "Ports an echo server answers on in the node's own stack."),
            key("cni_plugins", Ty::Section("cni_plugins"), "This node's CNI plugin chain, in place of `cluster.cni_plugins`."),
            key("trunk", Ty::Section("trunk"), "With `cni: plugins`: a trunk ENI the cloud attaches to this node (its `eth1`) and the member ENIs on it, for a plugin such as `vlan` (master `eth1`, vlanId a member's). The instance must allow a trunk (`enis.trunk` or `instance_type`)."),
        ],
    },
    Section {
        name: "trunk",
        doc: "A node's trunk ENI (`eth1` in the node) and its member ENIs. The VPC terminates each member's VLAN on the trunk: frames tagged with it reach the member ENI (its security groups filter them) and the VPC routes the member's address back down the trunk with that tag. A VLAN with no member ENI goes nowhere.",
        keys: &[
            key("members", Ty::List(&Ty::Section("member_eni")), "Member ENIs, one per VLAN."),
        ],
    },
    Section {
        name: "member_eni",
        doc: "A member ENI on a trunk.",
        keys: &[
            req("vlan", Ty::Uint(1, Some(4094)), "Its VLAN id on the trunk."),
            req("ip", Ty::Ipv4, "Its private address (in its vSwitch): the address the pod on that VLAN takes."),
            key("vswitch", TEXT, "Its vSwitch. Default the node's."),
            key("security_groups", Ty::List(&TEXT), "Its security groups. Default the node's."),
        ],
    },
    Section {
        name: "external",
        doc: "A host outside the cluster.",
        keys: &[
            req("name", TEXT, "Its name, referenced as `external/<name>`."),
            req("ip", Ty::Ipv4, "Its address."),
            key("vswitch", TEXT, "An ECS in the VPC: its vSwitch."),
            key("security_groups", Ty::List(&TEXT), "Security groups of its ENI."),
            key("ports", Ty::List(&PORT), "Ports an echo server answers on."),
            key("internet", Ty::Bool, "A host on the internet, reached through the VPC's gateway."),
        ],
    },
    Section {
        name: "load_balancer",
        doc: "A CLB configured by hand (not by the cloud controller).",
        keys: &[
            req("id", TEXT, "Its id (`lb-…`)."),
            req("ip", Ty::Ipv4, "Its service address."),
            key("listeners", Ty::List(&Ty::Section("listener")), "Listeners."),
        ],
    },
    Section {
        name: "listener",
        doc: "A CLB listener.",
        keys: &[
            req("port", PORT, "Listening port."),
            key("proto", Ty::Enum(words!(LISTENER_PROTOS)), "Protocol. Default tcp."),
            key("backends", Ty::List(&Ty::Section("lb_backend")), "Backend servers."),
        ],
    },
    Section {
        name: "lb_backend",
        doc: "A CLB backend: exactly one of external, node or pod.",
        keys: &[
            key("external", TEXT, "An external host by name."),
            key("node", TEXT, "A node by name."),
            key("pod", TEXT, "A pod (`<ns>/<name>`), by its ENI address."),
            req("port", PORT, "Backend port."),
        ],
    },
    Section {
        name: "expectation",
        doc: "One assertion, proven with real packets.",
        keys: &[
            req("name", TEXT, "Its name in reports (`--only NAME` runs just this one)."),
            req("from", TEXT, "Where the probe starts: `pod/<ns>/<name>`, `node/<name>` or `external/<name>`."),
            key("to", TEXT, "Target: `pod/<ns>/<name>:<port>`, `service/<ns>/<name>:<port>[@external-ip|@lb]`, `nodeport/<node>/<ns>/<name>` or `ip/<addr>:<port>` (no port for icmp). Required unless `result: pending`."),
            key("proto", Ty::Enum(words!(PROBE_PROTOS)), "Probe protocol. Default tcp."),
            req("result", Ty::Enum(words!(VERDICTS)), "What must happen: the handshake completes, is refused (RST / ICMP port unreachable), times out; or `pending`: the pod in `from` cannot start."),
            key("source", TEXT, "The source address the server must see: `client` (not NATed), `node/<name>` or `ip/<addr>`."),
            key("served_by", Ty::OneOrList(&TEXT), "The endpoint that must answer (`pod/<ns>/<name>`); a list: repeated probes must reach every one of them and nothing else."),
            key("repeat", Ty::Uint(1, None), "Probes to send. Default 1; with a `served_by` list, enough that a random scheduler misses a listed backend with probability below 1e-4 (15 for two); with `sticky`, 8."),
            key("sticky", Ty::Bool, "Every repeated probe answered by the same backend (session affinity)."),
            key("refused_by", Ty::Enum(words!(REFUSED_BY)), "With `result: refused`: how — a TCP RST, or ICMP port-unreachable (IPVS without real servers)."),
            key("http_status", Ty::Uint(100, Some(599)), "Send an HTTP GET (not the echo request) and expect this status: kube-proxy's healthCheckNodePort answers 200 with local endpoints, 503 without."),
            key("path", Ty::List(&TEXT), "Observation points the request and reply must cross, in order (`trunk/<node>@vlan=1027` also checks the VLAN; `a|b`: either). With `result: timeout` the last entry is where the packet stops: seen anywhere after it, the expectation fails; `path: []` says no packet leaves the client. With `result: refused` the last entry is where the request is refused."),
            key("avoids", Ty::List(&TEXT), "Observation points they must not cross (`eni/*` matches every ENI, `eni/member:*` every member ENI). An entry naming no point of the lab fails the expectation: it could never be crossed."),
            key("timeout_ms", Ty::Uint(1, None), "Probe deadline. Default 1500."),
            key("when", Ty::Section("when"), "Applies only to clusters matching this; other labs report it n/a."),
            key("reason", TEXT, "With `result: pending`: text the pod's pending reason must contain."),
            key("after", TEXT, "The event (`events[].name`) after which this is probed: that event and every one before it have happened, the next has not. Absent: probed before the first event."),
        ],
    },
    Section {
        name: "when",
        doc: "A condition on the cluster.",
        keys: &[
            key("kubernetes", Ty::Version, "Version condition: \">=1.24\", \"<1.24\", \"1.22\"."),
            key("cni", Ty::OneOrList(&Ty::Enum(words!(CNIS))), "A CNI or a list of CNIs."),
            key("proxy", Ty::OneOrList(&Ty::Enum(words!(PROXIES))), "A kube-proxy mode or a list of modes."),
        ],
    },
    Section {
        name: "impairment",
        doc: "A netem qdisc on both ends of the link (veth pair) at an observation point: every packet leaving either end is delayed, dropped, duplicated, reordered or paced. Settings combine as in `tc qdisc add … netem`.",
        keys: &[
            req("link", TEXT, "The link: an observation point with an interface — `eth0/<node>` (node to its ENI), `host-veth/<ns>/<pod>` or `pod/<ns>/<pod>` (the pod's veth), `trunk/<node>`, `node/<node>:<ifname>`."),
            key("delay_ms", Ty::Uint(0, None), "Added delay, each direction."),
            key("jitter_ms", Ty::Uint(0, None), "Random variation of the delay (needs `delay_ms`)."),
            key("loss", Ty::Uint(0, Some(100)), "Percent of packets dropped, each direction, independently."),
            key("duplicate", Ty::Uint(0, Some(100)), "Percent of packets sent twice."),
            key("reorder", Ty::Uint(0, Some(100)), "Percent of packets sent at once while the others wait `delay_ms` (needs `delay_ms`)."),
            key("rate", TEXT, "Bandwidth limit as tc writes it: `100kbit`, `10mbit`, `1gbit`."),
        ],
    },
    Section {
        name: "event",
        doc: "One fault, applied to the running lab after the expectations of the step before it were probed. Exactly one action besides `name`.",
        keys: &[
            req("name", TEXT, "Its name, referenced by `expect[].after`."),
            key("link_down", TEXT, "The interface at this observation point (as `impairment.link`) goes administratively down, taking its routes with it; its peer loses carrier and drops what it would send."),
            key("link_up", TEXT, "The interface comes up again, with the routes and neighbours the plan gave it."),
            key("pods_restarted", TEXT, "A node by name: every pod on it is restarted (sandbox, veth and echo servers anew, same address)."),
            key("endpoint_terminating", TEXT, "`pod/<ns>/<name>`: the pod is being deleted; its endpoints turn terminating (not ready, still serving) and kube-proxy reprograms every node as its mode does."),
            key("route_entry_removed", Ty::Cidr, "The VPC route entry with this destination is deleted (the cloud controller's for a node's pod CIDR, or one of `vpc.route_entries`)."),
            key("impair", Ty::Section("impairment"), "A new impairment on a link, in place of what it had (all zero: impairment lifted)."),
        ],
    },
];

/// The section named `name`.
pub fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

fn ty_schema(t: &Ty) -> Value {
    match t {
        Ty::Text => json!({"type": ["string", "number", "boolean"]}),
        Ty::Ipv4 => json!({"type": "string", "format": "ipv4"}),
        Ty::Cidr => json!({"type": "string", "pattern": "^[0-9.]+/[0-9]+$"}),
        Ty::Port => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
        Ty::Uint(min, max) => {
            let mut v = json!({"type": "integer", "minimum": min});
            if let Some(m) = max {
                v["maximum"] = json!(m);
            }
            v
        }
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum(words) => json!({"enum": words}),
        Ty::Ports => json!({"type": ["integer", "string"]}),
        Ty::Version => json!({"type": "string"}),
        Ty::Section(s) => json!({"$ref": format!("#/$defs/{s}")}),
        Ty::List(inner) => json!({"type": "array", "items": ty_schema(inner)}),
        Ty::Labels => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        Ty::KubeObject => json!({"type": "object", "required": ["kind"]}),
        Ty::OneOrList(inner) => {
            json!({"oneOf": [ty_schema(inner), {"type": "array", "items": ty_schema(inner)}]})
        }
        Ty::ConfList => json!({"type": ["string", "object"]}),
    }
}

fn section_schema(s: &Section) -> Value {
    let mut props = Map::new();
    for k in s.keys {
        let mut v = ty_schema(&k.ty);
        v["description"] = json!(k.doc);
        props.insert(k.name.to_string(), v);
    }
    let required: Vec<&str> = s
        .keys
        .iter()
        .filter(|k| k.required)
        .map(|k| k.name)
        .collect();
    json!({
        "type": "object",
        "description": s.doc,
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The topology as a JSON Schema (draft 2020-12).
pub fn json_schema() -> Value {
    let mut defs = Map::new();
    for s in &SECTIONS[1..] {
        defs.insert(s.name.to_string(), section_schema(s));
    }
    let mut root = section_schema(&SECTIONS[0]);
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$id"] = json!("https://github.com/cnlab/cnlab/topology.schema.json");
    root["title"] = json!("cnlab topology");
    root["$defs"] = Value::Object(defs);
    root
}

/// How a type reads in docs/topology.md.
pub fn ty_text(t: &Ty) -> String {
    match t {
        Ty::Text => "text".into(),
        Ty::Ipv4 => "IPv4 address".into(),
        Ty::Cidr => "IPv4 CIDR".into(),
        Ty::Port => "port".into(),
        Ty::Uint(min, Some(max)) => format!("number {min}..{max}"),
        Ty::Uint(min, None) => format!("number ≥ {min}"),
        Ty::Bool => "true/false".into(),
        Ty::Enum(w) => w.join(" \\| "),
        Ty::Ports => "ports".into(),
        Ty::Version => "version".into(),
        Ty::Section(s) => format!("[{s}](#{s})"),
        Ty::List(inner) => format!("list of {}", ty_text(inner)),
        Ty::Labels => "text → text".into(),
        Ty::KubeObject => "Kubernetes object".into(),
        Ty::OneOrList(inner) => format!("{} or a list", ty_text(inner)),
        Ty::ConfList => "file or mapping".into(),
    }
}

/// The key reference of docs/topology.md: one table per section.
pub fn markdown() -> String {
    let mut out = String::new();
    for s in SECTIONS {
        out.push_str(&format!("### {}\n\n{}\n\n", s.name, s.doc));
        out.push_str("| key | type | required | meaning |\n|---|---|---|---|\n");
        for k in s.keys {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                k.name,
                ty_text(&k.ty),
                if k.required { "yes" } else { "" },
                k.doc.replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}
