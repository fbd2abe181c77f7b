//! Render plans as text: wg-quick `.conf`, `wg setconf`, road-warrior client
//! configs, and QR codes of them (terminal text and PNG bytes).
//!
//! The `.conf` of a plan never contains a private key: the interface reads
//! it from the key store at start (`PostUp = wg set %i private-key FILE`).
//! [`wg_quick_conf_with_key`] is the one renderer that writes `PrivateKey`,
//! for a file the key store itself keeps.

use crate::keys::PrivateKey;
use crate::plan::{InterfacePlan, PeerPlan, Plan, Role};
use rampart_types::escape::{ini_comment, shell_word};
use std::collections::HashMap;
use std::fmt::Write;

fn allowed_ips(out: &mut String, ips: &[ipnet::IpNet]) {
    if ips.is_empty() {
        return;
    }
    out.push_str("AllowedIPs = ");
    for (k, n) in ips.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{n}");
    }
    out.push('\n');
}

fn peers(out: &mut String, i: &InterfacePlan, psk_inline: bool) {
    for p in &i.peers {
        peer(out, p, psk_inline);
    }
}

fn peer(out: &mut String, p: &PeerPlan, psk_inline: bool) {
    {
        let _ = writeln!(
            out,
            "\n[Peer]\n# {}\nPublicKey = {}",
            ini_comment(&p.name),
            p.public_key
        );
        if let (Some(f), false) = (&p.preshared_key_file, psk_inline) {
            // wg-quick has no PresharedKeyFile: set it after the interface is up.
            let _ = writeln!(out, "# PresharedKey: {} (set by PostUp)", ini_comment(f));
        }
        if let Some(e) = &p.endpoint {
            let _ = writeln!(out, "Endpoint = {e}");
        }
        allowed_ips(out, &p.allowed_ips);
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(out, "PersistentKeepalive = {k}");
        }
    }
}

fn interface_common(out: &mut String, i: &InterfacePlan) {
    let _ = writeln!(
        out,
        "# rampart: network {} on {} ({:?})",
        ini_comment(&i.network),
        ini_comment(&i.owner),
        i.role
    );
    let _ = writeln!(out, "[Interface]");
    if !i.addresses.is_empty() {
        let a: Vec<String> = i.addresses.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(out, "Address = {}", a.join(", "));
    }
    if let Some(p) = i.listen_port {
        let _ = writeln!(out, "ListenPort = {p}");
    }
    if let Some(m) = i.mtu {
        let _ = writeln!(out, "MTU = {m}");
    }
    let _ = writeln!(out, "Table = off");
}

fn post_up(out: &mut String, i: &InterfacePlan) {
    let _ = writeln!(
        out,
        "PostUp = wg set %i private-key {}",
        shell_word(&i.private_key_file)
    );
    for p in &i.peers {
        if let Some(f) = &p.preshared_key_file {
            let _ = writeln!(
                out,
                "PostUp = wg set %i peer {} preshared-key {}",
                p.public_key,
                shell_word(f)
            );
        }
    }
    for r in &i.routes {
        match r.table {
            None => {
                let _ = writeln!(out, "PostUp = ip route replace {} dev %i", r.dest);
            }
            Some(t) => {
                let _ = writeln!(out, "PostUp = ip route replace {} dev %i table {t}", r.dest);
            }
        }
    }
}

/// A wg-quick compatible `.conf` for one interface. `Table = off`; the
/// explicit routes are `PostUp` lines; the private key comes from the key
/// store (`PostUp = wg set %i private-key FILE`), never from this text.
pub fn wg_quick_conf(i: &InterfacePlan) -> String {
    let mut out = String::with_capacity(256 + i.peers.len() * 160);
    interface_common(&mut out, i);
    post_up(&mut out, i);
    peers(&mut out, i, false);
    out
}

/// The `.conf` of every interface of a plan, in plan order. Same text as
/// [`wg_quick_conf`] one by one, but a peer block identical on many
/// interfaces (a mesh: the same peer, endpoint and AllowedIPs everywhere)
/// is formatted once and copied.
pub fn wg_quick_confs(plan: &Plan) -> Vec<String> {
    let all = &plan.interfaces;
    let threads = std::thread::available_parallelism()
        .map(|x| x.get())
        .unwrap_or(1)
        .min(8);
    if all.len() < 64 || threads < 2 {
        return confs_of(all);
    }
    // Chunks on every core, each with its own block cache (a mesh's peer
    // blocks are formatted once per core: cheap next to copying them).
    let chunk = all.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let hs: Vec<_> = all
            .chunks(chunk)
            .map(|c| sc.spawn(move || confs_of(c)))
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("render worker"))
            .collect()
    })
}

fn confs_of(interfaces: &[InterfacePlan]) -> Vec<String> {
    // Every distinct peer block once, in `blocks`; the cache maps a peer
    // (network, name) to its variants (a peer seen with other AllowedIPs
    // from another interface, e.g. through a gateway, is another block).
    let mut blocks: Vec<String> = Vec::new();
    let mut cache: HashMap<(&str, &str), Vec<(&PeerPlan, usize)>> = HashMap::new();
    let mut outs = Vec::with_capacity(interfaces.len());
    let mut ids: Vec<usize> = Vec::new();
    for i in interfaces {
        let mut head = String::new();
        interface_common(&mut head, i);
        post_up(&mut head, i);
        // Pass 1: find or make every peer's block, and size the output
        // exactly (growing a 150 kB string by doubling costs page faults).
        let mut len = head.len();
        ids.clear();
        for p in &i.peers {
            let slot = cache
                .entry((i.network.as_str(), p.name.as_str()))
                .or_default();
            let id = match slot.iter().find(|(q, _)| *q == p) {
                Some(&(_, id)) => id,
                None => {
                    let mut b = String::new();
                    peer(&mut b, p, false);
                    blocks.push(b);
                    slot.push((p, blocks.len() - 1));
                    blocks.len() - 1
                }
            };
            len += blocks[id].len();
            ids.push(id);
        }
        let mut out = String::with_capacity(len);
        out.push_str(&head);
        for &id in &ids {
            out.push_str(&blocks[id]);
        }
        outs.push(out);
    }
    outs
}

/// The same `.conf` with `PrivateKey` inline: only for a file kept inside
/// the key store (0600), e.g. for a stock `wg-quick up FILE`.
pub fn wg_quick_conf_with_key(i: &InterfacePlan, key: &PrivateKey) -> String {
    let mut out = String::new();
    interface_common(&mut out, i);
    let _ = writeln!(out, "PrivateKey = {}", key.expose_base64());
    for p in &i.peers {
        if let Some(f) = &p.preshared_key_file {
            let _ = writeln!(
                out,
                "PostUp = wg set %i peer {} preshared-key {}",
                p.public_key,
                shell_word(f)
            );
        }
    }
    for r in &i.routes {
        let t = r.table.map(|t| format!(" table {t}")).unwrap_or_default();
        let _ = writeln!(out, "PostUp = ip route replace {} dev %i{t}", r.dest);
    }
    peers(&mut out, i, false);
    out
}

/// `wg setconf` text (also what wireguard-go's UAPI takes via `wg`):
/// ListenPort and peers, no Address/Table/MTU and no private key (set it
/// with `wg set IF private-key FILE`). Note that `wg setconf` *clears* the
/// private key when the text has none, so every `wg setconf IF FILE` must be
/// followed by `wg set IF private-key KEYFILE` (the tunnel test does).
pub fn wg_setconf(i: &InterfacePlan) -> String {
    let mut out = String::with_capacity(64 + i.peers.len() * 160);
    let _ = writeln!(out, "[Interface]");
    if let Some(p) = i.listen_port {
        let _ = writeln!(out, "ListenPort = {p}");
    }
    for p in &i.peers {
        let _ = writeln!(out, "\n[Peer]\nPublicKey = {}", p.public_key);
        if let Some(e) = &p.endpoint {
            let _ = writeln!(out, "Endpoint = {e}");
        }
        allowed_ips(&mut out, &p.allowed_ips);
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(out, "PersistentKeepalive = {k}");
        }
    }
    out
}

/// The road-warrior config of client `name`: what goes on the laptop or
/// phone. With `key` (the client's private key, generated for it and never
/// stored by rampart) the config is complete; without, `PrivateKey` is a
/// placeholder line the user fills in.
pub fn client_config(plan: &Plan, name: &str, key: Option<&PrivateKey>) -> Option<String> {
    let i = plan
        .interfaces
        .iter()
        .find(|i| i.owner == name && i.role == Role::Client)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# rampart: road warrior {} on network {}",
        ini_comment(&i.owner),
        ini_comment(&i.network)
    );
    let _ = writeln!(out, "[Interface]");
    let a: Vec<String> = i.addresses.iter().map(|n| n.to_string()).collect();
    let _ = writeln!(out, "Address = {}", a.join(", "));
    match key {
        Some(k) => {
            let _ = writeln!(out, "PrivateKey = {}", k.expose_base64());
        }
        None => {
            let _ = writeln!(
                out,
                "# PrivateKey = <the private key of {}; its public key is {}>",
                ini_comment(&i.owner),
                i.public_key
            );
        }
    }
    if let Some(m) = i.mtu {
        let _ = writeln!(out, "MTU = {m}");
    }
    peers(&mut out, i, true);
    Some(out)
}

/// A QR code of `text` for the terminal (two rows per character).
pub fn qr_terminal(text: &str) -> Result<String, qrcode::types::QrError> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// A QR code of `text` as PNG bytes (`scale` pixels per module, 4-module quiet zone).
pub fn qr_png(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let w = code.width() as u32;
    let colors = code.to_colors();
    let scale = scale.max(1);
    let side = (w + 8) * scale;
    let mut pixels = vec![255u8; (side * side) as usize];
    for y in 0..w {
        for x in 0..w {
            if colors[(y * w + x) as usize] == qrcode::Color::Dark {
                for dy in 0..scale {
                    let row = ((y + 4) * scale + dy) * side;
                    for dx in 0..scale {
                        pixels[(row + (x + 4) * scale + dx) as usize] = 0;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| e.to_string())?;
        wr.write_image_data(&pixels).map_err(|e| e.to_string())?;
    }
    Ok(out)
}
