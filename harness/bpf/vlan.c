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
// Cloud side, namespace hv/<node> (what the hypervisor does for the trunk).
// Every member ENI's link m<vid> leads to the VPC router and hv *routes*
// between them and the link from the node's trunk ("trunk", MAC
// ee:ff:ff:ff:ff:ff, the vSwitch gateway MAC the node pins as neighbour of
// every gateway): `iif trunk fwmark <vid> lookup <1000+vid>` sends a member's
// traffic out of m<vid>; `<pod IP>/32 dev trunk` brings it back. Security
// groups are nft in hv, conntrack zones chosen by the mark.
//   hv_demux      ingress of trunk. Untagged frames are the trunk ENI's own
//                 (native) traffic: to the hv stack as they are. A tag nobody
//                 owns (map vlan_ifindex, keyed by (trunk link, vid)) is
//                 dropped, as the cloud would. A member's frame is popped and
//                 marked with its vid (skb->mark) for the hv stack to route.
//                 ARP requests on a member's VLAN are answered right here,
//                 like the vSwitch does (every ARP gets ee:ff:ff:ff:ff:ff):
//                 with real CNI plugins (the `vlan` plugin) the pod's own
//                 stack ARPs for its gateway on its VLAN, there is no VLAN
//                 device in hv to answer, and a reply of the hv stack would
//                 leave untagged. The request is turned into the reply in
//                 place, keeps its tag and goes back out of trunk.
//   hv_mux        egress of trunk: a frame the hv stack forwards from a
//                 member ENI link (skb->ingress_ifindex, map ifindex_vlan)
//                 gets that member's vid pushed; one forwarded from any other
//                 link (a removed member's) is dropped. Frames already tagged
//                 (the ARP replies above) and what hv itself sends leave as
//                 they are.
//
// ARP on the node: the node reaches a trunk pod's gateway with
// `default via <member vSwitch gateway> dev <trunk> onlink`. Should it ARP
// for it (rather than use its pinned neighbour), the request must travel on
// the member's VLAN. The kernel picks the ARP sender address (arp spa) from
// the packet that triggered the request when that address is local, else
// from the node's own addresses; trunk_egress therefore tags an ARP frame by
// its sender address exactly like an IPv4 packet by its source. ARP replies
// the node sends for a pod address carry spa = pod IP and are tagged the same
// way. Other frames (IPv6, ARP from node addresses) leave untagged: native
// traffic of the trunk ENI.
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

// member ENI link (hv namespace) -> its VLAN id and the trunk link (hv end)
// its forwarded frames are tagged on.
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
#define VLAN_HLEN 4

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

// ARP for Ethernet/IPv4 (RFC 826) as it sits in the frame: 28 bytes, no
// padding (the addresses are byte arrays, so nothing needs alignment).
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
};

// The vSwitch gateway MAC of Alibaba Cloud: the answer to every ARP.
static __always_inline void set_gw_mac(__u8 *mac)
{
	mac[0] = 0xee;
	mac[1] = 0xff;
	mac[2] = 0xff;
	mac[3] = 0xff;
	mac[4] = 0xff;
	mac[5] = 0xff;
}

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

// hv_demux on a tagged frame of a known VLAN: when it is an ARP request
// (not gratuitous, not a probe), rewrites it into the vSwitch's reply:
// op 2, sha ee:ff:ff:ff:ff:ff, spa = the asked address, tha/tpa = the asker;
// Ethernet back to the asker from ee:ff:ff:ff:ff:ff. The tag stays as it is.
// Returns 1 when rewritten, 0 when the frame is not such a request (left
// untouched), -1 when rewriting failed half-way.
static __always_inline int arp_answer(struct __sk_buff *skb)
{
	// The tag in metadata: an untagged frame. In the frame: 4 bytes on.
	// (Metadata plus another in-frame tag, QinQ, is no ARP frame here.)
	__u32 off = skb->vlan_present ? 0 : VLAN_HLEN;
	__be16 proto;
	if (bpf_skb_load_bytes(skb, OFF_ETH_PROTO + off, &proto, sizeof(proto)) < 0)
		return 0;
	if (proto != bpf_htons(ETH_P_ARP))
		return 0;
	struct arp_eth a;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + off, &a, sizeof(a)) < 0)
		return 0;
	if (a.htype != bpf_htons(ARPHRD_ETHER) || a.ptype != bpf_htons(ETH_P_IP) ||
	    a.hlen != ETH_ALEN || a.plen != 4 || a.op != bpf_htons(ARPOP_REQUEST))
		return 0;
	__u32 spa, tpa;
	__builtin_memcpy(&spa, a.spa, 4);
	__builtin_memcpy(&tpa, a.tpa, 4);
	// Gratuitous ARP (an announcement) and address probes (RFC 5227, sender
	// 0.0.0.0) ask nobody: a reply would report a conflict.
	if (spa == tpa || spa == 0)
		return 0;

	__u8 macs[2 * ETH_ALEN]; // destination, source
	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0)
		return 0;
	__builtin_memcpy(macs, macs + ETH_ALEN, ETH_ALEN);
	set_gw_mac(macs + ETH_ALEN);

	struct arp_eth r = a;
	r.op = bpf_htons(ARPOP_REPLY);
	set_gw_mac(r.sha);
	__builtin_memcpy(r.spa, a.tpa, 4);
	__builtin_memcpy(r.tha, a.sha, ETH_ALEN);
	__builtin_memcpy(r.tpa, a.spa, 4);

	if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0) < 0)
		return 0; // nothing written yet
	if (bpf_skb_store_bytes(skb, ETH_HLEN + off, &r, sizeof(r), 0) < 0)
		return -1;
	return 1;
}

SEC("classifier/hv_demux")
int hv_demux(struct __sk_buff *skb)
{
	if (!is_tagged(skb))
		return TC_ACT_OK; // the trunk ENI's own, untagged traffic
	__u16 vid = frame_vid(skb);
	struct demux_key key = { .ifindex = skb->ifindex, .vid = vid };
	if (!bpf_map_lookup_elem(&vlan_ifindex, &key))
		return TC_ACT_SHOT; // no member ENI with this VLAN id
	int arp = arp_answer(skb);
	if (arp > 0)
		return bpf_redirect(skb->ifindex, 0); // back to the node, still tagged
	if (arp < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_vlan_pop(skb) < 0)
		return TC_ACT_SHOT;
	// The hv stack routes it: `iif trunk fwmark <vid> lookup <1000+vid>`.
	skb->mark = vid;
	return TC_ACT_OK;
}

SEC("classifier/hv_mux")
int hv_mux(struct __sk_buff *skb)
{
	// Tagged already: an ARP reply of hv_demux (or a tag nobody here set).
	if (is_tagged(skb))
		return TC_ACT_OK;
	// The member ENI link the forwarded frame came in on; 0 for what the
	// hv stack sends itself (its ARP, its ICMP errors): untagged.
	__u32 in = skb->ingress_ifindex;
	if (in == 0)
		return TC_ACT_OK;
	struct member *m = bpf_map_lookup_elem(&ifindex_vlan, &in);
	// Forwarded, but from no member ENI of this trunk: a member removed
	// while its link still exists, or the trunk's own native traffic turned
	// back down the trunk. The cloud hands the node neither.
	if (!m || m->trunk_ifindex != skb->ifindex)
		return TC_ACT_SHOT;
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), m->vid) < 0)
		return TC_ACT_SHOT; // do not leak it onto the native VLAN
	return TC_ACT_OK;
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
