//! The probe helper: the code that runs *inside* a namespace.
//!
//! The lab starts it with `ip netns exec NS <exe> [prefix…] <command> …`:
//! - `serve --tcp ADDR,PORT --udp ADDR,PORT …`: binds every listener, prints
//!   `ready`, then answers (TCP: accept and echo; UDP: send the datagram
//!   back) until its standard input closes.
//! - `send --timeout-ms T SPEC…`: sends every probe at once (one thread
//!   each) and prints one line per probe: `INDEX VERDICT DETAIL`.
//!   A SPEC is `PROTO,SRC,DST,SPORT,DPORT,ICMPTYPE,ICMPCODE,ID` (`SPORT`
//!   0 = any).
//!   With `--hold`, TCP probes connect first, print `INDEX connected`, wait
//!   for a line on standard input, then send data over the connection and
//!   report whether the echo comes back (for established-flow probes).
//!
//! [`helper_main`] is the entry point, used by the `rampart-probe` binary
//! and by `rampart`'s hidden subcommand.

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// What a probe observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Observed {
    /// Handshake completed / datagram answered / echo answered.
    Accept,
    /// Nothing came back within the timeout (or the sender's own kernel
    /// refused to send it: EPERM from an OUTPUT drop).
    Drop,
    /// A TCP reset or an ICMP unreachable came back.
    Reject,
}

impl Observed {
    pub fn as_action(self) -> rampart_types::Action {
        match self {
            Observed::Accept => rampart_types::Action::Accept,
            Observed::Drop => rampart_types::Action::Drop,
            Observed::Reject => rampart_types::Action::Reject,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Observed::Accept => "ACCEPT",
            Observed::Drop => "DROP",
            Observed::Reject => "REJECT",
        }
    }
    fn parse(s: &str) -> Option<Observed> {
        match s {
            "ACCEPT" => Some(Observed::Accept),
            "DROP" => Some(Observed::Drop),
            "REJECT" => Some(Observed::Reject),
            _ => None,
        }
    }
}

/// The protocol of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeProto {
    Tcp,
    Udp,
    /// ICMP or ICMPv6 by the family of the addresses.
    Icmp,
}

/// One probe as the helper sees it: concrete addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub proto: ProbeProto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// ICMP type number (echo request: 8 / 128).
    pub icmp_type: u8,
    /// ICMP code (0 for echo requests).
    pub icmp_code: u8,
    /// ICMP identifier (unique among the probes in flight in a namespace).
    pub id: u16,
    /// The lab's only (not sent to the helper): the spoofed source the
    /// sender's namespace writes into the packet instead of `src`.
    pub spoof: Option<IpAddr>,
}

impl Spec {
    pub fn encode(&self) -> String {
        let p = match self.proto {
            ProbeProto::Tcp => "tcp",
            ProbeProto::Udp => "udp",
            ProbeProto::Icmp => "icmp",
        };
        format!(
            "{p},{},{},{},{},{},{},{}",
            self.src, self.dst, self.sport, self.dport, self.icmp_type, self.icmp_code, self.id
        )
    }
    pub fn decode(s: &str) -> Result<Spec, String> {
        let f: Vec<&str> = s.split(',').collect();
        if f.len() != 8 {
            return Err(format!("bad probe spec `{s}`"));
        }
        let proto = match f[0] {
            "tcp" => ProbeProto::Tcp,
            "udp" => ProbeProto::Udp,
            "icmp" => ProbeProto::Icmp,
            p => return Err(format!("bad probe proto `{p}`")),
        };
        let bad = |w: &str| format!("bad {w} in probe spec `{s}`");
        Ok(Spec {
            proto,
            src: f[1].parse().map_err(|_| bad("source"))?,
            dst: f[2].parse().map_err(|_| bad("dest"))?,
            sport: f[3].parse().map_err(|_| bad("sport"))?,
            dport: f[4].parse().map_err(|_| bad("dport"))?,
            icmp_type: f[5].parse().map_err(|_| bad("icmp type"))?,
            icmp_code: f[6].parse().map_err(|_| bad("icmp code"))?,
            id: f[7].parse().map_err(|_| bad("icmp id"))?,
            spoof: None,
        })
    }
}

/// A line of `send` output, parsed.
pub fn parse_result_line(line: &str) -> Option<(usize, Result<Observed, String>, String)> {
    let mut it = line.splitn(3, ' ');
    let idx = it.next()?.parse().ok()?;
    let word = it.next()?;
    let detail = it.next().unwrap_or("").to_string();
    match Observed::parse(word) {
        Some(o) => Some((idx, Ok(o), detail)),
        None if word == "ERROR" => Some((idx, Err(detail.clone()), detail)),
        None => None,
    }
}

/// The hidden subcommand under which `rampart` runs the helper.
pub const HIDDEN_SUBCOMMAND: &str = "__probe";

/// For a binary that carries the helper as [`HIDDEN_SUBCOMMAND`]: call first
/// thing in `main` with `std::env::args()`; `Some(exit code)` when this
/// process is the helper.
///
/// ```no_run
/// let args: Vec<String> = std::env::args().collect();
/// if let Some(code) = rampart_lab::probe::run_if_helper(&args) {
///     std::process::exit(code);
/// }
/// // ... and the lab is told to re-execute this program:
/// let helper = rampart_lab::Helper::current_exe(&[rampart_lab::probe::HIDDEN_SUBCOMMAND]).unwrap();
/// ```
pub fn run_if_helper(args: &[String]) -> Option<i32> {
    match args.get(1) {
        Some(a) if a == HIDDEN_SUBCOMMAND => Some(helper_main(&args[2..])),
        _ => None,
    }
}

/// Entry point of the helper. `args` are the arguments after the program
/// name (and after any hidden-subcommand prefix). Returns the exit code.
pub fn helper_main(args: &[String]) -> i32 {
    let res = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("send") => send(&args[1..]),
        _ => Err("usage: rampart-probe serve --tcp ADDR,PORT --udp ADDR,PORT | send --timeout-ms T SPEC…".to_string()),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rampart-probe: {e}");
            2
        }
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let (a, p) = s
        .rsplit_once(',')
        .ok_or_else(|| format!("bad listen spec `{s}`"))?;
    let a: IpAddr = a.parse().map_err(|_| format!("bad listen address `{a}`"))?;
    let p: u16 = p.parse().map_err(|_| format!("bad listen port `{p}`"))?;
    Ok(SocketAddr::new(a, p))
}

fn serve(args: &[String]) -> Result<(), String> {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--udp-sniff4" || a == "--udp-sniff6" {
            // Something else owns the port (wireguard-go on its listen
            // port): watch for our datagrams arriving instead of answering.
            let v4 = a == "--udp-sniff4";
            let d = if v4 { Domain::IPV4 } else { Domain::IPV6 };
            let sock = Socket::new(d, Type::RAW, Some(Protocol::UDP))
                .map_err(|e| format!("raw udp socket: {e}"))?;
            let seen = seen.clone();
            thread::spawn(move || sniff_udp(sock, v4, &seen));
            continue;
        }
        if a == "--icmp4" || a == "--icmp6" {
            let v4 = a == "--icmp4";
            let (d, p) = if v4 {
                (Domain::IPV4, Protocol::ICMPV4)
            } else {
                (Domain::IPV6, Protocol::ICMPV6)
            };
            let sock =
                Socket::new(d, Type::RAW, Some(p)).map_err(|e| format!("raw icmp socket: {e}"))?;
            let seen = seen.clone();
            thread::spawn(move || sniff_icmp(sock, v4, &seen));
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--tcp" => tcp.push(parse_listen(v)?),
            "--udp" => udp.push(parse_listen(v)?),
            _ => return Err(format!("unknown serve option {a}")),
        }
    }
    for addr in tcp {
        let l = TcpListener::bind(addr).map_err(|e| format!("tcp listen on {addr}: {e}"))?;
        thread::spawn(move || {
            for c in l.incoming().flatten() {
                thread::spawn(move || echo_tcp(c));
            }
        });
    }
    for addr in udp {
        let s = UdpSocket::bind(addr).map_err(|e| format!("udp bind on {addr}: {e}"))?;
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let _ = s.send_to(&buf[..n], peer);
                    }
                    Err(_) => continue,
                }
            }
        });
    }
    println!("ready");
    io::stdout().flush().map_err(|e| e.to_string())?;
    // Serve until the lab closes our standard input, then say which
    // probe ICMP messages arrived: `seen 4|6 TYPE ID`.
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    let mut out = io::stdout().lock();
    for l in seen.lock().unwrap().iter() {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
    Ok(())
}

/// Record every ICMP message carrying the probe marker that reaches this
/// namespace (raw sockets see a copy of each one delivered locally).
fn sniff_icmp(sock: Socket, v4: bool, seen: &std::sync::Mutex<Vec<String>>) {
    let mut buf = [0u8; 2048];
    while let Ok(n) = (&sock).read(&mut buf) {
        let icmp = if v4 {
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            match buf.get(ihl..n) {
                Some(x) => x,
                None => continue,
            }
        } else {
            &buf[..n]
        };
        if icmp.len() >= 8 && icmp[8..].starts_with(MARKER) {
            let id = u16::from_be_bytes([icmp[4], icmp[5]]);
            seen.lock()
                .unwrap()
                .push(format!("seen {} {} {id}", if v4 { 4 } else { 6 }, icmp[0]));
        }
    }
}

/// Record every probe UDP datagram delivered locally (raw sockets get a
/// copy after the INPUT hook accepted it): `seen udp SRC DPORT`.
fn sniff_udp(sock: Socket, v4: bool, seen: &std::sync::Mutex<Vec<String>>) {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) =
        nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(sock.as_raw_fd(), &mut buf)
    {
        let bytes = &buf[..n];
        let udp = if v4 {
            let ihl = ((bytes[0] & 0x0f) as usize) * 4;
            match bytes.get(ihl..) {
                Some(x) => x,
                None => continue,
            }
        } else {
            bytes
        };
        if udp.len() >= 8 && udp[8..].starts_with(MARKER) {
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            let src: Option<IpAddr> = from.and_then(|f| {
                f.as_sockaddr_in()
                    .map(|a| IpAddr::V4(a.ip()))
                    .or_else(|| f.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
            });
            if let Some(src) = src {
                seen.lock().unwrap().push(format!("seen udp {src} {dport}"));
            }
        }
    }
}

const MARKER: &[u8] = b"rampart probe";

fn echo_tcp(mut c: TcpStream) {
    let mut buf = [0u8; 2048];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn send(args: &[String]) -> Result<(), String> {
    let mut timeout = Duration::from_millis(400);
    let mut hold = false;
    let mut specs = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--timeout-ms" => {
                let v = it.next().ok_or("--timeout-ms needs a value")?;
                timeout =
                    Duration::from_millis(v.parse().map_err(|_| format!("bad timeout `{v}`"))?);
            }
            "--hold" => hold = true,
            s => specs.push(Spec::decode(s)?),
        }
    }
    let out = Arc::new(std::sync::Mutex::new(io::stdout()));
    let report = {
        let out = out.clone();
        move |i: usize, r: Result<(Observed, String), String>| {
            let line = match r {
                Ok((o, d)) => format!("{i} {} {d}\n", o.name()),
                Err(e) => format!("{i} ERROR {}\n", e.replace('\n', " ")),
            };
            let mut o = out.lock().unwrap();
            let _ = o.write_all(line.as_bytes());
            let _ = o.flush();
        }
    };
    if hold {
        // Established flows: open every flow now (TCP: connect; UDP and
        // ICMP echo: one answered exchange), report, wait for the go.
        let mut flows = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            match open_flow(s, timeout) {
                Ok(f) => {
                    let mut o = out.lock().unwrap();
                    let _ = writeln!(o, "{i} connected");
                    let _ = o.flush();
                    flows.push((i, s.clone(), f));
                }
                Err(e) => report(i, Err(format!("could not open the flow: {e}"))),
            }
        }
        let mut line = String::new();
        let _ = io::stdin().lock().read_line(&mut line);
        let handles: Vec<_> = flows
            .into_iter()
            .map(|(i, s, f)| {
                let report = report.clone();
                thread::spawn(move || report(i, continue_flow(f, &s, timeout)))
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        return Ok(());
    }
    let barrier = Arc::new(Barrier::new(specs.len().max(1)));
    let handles: Vec<_> = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let report = report.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                report(i, probe_one(&s, timeout))
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn domain(a: &IpAddr) -> Domain {
    if a.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// Classify a socket error: REJECT for what an answer from the network
/// causes, DROP for a local refusal (EPERM from the OUTPUT hook) and time
/// outs, an error for anything else.
fn classify(e: &io::Error) -> Result<(Observed, String), String> {
    let code = e.raw_os_error().unwrap_or(0);
    let d = format!("{e}");
    match code {
        c if c == nix::libc::ECONNREFUSED
            || c == nix::libc::EHOSTUNREACH
            || c == nix::libc::ENETUNREACH
            || c == nix::libc::EACCES
            || c == nix::libc::ECONNRESET =>
        {
            Ok((Observed::Reject, d))
        }
        c if c == nix::libc::EPERM => Ok((
            Observed::Drop,
            format!("refused by the sender's own kernel: {d}"),
        )),
        c if c == nix::libc::ETIMEDOUT || c == nix::libc::EAGAIN || c == nix::libc::EINPROGRESS => {
            Ok((Observed::Drop, "no answer".into()))
        }
        _ if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            Ok((Observed::Drop, "no answer".into()))
        }
        _ => Err(d),
    }
}

fn is_eperm(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EPERM)
}

fn no_answer(refused: bool) -> String {
    if refused {
        "refused by the sender's own kernel (EPERM) and no error came back".into()
    } else {
        "no answer".into()
    }
}

fn bound_socket(s: &Spec, ty: Type, proto: Protocol) -> Result<Socket, String> {
    let sock = Socket::new(domain(&s.dst), ty, Some(proto)).map_err(|e| format!("socket: {e}"))?;
    let _ = sock.set_reuse_address(true);
    let port = if ty == Type::RAW { 0 } else { s.sport };
    sock.bind(&SockAddr::from(SocketAddr::new(s.src, port)))
        .map_err(|e| format!("bind to {}: {e}", s.src))?;
    Ok(sock)
}

fn tcp_connect(s: &Spec, timeout: Duration) -> Result<Socket, (Option<Observed>, String)> {
    let sock = bound_socket(s, Type::STREAM, Protocol::TCP).map_err(|e| (None, e))?;
    match sock.connect_timeout(&SockAddr::from(SocketAddr::new(s.dst, s.dport)), timeout) {
        Ok(()) => Ok(sock),
        Err(e) => match classify(&e) {
            Ok((o, d)) => Err((Some(o), d)),
            Err(d) => Err((None, d)),
        },
    }
}

fn probe_one(s: &Spec, timeout: Duration) -> Result<(Observed, String), String> {
    if s.src.is_ipv4() != s.dst.is_ipv4() {
        return Err(format!(
            "source {} and dest {} are of different families",
            s.src, s.dst
        ));
    }
    match s.proto {
        ProbeProto::Tcp => match tcp_connect(s, timeout) {
            Ok(_) => Ok((Observed::Accept, "handshake completed".into())),
            Err((Some(o), d)) => Ok((o, d)),
            Err((None, d)) => Err(d),
        },
        ProbeProto::Udp => probe_udp(s, timeout),
        ProbeProto::Icmp => probe_icmp(s, timeout),
    }
}

fn probe_udp(s: &Spec, timeout: Duration) -> Result<(Observed, String), String> {
    udp_exchange(&udp_socket(s)?, timeout)
}

fn udp_socket(s: &Spec) -> Result<UdpSocket, String> {
    let sock = bound_socket(s, Type::DGRAM, Protocol::UDP)?;
    // Report every ICMP error on the socket, also the "soft" ones (host
    // unreachable) that a connected UDP socket otherwise ignores.
    if s.dst.is_ipv4() {
        setsockopt(&sock, sockopt::Ipv4RecvErr, &true).map_err(|e| format!("IP_RECVERR: {e}"))?;
    } else {
        setsockopt(&sock, sockopt::Ipv6RecvErr, &true).map_err(|e| format!("IPV6_RECVERR: {e}"))?;
    }
    sock.connect(&SockAddr::from(SocketAddr::new(s.dst, s.dport)))
        .map_err(|e| format!("connect: {e}"))?;
    Ok(sock.into())
}

fn udp_exchange(udp: &UdpSocket, timeout: Duration) -> Result<(Observed, String), String> {
    let deadline = Instant::now() + timeout;
    // EPERM: the sender's own OUTPUT hook refused the datagram. A DROP and
    // a REJECT both do that; a REJECT also sends the ICMP error back to
    // this socket, so wait for it before calling it DROP.
    let refused = match udp.send(b"rampart probe") {
        Ok(_) => false,
        Err(e) if is_eperm(&e) => true,
        Err(e) => return classify(&e),
    };
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((Observed::Drop, no_answer(refused)));
        }
        udp.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match udp.recv(&mut buf) {
            Ok(n) if &buf[..n] == b"rampart probe" => {
                return Ok((Observed::Accept, "answered".into()))
            }
            Ok(_) => continue,
            Err(e) if is_eperm(&e) => continue,
            Err(e) => return classify(&e),
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn probe_icmp(s: &Spec, timeout: Duration) -> Result<(Observed, String), String> {
    icmp_exchange(&icmp_socket(s)?, s, 1, timeout)
}

fn icmp_socket(s: &Spec) -> Result<Socket, String> {
    let v4 = s.dst.is_ipv4();
    bound_socket(
        s,
        Type::RAW,
        if v4 {
            Protocol::ICMPV4
        } else {
            Protocol::ICMPV6
        },
    )
}

fn icmp_exchange(
    sock: &Socket,
    s: &Spec,
    seq: u16,
    timeout: Duration,
) -> Result<(Observed, String), String> {
    let v4 = s.dst.is_ipv4();
    let id = s.id;
    let echo = if v4 { 8 } else { 128 };
    let mut pkt = vec![s.icmp_type, s.icmp_code, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(MARKER);
    if v4 {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let deadline = Instant::now() + timeout;
    // EPERM from our own OUTPUT hook: DROP unless the unreachable of a
    // REJECT arrives (see udp_exchange).
    let refused = match sock.send_to(&pkt, &SockAddr::from(SocketAddr::new(s.dst, 0))) {
        Ok(_) => false,
        Err(e) if is_eperm(&e) => true,
        Err(e) => return classify(&e),
    };
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let what = if refused {
                no_answer(true)
            } else if s.icmp_type == echo {
                "no echo reply".into()
            } else {
                "no answer (only echo requests get one)".into()
            };
            return Ok((Observed::Drop, what));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match { sock }.read(&mut buf) {
            Ok(n) => n,
            Err(e) => match classify(&e)? {
                (Observed::Drop, _) => continue,
                other => return Ok(other),
            },
        };
        let icmp = if v4 {
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            if n < ihl + 8 {
                continue;
            }
            &buf[ihl..n]
        } else {
            &buf[..n]
        };
        if icmp.len() < 8 {
            continue;
        }
        let (ty, code) = (icmp[0], icmp[1]);
        let reply = if v4 { 0 } else { 129 };
        let unreach = if v4 { 3 } else { 1 };
        if ty == reply && icmp[4..6] == id.to_be_bytes() {
            return Ok((Observed::Accept, "echo reply".into()));
        }
        if ty == unreach {
            // The quoted packet: an IP header, then our ICMP header.
            let inner = &icmp[8..];
            let inner_icmp = if v4 {
                if inner.is_empty() {
                    continue;
                }
                let ihl = ((inner[0] & 0x0f) as usize) * 4;
                inner.get(ihl..)
            } else {
                inner.get(40..)
            };
            if let Some(q) = inner_icmp {
                if q.len() >= 6 && q[4..6] == id.to_be_bytes() {
                    return Ok((
                        Observed::Reject,
                        format!("destination unreachable (code {code})"),
                    ));
                }
            }
        }
    }
}

/// A flow opened before the ruleset under test is loaded.
enum Flow {
    Tcp(Socket),
    Udp(UdpSocket),
    Icmp(Socket),
}

fn open_flow(s: &Spec, timeout: Duration) -> Result<Flow, String> {
    let answered = |r: Result<(Observed, String), String>| match r? {
        (Observed::Accept, _) => Ok(()),
        (o, d) => Err(format!("{}: {d}", o.name())),
    };
    match s.proto {
        ProbeProto::Tcp => tcp_connect(s, timeout).map(Flow::Tcp).map_err(|e| e.1),
        ProbeProto::Udp => {
            let u = udp_socket(s)?;
            answered(udp_exchange(&u, timeout))?;
            Ok(Flow::Udp(u))
        }
        ProbeProto::Icmp => {
            let r = icmp_socket(s)?;
            answered(icmp_exchange(&r, s, 1, timeout))?;
            Ok(Flow::Icmp(r))
        }
    }
}

fn continue_flow(f: Flow, s: &Spec, timeout: Duration) -> Result<(Observed, String), String> {
    match f {
        Flow::Tcp(c) => Ok(established_exchange(c, timeout)),
        Flow::Udp(u) => udp_exchange(&u, timeout),
        Flow::Icmp(r) => icmp_exchange(&r, s, 2, timeout),
    }
}

fn established_exchange(sock: Socket, timeout: Duration) -> (Observed, String) {
    let mut c: TcpStream = sock.into();
    let _ = c.set_read_timeout(Some(timeout));
    if let Err(e) = c.write_all(b"rampart probe") {
        return classify(&e).unwrap_or((Observed::Drop, e.to_string()));
    }
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        Ok(n) if n > 0 => (
            Observed::Accept,
            "echoed over the established connection".into(),
        ),
        Ok(_) => (Observed::Reject, "connection closed".into()),
        Err(e) => classify(&e).unwrap_or((Observed::Drop, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips() {
        let s = Spec {
            proto: ProbeProto::Udp,
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            sport: 0,
            dport: 53,
            icmp_type: 0,
            icmp_code: 0,
            id: 7,
            spoof: None,
        };
        assert_eq!(Spec::decode(&s.encode()).unwrap(), s);
        assert!(Spec::decode("tcp,1.2.3.4").is_err());
    }

    #[test]
    fn result_lines() {
        assert_eq!(
            parse_result_line("3 REJECT refused"),
            Some((3, Ok(Observed::Reject), "refused".into()))
        );
        assert_eq!(
            parse_result_line("0 ERROR bind: x"),
            Some((0, Err("bind: x".into()), "bind: x".into()))
        );
        assert_eq!(parse_result_line("0 connected"), None);
    }

    #[test]
    fn icmp_checksum() {
        // An echo request with id 1, seq 1 and no payload.
        let p = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&p), 0xf7fd);
    }
}
