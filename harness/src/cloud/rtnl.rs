//! The two rtnetlink deletions the mock cloud needs at runtime and
//! `kernel::netlink::Netlink` does not offer: deleting a link and a
//! neighbour entry, in the namespace of the calling thread.
//!
//! TODO(lead): move these into `Netlink` (`del_link`, `del_neigh`) and drop
//! this file.

use std::net::Ipv4Addr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::kernel::netlink::Netlink;
use crate::kernel::KernelError;

/// `ip link del NAME`. Deleting one end of a veth deletes both.
pub fn del_link(nl: &mut Netlink, name: &str) -> Result<(), KernelError> {
    let what = format!("deleting link {name}");
    let index = nl
        .link_index(name)?
        .ok_or_else(|| KernelError::new(format!("{what}: no link named {name}")))?;
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    request(RouteNetlinkMessage::DelLink(msg), &what)
}

/// `ip neigh del IP dev DEV`; an entry that is already gone is fine.
pub fn del_neigh(nl: &mut Netlink, dev: &str, ip: Ipv4Addr) -> Result<(), KernelError> {
    let what = format!("deleting neighbour {ip} dev {dev}");
    let Some(index) = nl.link_index(dev)? else {
        return Ok(());
    };
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match request(RouteNetlinkMessage::DelNeighbour(msg), &what) {
        Err(e) if e.0.contains(&format!("(errno {})", libc::ENOENT)) => Ok(()),
        other => other,
    }
}

/// Sends one request and waits for its ack.
fn request(msg: RouteNetlinkMessage, what: &str) -> Result<(), KernelError> {
    let err = |e: &dyn std::fmt::Display| KernelError::new(format!("{what}: {e}"));
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| err(&e))?;
    sock.bind_auto().map_err(|e| err(&e))?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(|e| err(&e))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    sock.send(&buf, 0).map_err(|e| err(&e))?;
    let mut rbuf = Vec::with_capacity(16 * 1024);
    loop {
        rbuf.clear();
        let n = sock.recv(&mut rbuf, 0).map_err(|e| err(&e))?;
        let answer =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[..n]).map_err(|e| err(&e))?;
        if let NetlinkPayload::Error(e) = answer.payload {
            return match e.code {
                None => Ok(()),
                Some(code) => {
                    let errno = -code.get();
                    Err(err(&format!(
                        "{} (errno {errno})",
                        std::io::Error::from_raw_os_error(errno)
                    )))
                }
            };
        }
    }
}
