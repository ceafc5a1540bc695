//! The few socket calls std, socket2 and tokio do not cover: UDP with
//! IP_PKTINFO (answer from the address the request was sent to) and
//! IP_RECVERR, and AF_PACKET sockets with a TPACKET_V2 receive ring.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// Linux uapi constants (linux/if_packet.h, asm-generic/socket.h) that the
// libc crate does not export for every target.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;

/// Room for a handful of control messages.
const CMSG_BUF: usize = 256;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Turns on IP_RECVERR: every ICMP error for the socket is reported (and
/// queued with the address of the router that sent it).
pub(crate) fn enable_recverr(fd: RawFd) -> io::Result<()> {
    set_int_opt(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
}

/// `struct sock_extended_err` from linux/errqueue.h.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockExtendedErr {
    ee_errno: u32,
    ee_origin: u8,
    ee_type: u8,
    ee_code: u8,
    ee_pad: u8,
    ee_info: u32,
    ee_data: u32,
}

const SO_EE_ORIGIN_ICMP: u8 = 2;

/// Reads one entry of the socket's error queue; the address of the host
/// that sent the ICMP error, if it was one.
pub(crate) fn take_icmp_error_origin(fd: RawFd) -> Option<Ipv4Addr> {
    take_icmp_error(fd).map(|e| e.from)
}

/// An ICMP error queued on a socket with IP_RECVERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError {
    /// Who sent it (SO_EE_OFFENDER).
    pub from: Ipv4Addr,
    pub icmp_type: u8,
    pub code: u8,
}

/// Reads one entry of the socket's error queue: the ICMP error, if it was one.
pub(crate) fn take_icmp_error(fd: RawFd) -> Option<IcmpError> {
    // SAFETY: as in `recv_with_pktinfo`; the offender address follows the
    // extended error inside the same cmsg (SO_EE_OFFENDER).
    unsafe {
        let mut data = [0u8; 512];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut control = [0u64; CMSG_BUF / 8];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_BUF;
        cvt_size(libc::recvmsg(
            fd,
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        ))
        .ok()?;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_RECVERR {
                let p = libc::CMSG_DATA(cmsg);
                let ee: SockExtendedErr = std::ptr::read_unaligned(p.cast());
                if ee.ee_origin == SO_EE_ORIGIN_ICMP {
                    let from: libc::sockaddr_in =
                        std::ptr::read_unaligned(p.add(size_of::<SockExtendedErr>()).cast());
                    return Some(IcmpError {
                        from: *sockaddr_v4(&from).ip(),
                        icmp_type: ee.ee_type,
                        code: ee.ee_code,
                    });
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        None
    }
}

/// Turns on IP_PKTINFO so `recv_with_pktinfo` learns each request's
/// destination address.
pub(crate) fn enable_pktinfo(fd: RawFd) -> io::Result<()> {
    set_int_opt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
}

/// One datagram with where it came from and which local address it was sent to.
pub(crate) struct Datagram {
    pub len: usize,
    pub peer: SocketAddrV4,
    pub dst: Option<Ipv4Addr>,
}

fn sockaddr_v4(a: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
        u16::from_be(a.sin_port),
    )
}

/// `recvmsg` on a UDP socket with IP_PKTINFO enabled.
pub(crate) fn recv_with_pktinfo(fd: RawFd, buf: &mut [u8]) -> io::Result<Datagram> {
    // SAFETY: every pointer handed to recvmsg points into a local that lives
    // across the call; cmsgs are read only within `msg_controllen`.
    unsafe {
        let mut peer: libc::sockaddr_in = zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; CMSG_BUF / 8];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut peer as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_BUF;
        let len = cvt_size(libc::recvmsg(fd, &mut msg, 0))?;
        let mut dst = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                dst = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(Datagram {
            len,
            peer: sockaddr_v4(&peer),
            dst,
        })
    }
}

/// `sendmsg` to `to`, with `src` as the source address (IP_PKTINFO
/// `ipi_spec_dst`) when given; the route still picks the interface.
pub(crate) fn send_from(
    fd: RawFd,
    buf: &[u8],
    to: SocketAddrV4,
    src: Option<Ipv4Addr>,
) -> io::Result<usize> {
    // SAFETY: as in `recv_with_pktinfo`; the cmsg is written inside `control`.
    unsafe {
        let mut dst: libc::sockaddr_in = zeroed();
        dst.sin_family = libc::AF_INET as libc::sa_family_t;
        dst.sin_port = to.port().to_be();
        dst.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; CMSG_BUF / 8];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(src) =
            src.filter(|s| !s.is_unspecified() && !s.is_broadcast() && !s.is_multicast())
        {
            let space = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::IPPROTO_IP;
            (*cmsg).cmsg_type = libc::IP_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        }
        cvt_size(libc::sendmsg(fd, &msg, 0))
    }
}

/// A plain AF_PACKET/SOCK_RAW/ETH_P_ALL socket in the calling thread's namespace.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            ETH_P_ALL.to_be() as libc::c_int,
        )
    })?;
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An AF_PACKET socket with a TPACKET_V2 receive ring.
///
/// Why a ring and not recvmsg + SO_TIMESTAMPNS: the kernel turns software
/// timestamps on through deferred work (a static key), and a frame that
/// arrives before that is stamped when it is *read* — so frames of
/// different namespaces, read one tap after the other, would come out in
/// read order. The ring stamps every frame when it is delivered to the tap.
pub(crate) struct PacketRing {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    next: usize,
}

// SAFETY: the mapping belongs to this value alone; it is only read and
// written through `&mut self`.
unsafe impl Send for PacketRing {}

/// `struct tpacket_req`.
#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// `struct tpacket2_hdr`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Tpacket2Hdr {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// Each slot holds the headers of one frame (the rest is cut: taps only
/// need headers, VXLAN inner ones included).
const RING_FRAME: usize = 1024;
const RING_BLOCK: usize = 1 << 16;
// A tap sees every frame of its namespace, not only its own probe's: with
// parallel probes (and repeats) a busy node namespace filled a 256-frame ring
// before the reader drained it, the kernel dropped the rest, and a path check
// failed on hops that were really crossed (F8, ~1 run in 5). 2 MiB per ring.
const RING_BLOCKS: usize = 32;
const RING_FRAMES: usize = RING_BLOCK / RING_FRAME * RING_BLOCKS;
/// TPACKET_ALIGN(sizeof(struct tpacket2_hdr)): where sockaddr_ll sits.
const SLL_OFFSET: usize = (size_of::<Tpacket2Hdr>() + 15) & !15;

impl PacketRing {
    /// Opens the tap socket in the calling thread's namespace.
    pub(crate) fn open() -> io::Result<PacketRing> {
        // Created with protocol 0 (no capture hook yet) and bound to ETH_P_ALL
        // once the ring exists: setting a ring on a capturing socket makes
        // the kernel unhook it and wait for an RCU grace period first.
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ))?)
        };
        let raw = fd.as_raw_fd();
        set_int_opt(raw, libc::SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        let req = TpacketReq {
            tp_block_size: RING_BLOCK as u32,
            tp_block_nr: RING_BLOCKS as u32,
            tp_frame_size: RING_FRAME as u32,
            tp_frame_nr: RING_FRAMES as u32,
        };
        // SAFETY: `req` lives across the call and its size is passed.
        cvt(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                (&req as *const TpacketReq).cast(),
                size_of::<TpacketReq>() as libc::socklen_t,
            )
        })?;
        let map_len = RING_BLOCK * RING_BLOCKS;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = PacketRing {
            fd,
            map: map.cast(),
            map_len,
            next: 0,
        };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        // SAFETY: `sll` lives across the call and its size is passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(ring)
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Hands the next filled slot to `f` (frame bytes, metadata) and gives
    /// it back to the kernel; false when the ring is empty.
    pub(crate) fn next_frame(&mut self, f: impl FnOnce(&[u8], &Frame)) -> bool {
        // SAFETY: slot `next` lies inside the mapping; the kernel hands a
        // slot to us by setting TP_STATUS_USER (read with acquire) and takes
        // it back when we store TP_STATUS_KERNEL (with release). Offsets the
        // kernel wrote are checked against the slot size before use.
        unsafe {
            let slot = self.map.add(self.next * RING_FRAME);
            let status = &*(slot as *const std::sync::atomic::AtomicU32);
            let st = status.load(std::sync::atomic::Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                return false;
            }
            let hdr: Tpacket2Hdr = std::ptr::read(slot as *const Tpacket2Hdr);
            let sll: libc::sockaddr_ll = std::ptr::read_unaligned(slot.add(SLL_OFFSET).cast());
            let mac = usize::from(hdr.tp_mac);
            let len = (hdr.tp_snaplen as usize).min(RING_FRAME.saturating_sub(mac));
            if mac < RING_FRAME {
                let bytes = std::slice::from_raw_parts(slot.add(mac), len);
                let frame = Frame {
                    ifindex: sll.sll_ifindex,
                    outgoing: sll.sll_pkttype == PACKET_OUTGOING,
                    ts_ns: u128::from(hdr.tp_sec) * 1_000_000_000 + u128::from(hdr.tp_nsec),
                    vlan_tci: (st & TP_STATUS_VLAN_VALID != 0).then_some(hdr.tp_vlan_tci),
                };
                f(bytes, &frame);
            }
            status.store(TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
            self.next = (self.next + 1) % RING_FRAMES;
            true
        }
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `open` mapped.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// One frame from a tap, its bytes passed alongside.
pub(crate) struct Frame {
    pub ifindex: i32,
    pub outgoing: bool,
    /// When the kernel delivered it to the tap, ns since the Unix epoch.
    pub ts_ns: u128,
    /// VLAN tag the kernel moved out of the frame into metadata.
    pub vlan_tci: Option<u16>,
}

/// Name of interface `ifindex` in the namespace of socket `fd` (SIOCGIFNAME
/// answers for the socket's namespace, not the calling thread's).
pub(crate) fn ifname_of(fd: RawFd, ifindex: i32) -> io::Result<String> {
    // SAFETY: `req` is a properly sized ifreq that lives across the ioctl.
    unsafe {
        let mut req: libc::ifreq = zeroed();
        req.ifr_ifru.ifru_ifindex = ifindex;
        cvt(libc::ioctl(fd, libc::SIOCGIFNAME as _, &mut req))?;
        let name: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&name).into_owned())
    }
}

/// Index of interface `name` in the calling thread's namespace.
pub(crate) fn ifindex_of(name: &str) -> io::Result<i32> {
    let c =
        std::ffi::CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx as i32)
    }
}

/// Sends one raw Ethernet frame out of interface `ifindex` (tests and
/// diagnostics: the frame is sent as given, VLAN tag included).
pub fn send_raw_frame(ifname: &str, frame: &[u8]) -> io::Result<()> {
    let fd = packet_socket()?;
    let ifindex = ifindex_of(ifname)?;
    // SAFETY: `to` is a zeroed sockaddr_ll filled in below; sizes passed.
    unsafe {
        let mut to: libc::sockaddr_ll = zeroed();
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ALL.to_be();
        to.sll_ifindex = ifindex;
        to.sll_halen = 6;
        if let Some(dst_mac) = frame.get(..6) {
            to.sll_addr[..6].copy_from_slice(dst_mac);
        }
        cvt_size(libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ))?;
    }
    Ok(())
}

/// `poll` on several fds for readability; returns the indexes that are readable.
pub(crate) fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}
