//! The Kubernetes objects a topology carries, as `kubectl get -o yaml`
//! prints them. Only the fields the lab models are typed; the rest is
//! ignored (with a warning naming its path, see `parse`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Set while a pod is being deleted: its endpoints are terminating.
    pub deletion_timestamp: Option<String>,
}

impl ObjectMeta {
    /// The namespace, `default` when the object names none.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// One typed object from `kubernetes:`.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeObject {
    Pod(Pod),
    Service(Service),
    PodNetworking(PodNetworking),
    EndpointSlice(EndpointSlice),
}

// ---------------------------------------------------------------- Pod

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    pub host_network: bool,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
    pub protocol: Option<String>,
    /// Passed to CNI plugins as the `portMappings` capability (`cni: plugins`).
    pub host_port: Option<u16>,
}

/// `status.podIP` pins the pod's address (a customer's `kubectl get pod -o
/// yaml` carries it); absent, the CNI's IPAM allocates one. `phase` and the
/// `Ready` condition decide whether its endpoints are ready (absent: a
/// running, ready pod; authors rarely paste status).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<Ipv4Addr>,
    pub phase: Option<String>,
    pub conditions: Vec<PodCondition>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True" | "False" | "Unknown"
    pub status: String,
}

impl Pod {
    /// `podutil.IsPodReady`: the Ready condition is True. Without pasted
    /// conditions a pod is ready unless its phase says it is not running.
    pub fn is_ready(&self) -> bool {
        match self.status.conditions.iter().find(|c| c.type_ == "Ready") {
            Some(c) => c.status == "True",
            None => matches!(self.status.phase.as_deref(), None | Some("Running")),
        }
    }

    /// `metadata.deletionTimestamp` is set.
    pub fn is_terminating(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// Succeeded and Failed pods never back a Service
    /// (`endpointutil.ShouldPodBeInEndpoints`).
    pub fn is_finished(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

// ---------------------------------------------------------------- Service

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    pub status: ServiceStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
    /// "None" for a headless service.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "externalIPs")]
    pub external_ips: Vec<Ipv4Addr>,
    pub external_traffic_policy: Option<String>,
    pub internal_traffic_policy: Option<String>,
    /// `None` (default) or `ClientIP`.
    pub session_affinity: Option<String>,
    /// LoadBalancer with externalTrafficPolicy Local: kube-proxy's health
    /// check port on every node (allocated from the NodePort range if absent).
    pub health_check_node_port: Option<u16>,
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// CIDRs allowed to reach the load balancer IP (kube-proxy's firewall).
    pub load_balancer_source_ranges: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct SessionAffinityConfig {
    #[serde(rename = "clientIP")]
    pub client_ip: Option<ClientIpConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClientIpConfig {
    pub timeout_seconds: Option<u32>,
}

/// The API server's default `sessionAffinityConfig.clientIP.timeoutSeconds`
/// (pkg/apis/core `DefaultClientIPServiceAffinitySeconds`, 3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;
/// Its maximum (`MaxClientIPServiceAffinitySeconds`, one day).
pub const MAX_AFFINITY_SECONDS: u32 = 86400;

/// The older annotation kube-proxy reads when the field is empty
/// (pkg/proxy/util `GetLoadBalancerSourceRanges`).
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

impl Service {
    /// `spec.loadBalancerSourceRanges`, else the annotation (comma separated).
    pub fn source_ranges(&self) -> Vec<String> {
        if !self.spec.load_balancer_source_ranges.is_empty() {
            return self.spec.load_balancer_source_ranges.clone();
        }
        self.metadata
            .annotations
            .get(SOURCE_RANGES_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl ServiceSpec {
    /// `sessionAffinity: ClientIP`: the stickiness timeout in seconds.
    pub fn affinity_timeout(&self) -> Option<u32> {
        (self.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            self.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    /// A number or a container port name.
    pub target_port: Option<serde_yaml_ng::Value>,
    pub node_port: Option<u16>,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceStatus {
    pub load_balancer: LoadBalancerStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct LoadBalancerStatus {
    pub ingress: Vec<LoadBalancerIngress>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct LoadBalancerIngress {
    pub ip: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// `VIP` (default) or `Proxy`: a Proxy-mode LB IP is not a VIP
    /// kube-proxy short-circuits (KEP-1860).
    #[serde(rename = "ipMode")]
    pub ip_mode: Option<String>,
}

// ---------------------------------------------------------------- EndpointSlice

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A pasted `discovery.k8s.io/v1` EndpointSlice: used as it is (stale
/// addresses and conditions included) instead of the Service's selector.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    /// `IPv4` (the lab models IPv4 only).
    pub address_type: Option<String>,
    pub endpoints: Vec<SliceEndpoint>,
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SliceEndpoint {
    pub addresses: Vec<Ipv4Addr>,
    pub conditions: SliceConditions,
    pub node_name: Option<String>,
    pub target_ref: Option<ObjectRef>,
}

/// discovery.k8s.io/v1 EndpointConditions: a nil `ready` means ready, a
/// nil `serving` means the value of `ready`, a nil `terminating` false.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
}

impl EndpointSlice {
    /// `<ns>/<service>` it belongs to.
    pub fn service(&self) -> Option<(String, &str)> {
        self.metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .map(|s| (self.metadata.ns().to_string(), s.as_str()))
    }
}

// ---------------------------------------------------------------- PodNetworking

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodNetworking {
    pub metadata: ObjectMeta,
    pub spec: PodNetworkingSpec,
    pub status: PodNetworkingStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodNetworkingSpec {
    pub allocation_type: AllocationType,
    pub selector: PodNetworkingSelector,
    #[serde(rename = "vSwitchOptions")]
    pub vswitch_options: Vec<String>,
    #[serde(rename = "securityGroupIDs")]
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AllocationType {
    /// Elastic | Fixed
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub release_strategy: Option<String>,
    pub release_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodNetworkingSelector {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
}

/// `status.status: Ready` (absent = Ready: a topology author rarely pastes status).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodNetworkingStatus {
    pub status: Option<String>,
}
