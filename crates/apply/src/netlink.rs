//! A NETLINK_NETFILTER socket, optionally inside a named network namespace,
//! and the nftables ruleset generation.
//!
//! The generation (`NFT_MSG_GETGEN`) is a counter the kernel bumps on every
//! committed nftables transaction in the namespace. Reading it is one small
//! netlink round trip, where listing a table with 100,000 set elements costs
//! seconds: apply records it after each change, and an incremental apply
//! only runs while it is unchanged (nobody committed anything since, so the
//! kernel still runs exactly the recorded plan).

use nix::sys::socket::{
    bind, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// `nfnetlink` subsystem ids and message types used here.
pub const NFNL_SUBSYS_ULOG: u16 = 4;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

/// Open a NETLINK_NETFILTER socket in network namespace `netns` (a name
/// under `/run/netns`, as `ip netns` makes them) or in the caller's.
/// The socket stays in that namespace for its whole life.
pub fn nfnl_socket(netns: Option<&str>) -> std::io::Result<OwnedFd> {
    in_netns(netns, || {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(io)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io)?;
        Ok(fd)
    })
}

/// Run `f` in network namespace `netns` (`/run/netns/NAME`; the caller's
/// own when `None`). setns changes only the calling thread, so `f` runs on
/// a thread of its own that ends with it: a socket it makes belongs to
/// that namespace for good, whichever thread uses it later.
pub fn in_netns<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    match netns {
        None => f(),
        Some(name) => {
            let path = format!("/run/netns/{name}");
            let ns = std::fs::File::open(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))?;
            std::thread::scope(|s| {
                s.spawn(|| {
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io)?;
                    f()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
            })
        }
    }
}

/// Receive timeout for request/answer exchanges.
pub fn set_recv_timeout(fd: &OwnedFd, d: Duration) -> std::io::Result<()> {
    let tv = TimeVal::new(d.as_secs() as _, d.subsec_micros() as _);
    setsockopt(fd, sockopt::ReceiveTimeout, &tv).map_err(io)
}

/// A netlink message with an `nfgenmsg` header: `(subsys << 8) | msg`,
/// flags, sequence, family, resource id (big endian), then `attrs` (already
/// encoded).
pub fn nfnl_message(
    subsys: u16,
    msg: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&((subsys << 8) | msg).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.push(family);
    b.push(0); // NFNETLINK_V0
    b.extend_from_slice(&res_id.to_be_bytes());
    b.extend_from_slice(attrs);
    b
}

/// One netlink attribute (type, payload), padded to 4 bytes.
pub fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut b = Vec::with_capacity((len + 3) & !3);
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

/// Netlink messages in a datagram: (type, flags, payload after the 16-byte header).
pub fn messages(buf: &[u8]) -> Vec<(u16, u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let flags = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]);
        out.push((ty, flags, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Attributes (type without the nested/byte-order bits, payload).
pub fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let adv = ((len + 3) & !3).min(b.len());
        b = &b[adv..];
    }
    out
}

/// The errno of an `NLMSG_ERROR` payload (0 is an ACK).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

/// The nftables ruleset generation of a namespace.
pub fn nft_genid(netns: Option<&str>) -> std::io::Result<u32> {
    let fd = nfnl_socket(netns)?;
    set_recv_timeout(&fd, Duration::from_secs(2))?;
    let req = nfnl_message(
        NFNL_SUBSYS_NFTABLES,
        NFT_MSG_GETGEN,
        NLM_F_REQUEST,
        1,
        0,
        0,
        &[],
    );
    send(fd.as_raw_fd(), &req, MsgFlags::empty()).map_err(io)?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io)?;
        for (ty, _, payload) in messages(&buf[..n]) {
            if ty == NLMSG_ERROR {
                if let Some(code) = error_code(payload).filter(|c| *c != 0) {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN && payload.len() >= 4 {
                for (at, v) in attrs(&payload[4..]) {
                    if at == NFTA_GEN_ID && v.len() == 4 {
                        return Ok(u32::from_be_bytes(v.try_into().expect("4 bytes")));
                    }
                }
            }
        }
    }
}

const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;

/// The `nfgenmsg` family of an nft table family name.
pub fn nfproto(family: &str) -> Option<u8> {
    Some(match family {
        "inet" => 1,
        "ip" => 2,
        "arp" => 3,
        "netdev" => 5,
        "bridge" => 7,
        "ip6" => 10,
        _ => return None,
    })
}

/// The handles of the rules of one chain, in chain order (one netlink
/// dump of that chain: no set elements, no other chain, unlike `nft -a
/// list chain`, which fetches the whole ruleset first).
pub fn nft_rule_handles(
    netns: Option<&str>,
    family: &str,
    table: &str,
    chain: &str,
) -> std::io::Result<Vec<u64>> {
    let fam = nfproto(family).ok_or_else(|| std::io::Error::other(format!("family {family}")))?;
    let fd = nfnl_socket(netns)?;
    set_recv_timeout(&fd, Duration::from_secs(2))?;
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    let attrs_b = [
        nla(NFTA_RULE_TABLE, &cstr(table)),
        nla(NFTA_RULE_CHAIN, &cstr(chain)),
    ]
    .concat();
    let req = nfnl_message(
        NFNL_SUBSYS_NFTABLES,
        NFT_MSG_GETRULE,
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        fam,
        0,
        &attrs_b,
    );
    send(fd.as_raw_fd(), &req, MsgFlags::empty()).map_err(io)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut out = Vec::new();
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io)?;
        if n == 0 {
            return Err(std::io::Error::other("netlink dump ended early"));
        }
        for (ty, _, payload) in messages(&buf[..n]) {
            if ty == NLMSG_DONE {
                return Ok(out);
            }
            if ty == NLMSG_ERROR {
                if let Some(code) = error_code(payload).filter(|c| *c != 0) {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE && payload.len() >= 4 {
                let mut handle = None;
                let mut in_chain = false;
                for (at, v) in attrs(&payload[4..]) {
                    match at {
                        NFTA_RULE_HANDLE if v.len() == 8 => {
                            handle = Some(u64::from_be_bytes(v.try_into().expect("8 bytes")))
                        }
                        NFTA_RULE_CHAIN => {
                            in_chain = v.split(|b| *b == 0).next() == Some(chain.as_bytes())
                        }
                        _ => {}
                    }
                }
                if let (Some(h), true) = (handle, in_chain) {
                    out.push(h);
                }
            }
        }
    }
}

pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
const NFNL_BATCH_GENID: u16 = 1;

/// Send `msgs` (type, flags, payload after the `nlmsghdr`) as one
/// nftables transaction: batch begin, the messages (each asking for an
/// acknowledgement), batch end. With `genid`, the kernel refuses the
/// whole batch unless its ruleset generation is still that one (nobody
/// committed anything since it was read). Returns once every message is
/// acknowledged; the first error refuses the transaction (nothing of it
/// is committed).
pub fn nft_batch(
    netns: Option<&str>,
    msgs: &[(u16, u16, Vec<u8>)],
    genid: Option<u32>,
) -> std::io::Result<()> {
    let fd = nfnl_socket(netns)?;
    set_recv_timeout(&fd, Duration::from_secs(5))?;
    let gen_attr = genid
        .map(|g| nla(NFNL_BATCH_GENID, &g.to_be_bytes()))
        .unwrap_or_default();
    let mut seq = 1u32;
    let mut buf = nfnl_message(
        0,
        16,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &gen_attr,
    );
    let first = seq + 1;
    for (ty, flags, payload) in msgs {
        seq += 1;
        let len = 16 + payload.len();
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(payload);
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
    }
    let last = seq;
    seq += 1;
    buf.extend_from_slice(&nfnl_message(
        0,
        17,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    send(fd.as_raw_fd(), &buf, MsgFlags::empty()).map_err(io)?;
    let mut acked = std::collections::BTreeSet::new();
    let mut rbuf = vec![0u8; 1 << 16];
    while acked.len() < msgs.len() {
        let n = recv(fd.as_raw_fd(), &mut rbuf, MsgFlags::empty()).map_err(io)?;
        if n == 0 {
            return Err(std::io::Error::other("netlink socket closed"));
        }
        for (ty, _, payload) in messages(&rbuf[..n]) {
            if ty != NLMSG_ERROR {
                continue;
            }
            let code = error_code(payload).unwrap_or(-5); // EIO: a short error
                                                          // The acknowledged request's header follows the code.
            let their_seq = payload
                .get(12..16)
                .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
                .unwrap_or(0);
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(-code));
            }
            if (first..=last).contains(&their_seq) {
                acked.insert(their_seq);
            }
        }
    }
    Ok(())
}

/// The ruleset generation with what makes it unique across reboots and
/// namespace instances: `BOOT_ID/NETNS_INODE/GENID`. A namespace made anew
/// (or a reboot) starts counting again, so the number alone could repeat.
pub fn nft_generation(netns: Option<&str>) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let ns = match netns {
        Some(name) => std::fs::metadata(format!("/run/netns/{name}"))?,
        None => std::fs::metadata("/proc/self/ns/net")?,
    };
    let gen = nft_genid(netns)?;
    Ok(format!("{}/{}/{gen}", boot.trim(), ns.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_round_trip() {
        let a = [nla(1, &7u32.to_be_bytes()), nla(3, b"nft\0")].concat();
        let m = nfnl_message(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWGEN, 0, 9, 0, 0, &a);
        let two = [m.clone(), m].concat();
        let got = messages(&two);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 0x0a0f);
        let at = attrs(&got[0].2[4..]);
        assert_eq!(at, vec![(1, &7u32.to_be_bytes()[..]), (3, &b"nft\0"[..])]);
    }
}
