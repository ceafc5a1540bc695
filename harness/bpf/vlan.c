// SPDX-License-Identifier: Apache-2.0
//
// ENI trunking (Terway "trunk" mode) as tc programs, for kernels without
// 802.1Q VLAN devices and without the tc vlan/flower actions.
//
// Node side, on the trunk ENI link:
//   trunk_egress  egress:  frame from a trunk pod IP -> push its member ENI's
//                          VLAN id (map src_vlan: IPv4 source -> vid).
//   vlan_pop      ingress: pop the 802.1Q tag, the node then routes by IP.
//
// Cloud side, namespace hv/<node> (what the hypervisor does for the trunk):
//   hv_demux      ingress of the link from the node's trunk: vid -> member ENI
//                 link (map vlan_ifindex, keyed by the ingress link), pop,
//                 redirect out of that link.
//                 Untagged frames are the trunk ENI's own (native) traffic and
//                 go to the hv stack; a tag nobody owns is dropped, as the
//                 cloud would.
//   hv_mux        ingress of every member ENI link: push the member's vid
//                 and redirect out of its trunk-side link (map ifindex_vlan).
//
// ARP: the node reaches a trunk pod's gateway with
// `default via <member vSwitch gateway> dev <trunk> onlink`, so it ARPs on the
// trunk link. Such a request must travel on the member's VLAN, otherwise the
// member ENI side never sees it. The kernel picks the ARP sender address
// (arp spa) from the packet that triggered the request when that address is
// local, else from the node's own addresses; trunk_egress therefore tags an
// ARP frame by its sender address exactly like an IPv4 packet by its source.
// ARP replies the node sends for a pod address carry spa = pod IP and are
// tagged the same way. Other frames (IPv6, ARP from node addresses) leave
// untagged: native traffic of the trunk ENI.
//
// A VLAN tag pushed with bpf_skb_vlan_push lives in skb metadata (hardware
// acceleration emulation) and veth hands it to the peer that way; captures
// see it through PACKET_AUXDATA (tcpdump prints `vlan N`). Frames with the tag
// still inside the payload are moved to metadata by the receive path before
// tc ingress runs; the programs read both forms anyway.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define VLAN_VID_MASK 0x0fff
// One copy of the object serves a whole lab: every trunk, every hv/<node>.
// The maps are keyed by interface index, which the lab's builder makes
// unique across the lab's namespaces (kernel/build.rs veth_indexes), so one
// verification covers every attachment. Entries are allocated on update
// (BPF_F_NO_PREALLOC): a lab of 10,000 trunk pods fits, a small lab does
// not pay for it.
#define MAX_ENTRIES 65536

// (trunk link, IPv4 source as it sits in the packet) -> VLAN id.
struct trunk_key {
	__u32 ifindex;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct trunk_key);
	__type(value, __u16);
	__uint(max_entries, MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} src_vlan SEC(".maps");

// (hv link towards the node's trunk, VLAN id) -> member ENI link.
struct demux_key {
	__u32 ifindex;
	__u32 vid;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct demux_key);
	__type(value, __u32);
	__uint(max_entries, MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vlan_ifindex SEC(".maps");

// member ENI link (hv namespace) -> its VLAN id and the trunk-side link.
struct member {
	__u32 vid;
	__u32 trunk_ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct member);
	__uint(max_entries, MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ifindex_vlan SEC(".maps");

// Offsets inside an untagged Ethernet frame.
#define OFF_ETH_PROTO 12
#define OFF_IP_SADDR (ETH_HLEN + 12)
// ARP for Ethernet/IPv4: htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(6) spa(4)
#define OFF_ARP_SPA (ETH_HLEN + 14)
// 802.1Q header inside the frame: TPID at 12, TCI at 14.
#define OFF_VLAN_TCI 14

// The VLAN id of the frame: from skb metadata, else from an in-frame 802.1Q
// header. Returns 0 when the frame is untagged (0 is not a usable VLAN id).
static __always_inline __u16 frame_vid(struct __sk_buff *skb)
{
	if (skb->vlan_present)
		return skb->vlan_tci & VLAN_VID_MASK;
	__be16 proto;
	if (bpf_skb_load_bytes(skb, OFF_ETH_PROTO, &proto, sizeof(proto)) < 0)
		return 0;
	if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
		return 0;
	__be16 tci;
	if (bpf_skb_load_bytes(skb, OFF_VLAN_TCI, &tci, sizeof(tci)) < 0)
		return 0;
	return bpf_ntohs(tci) & VLAN_VID_MASK;
}

static __always_inline int is_tagged(struct __sk_buff *skb)
{
	if (skb->vlan_present)
		return 1;
	__be16 proto;
	if (bpf_skb_load_bytes(skb, OFF_ETH_PROTO, &proto, sizeof(proto)) < 0)
		return 0;
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

SEC("classifier/trunk_egress")
int trunk_egress(struct __sk_buff *skb)
{
	// Already tagged (nothing of ours does that): leave it alone.
	if (is_tagged(skb))
		return TC_ACT_OK;

	__be16 proto;
	if (bpf_skb_load_bytes(skb, OFF_ETH_PROTO, &proto, sizeof(proto)) < 0)
		return TC_ACT_OK;

	__u32 src;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, OFF_IP_SADDR, &src, sizeof(src)) < 0)
			return TC_ACT_OK;
	} else if (proto == bpf_htons(ETH_P_ARP)) {
		if (bpf_skb_load_bytes(skb, OFF_ARP_SPA, &src, sizeof(src)) < 0)
			return TC_ACT_OK;
	} else {
		return TC_ACT_OK;
	}

	struct trunk_key key = { .ifindex = skb->ifindex, .addr = src };
	__u16 *vid = bpf_map_lookup_elem(&src_vlan, &key);
	if (!vid)
		return TC_ACT_OK;
	// Cannot fail for a sane frame; if it does, do not leak the frame onto
	// the native VLAN.
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), *vid) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("classifier/vlan_pop")
int vlan_pop(struct __sk_buff *skb)
{
	if (is_tagged(skb) && bpf_skb_vlan_pop(skb) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("classifier/hv_demux")
int hv_demux(struct __sk_buff *skb)
{
	if (!is_tagged(skb))
		return TC_ACT_OK; // the trunk ENI's own, untagged traffic
	struct demux_key key = { .ifindex = skb->ifindex, .vid = frame_vid(skb) };
	__u32 *ifindex = bpf_map_lookup_elem(&vlan_ifindex, &key);
	if (!ifindex)
		return TC_ACT_SHOT; // no member ENI with this VLAN id
	__u32 target = *ifindex;
	if (bpf_skb_vlan_pop(skb) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(target, 0);
}

SEC("classifier/hv_mux")
int hv_mux(struct __sk_buff *skb)
{
	__u32 in = skb->ingress_ifindex;
	struct member *m = bpf_map_lookup_elem(&ifindex_vlan, &in);
	if (!m || m->trunk_ifindex == 0)
		return TC_ACT_SHOT; // member removed while its link still exists
	__u32 target = m->trunk_ifindex;
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), m->vid) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(target, 0);
}

// Does nothing: `cnlab doctor` loads and attaches it to see that tc BPF
// programs work at all.
SEC("classifier/probe_pass")
int probe_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

// No GPL-only helper is used (bpf_printk would need a GPL-compatible string).
char _license[] SEC("license") = "Apache-2.0";
