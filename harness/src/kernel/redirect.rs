//! tc u32 redirects, the way Terway's IPVLAN datapath installs them
//! (`plugin/datapath/ipvlan_linux.go`, `setupFilters`): on the ENI link's
//! clsact egress, `u32 match ip dst <cidr>` → `mirred ingress redirect dev
//! ipvl_N` at priority 40000, so traffic of the pods to the service CIDR
//! (and `host_stack_cidrs`) enters the host's own stack instead of the VPC.
//!
//! Terway also chains `tunnel_key unset` and `skbedit ptype host` before the
//! mirred action; neither module is on this kernel. Neither matters here:
//! no packet carries tunnel metadata, and a packet an ipvlan/macvlan child
//! sends already has `pkt_type` host when it is redirected.

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcHeader, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::Netlink;
use super::KernelError;

/// Terway's priority for these filters.
pub const REDIRECT_PRIORITY: u16 = 40000;
/// Offset of the IPv4 destination address in the IP header.
const IPV4_DST_OFFSET: i32 = 16;
const ETH_P_IP: u16 = 0x0800;

impl Netlink {
    /// `tc filter add dev LINK egress prio 40000 protocol ip u32 match ip
    /// dst CIDR action mirred ingress redirect dev TO` (clsact added first
    /// where missing).
    pub fn add_ingress_redirect(
        &mut self,
        link: &str,
        dst: Ipv4Net,
        to: &str,
    ) -> Result<(), KernelError> {
        let what = format!("adding u32 redirect {dst} from {link} egress to {to} ingress");
        let index = self.require_index(link, &what)?;
        let to_index = self.require_index(to, &what)?;
        self.add_clsact(index)?;
        let mut header = TcHeader::default();
        header.family = AddressFamily::Unspec;
        header.index = index as i32;
        header.parent = TcHandle {
            major: 0xffff,
            minor: TcHandle::MIN_EGRESS,
        };
        // tcm_info: priority in the upper half, protocol (network order) below.
        header.info = (u32::from(REDIRECT_PRIORITY) << 16) | u32::from(ETH_P_IP.to_be());
        let mut key = TcU32Key::default();
        key.mask = u32::from(dst.netmask());
        key.val = u32::from(dst.network());
        key.off = IPV4_DST_OFFSET;
        let mut sel = TcU32Selector::default();
        sel.flags = TcU32SelectorFlags::Terminal;
        sel.nkeys = 1;
        sel.keys = vec![key];
        let mut generic = TcActionGeneric::default();
        generic.action = TcActionType::Stolen;
        let mut mirror = TcMirror::default();
        mirror.generic = generic;
        mirror.eaction = TcMirrorActionType::IngressRedir;
        mirror.ifindex = to_index;
        let mut action = TcAction::default();
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
        ];
        let msg = TcMessage::from_parts(
            header,
            vec![
                TcAttribute::Kind("u32".into()),
                TcAttribute::Options(vec![
                    TcOption::U32(TcFilterU32Option::Selector(sel)),
                    TcOption::U32(TcFilterU32Option::Action(vec![action])),
                ]),
            ],
        );
        self.change(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }
}
