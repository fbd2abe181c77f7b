//! `rampart wg ...`: enroll a node's key, road-warrior configs, key
//! rotation, and the computed WireGuard plan.
//!
//! Private keys stay in the key store (`rampart-keystore`); the only
//! private key this module ever prints is a road warrior's, in the client
//! config the user asked for (`wg client --key FILE` / `--generate-key`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rampart_keystore::KeyStore;
use rampart_types::{Diagnostics, FileId, SiteFiles, SourceMap};
use rampart_wg::plan::{InterfacePlan, Role, DEFAULT_KEY_DIR};
use rampart_wg::{Plan, PrivateKey, PublicKey};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use toml_edit::{DocumentMut, Item, TableLike, Value};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: WgCommand,
}

#[derive(Subcommand)]
enum WgCommand {
    /// Generate the node's key in its key store (if missing) and write its
    /// public key into site.toml; prints the public key.
    Enroll(EnrollArgs),
    /// Print a road warrior's config (or its QR code).
    Client(ClientArgs),
    /// Replace a node's key in two steps without breaking the overlay.
    Rotate(RotateArgs),
    /// The computed plan: addresses, ports, peers, AllowedIPs, routes.
    Show(ShowArgs),
    /// Create the preshared keys of the site's pairs and put each pair's
    /// key into both members' key stores (never printed).
    Psk(PskArgs),
}

#[derive(clap::Args)]
struct EnrollArgs {
    /// The site directory (with site.toml), or site.toml itself.
    site: PathBuf,
    /// The node (or guest member) whose key to enroll.
    #[arg(long)]
    node: String,
    /// The node's key store.
    #[arg(long, default_value = DEFAULT_KEY_DIR)]
    keys: PathBuf,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The site directory (with site.toml), or site.toml itself.
    site: PathBuf,
    /// The client's name (`[[client]] name`).
    name: String,
    /// A file holding the client's private key (`wg genkey` output).
    #[arg(long, conflicts_with = "generate_key")]
    key: Option<PathBuf>,
    /// Generate a key for the client, write its public key into site.toml
    /// and put the private key in the printed config.
    #[arg(long)]
    generate_key: bool,
    /// Print the config as a QR code for the terminal.
    #[arg(long)]
    qr: bool,
    /// Write the QR code as a PNG file (mode 0600).
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RotateArgs {
    /// The site directory (with site.toml), or site.toml itself.
    site: PathBuf,
    /// The node (or guest member) whose key to rotate.
    #[arg(long)]
    node: String,
    /// The node's key store.
    #[arg(long, default_value = DEFAULT_KEY_DIR)]
    keys: PathBuf,
    /// Second step: make the published next key the current one.
    #[arg(long)]
    promote: bool,
}

#[derive(clap::Args)]
struct PskArgs {
    /// The site directory (with site.toml), or site.toml itself.
    site: PathBuf,
    /// A member's key store, as `NAME=DIR` (repeat it: a pair's key goes
    /// into the stores of both its members). A store may be a staging
    /// directory copied to its node afterwards (`cp -a` / `rsync -a`).
    #[arg(long = "store", value_name = "NAME=DIR", required = true)]
    stores: Vec<String>,
    /// Make a new key for every pair whose two stores are given, replacing
    /// the old one in both (a PSK rotation; apply both nodes afterwards).
    #[arg(long)]
    replace: bool,
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The site directory (with site.toml), or site.toml itself.
    site: PathBuf,
    /// Only this node's (or guest's, or client's) interfaces.
    #[arg(long)]
    node: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.command {
        WgCommand::Enroll(a) => enroll(a),
        WgCommand::Client(a) => client(a),
        WgCommand::Rotate(a) => rotate(a),
        WgCommand::Show(a) => show(a),
        WgCommand::Psk(a) => psk(a),
    }
}

// ------------------------------------------------------------ site.toml

struct SiteToml {
    path: PathBuf,
    text: String,
}

impl SiteToml {
    fn read(site: &Path) -> Result<Self> {
        let path = if site.is_dir() {
            site.join("site.toml")
        } else {
            site.to_path_buf()
        };
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        Ok(SiteToml { path, text })
    }

    fn doc(&self) -> Result<DocumentMut> {
        self.text
            .parse::<DocumentMut>()
            .with_context(|| format!("`{}` is not valid TOML", self.path.display()))
    }

    /// Replace the file with `text` (same mode), through a temporary and a
    /// rename so a reader never sees half a file. Does nothing if unchanged.
    fn write(&mut self, text: String) -> Result<()> {
        if text == self.text {
            return Ok(());
        }
        let mode = fs::metadata(&self.path)
            .map(|m| m.mode() & 0o7777)
            .unwrap_or(0o644);
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".site.toml.rampart.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let res = (|| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write `{}`", self.path.display()));
        }
        self.text = text;
        Ok(())
    }

    /// Every WireGuard diagnostic of the site and its plan.
    fn check(&self) -> (Option<Plan>, Diagnostics, SourceMap) {
        check_text(&self.text)
    }
}

/// The WireGuard plan and diagnostics of a site.toml text, with the source
/// map to render them (secrets redacted).
fn check_text(text: &str) -> (Option<Plan>, Diagnostics, SourceMap) {
    let mut map = SourceMap::new();
    let id = map.add("site.toml", text);
    let (plan, diags) = rampart_wg::check(id, text);
    let map = redacted(&map, &diags).unwrap_or(map);
    (plan, diags, map)
}

/// Set `public_key = "<key>"` in a table, keeping the value's surrounding
/// whitespace and comment. Returns whether anything changed.
fn set_public_key(t: &mut dyn TableLike, key: &str) -> bool {
    match t.get_mut("public_key") {
        Some(item) => {
            if let Some(v) = item.as_value_mut() {
                if v.as_str() == Some(key) {
                    return false;
                }
                let decor = v.decor().clone();
                *v = Value::from(key);
                *v.decor_mut() = decor;
            } else {
                *item = toml_edit::value(key);
            }
            true
        }
        None => {
            t.insert("public_key", toml_edit::value(key));
            true
        }
    }
}

fn name_of(t: &dyn TableLike) -> Option<&str> {
    t.get("name").and_then(|i| i.as_str())
}

/// Call `f` on every table of an array of tables (`[[x]]`) or inline array
/// of inline tables (`x = [{...}]`).
fn each_table(item: &mut Item, f: &mut dyn FnMut(&mut dyn TableLike)) {
    if let Some(aot) = item.as_array_of_tables_mut() {
        for t in aot.iter_mut() {
            f(t);
        }
    } else if let Some(arr) = item.as_array_mut() {
        for v in arr.iter_mut() {
            if let Some(t) = v.as_inline_table_mut() {
                f(t);
            }
        }
    }
}

/// The networks `member` belongs to, in site order.
fn networks_of(doc: &mut DocumentMut, member: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(w) = doc.get_mut("wireguard") {
        each_table(w, &mut |net| {
            let Some(name) = name_of(net).map(str::to_string) else {
                return;
            };
            let mut found = false;
            if let Some(m) = net.get_mut("member") {
                each_table(m, &mut |t| found |= name_of(t) == Some(member));
            }
            if found {
                out.push(name);
            }
        });
    }
    out
}

/// Write `keys[network]` as the public key of `member` in each network.
fn publish_member_keys(doc: &mut DocumentMut, member: &str, keys: &[(String, PublicKey)]) {
    if let Some(w) = doc.get_mut("wireguard") {
        each_table(w, &mut |net| {
            let Some(key) = name_of(net)
                .and_then(|n| keys.iter().find(|(k, _)| k == n))
                .map(|(_, k)| k.to_base64())
            else {
                return;
            };
            if let Some(m) = net.get_mut("member") {
                each_table(m, &mut |t| {
                    if name_of(t) == Some(member) {
                        set_public_key(t, &key);
                    }
                });
            }
        });
    }
}

/// The public key written for `member` of `network` in site.toml, as text.
fn published_key(doc: &mut DocumentMut, network: &str, member: &str) -> Option<String> {
    let mut out = None;
    if let Some(w) = doc.get_mut("wireguard") {
        each_table(w, &mut |net| {
            if name_of(net) != Some(network) {
                return;
            }
            if let Some(m) = net.get_mut("member") {
                each_table(m, &mut |t| {
                    if name_of(t) == Some(member) {
                        out = t
                            .get("public_key")
                            .and_then(|i| i.as_str())
                            .map(str::to_string);
                    }
                });
            }
        });
    }
    out
}

// ------------------------------------------------------------ rendering

fn render_diags(diags: &Diagnostics, map: &SourceMap) {
    for d in &diags.items {
        eprintln!("{}", d.render(map));
    }
    if !diags.is_empty() {
        eprintln!(
            "site.toml: {} error(s), {} warning(s) in the WireGuard networks",
            diags.errors(),
            diags.warnings()
        );
    }
}

fn status(diags: &Diagnostics) -> ExitCode {
    if diags.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The key store, whose files must belong to whoever runs rampart (root on
/// a node).
fn open_store(dir: &Path) -> Result<KeyStore> {
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .context("cannot find out who runs rampart (/proc/self)")?;
    KeyStore::open_owned_by(dir, uid)
        .map_err(|e| anyhow::anyhow!("{}", e.to_diagnostic().render(&SourceMap::new()).trim_end()))
}

fn keystore_err(e: rampart_keystore::KeyStoreError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.to_diagnostic().render(&SourceMap::new()).trim_end())
}

// ------------------------------------------------------------ enroll

fn enroll(a: EnrollArgs) -> Result<ExitCode> {
    let mut site = SiteToml::read(&a.site)?;
    let mut doc = site.doc()?;
    let nets = networks_of(&mut doc, &a.node);
    if nets.is_empty() {
        bail!(
            "`{}` is a member of no `[[wireguard]]` network in `{}`; add a `[[wireguard.member]]` with `name = \"{}\"` first",
            a.node,
            site.path.display(),
            a.node
        );
    }
    let ks = open_store(&a.keys)?;
    let mut keys = Vec::new();
    for n in &nets {
        let pk = ks.enroll(n).map_err(keystore_err)?;
        keys.push((n.clone(), pk));
    }
    publish_member_keys(&mut doc, &a.node, &keys);
    let before = site.text.clone();
    site.write(doc.to_string())?;
    for (n, pk) in &keys {
        println!("{pk}");
        eprintln!(
            "{}: network `{n}`: key {} (private, stays in the key store), public_key {} in {}",
            a.node,
            ks.key_path(n).display(),
            if before == site.text {
                "already"
            } else {
                "written"
            },
            site.path.display()
        );
    }
    let (_, diags, map) = site.check();
    render_diags(&diags, &map);
    Ok(status(&diags))
}

// ------------------------------------------------------------ client

fn client(a: ClientArgs) -> Result<ExitCode> {
    let mut site = SiteToml::read(&a.site)?;
    let mut key: Option<PrivateKey> = None;
    if let Some(f) = &a.key {
        let text = fs::read_to_string(f)
            .with_context(|| format!("cannot read the client's key file `{}`", f.display()))?;
        // Never echo the file's content: it is (supposed to be) a secret.
        let k = PrivateKey::parse(text.trim()).map_err(|e| {
            anyhow::anyhow!(
                "`{}` does not hold a WireGuard private key: {e}",
                f.display()
            )
        })?;
        key = Some(k);
    }
    let mut pending: Option<String> = None;
    if a.generate_key {
        let k = PrivateKey::generate();
        let pk = k.public_key().to_base64();
        let mut doc = site.doc()?;
        let mut found = false;
        if let Some(c) = doc.get_mut("client") {
            each_table(c, &mut |t| {
                if name_of(t) == Some(a.name.as_str()) {
                    set_public_key(t, &pk);
                    found = true;
                }
            });
        }
        if !found {
            bail!(
                "no `[[client]]` named `{}` in `{}`",
                a.name,
                site.path.display()
            );
        }
        // Written only once the config (with the private key) is printed:
        // otherwise the site would name a key nobody has.
        pending = Some(doc.to_string());
        key = Some(k);
    }
    let (plan, diags, map) = check_text(pending.as_deref().unwrap_or(&site.text));
    render_diags(&diags, &map);
    let Some(plan) = plan else {
        return Ok(ExitCode::from(1));
    };
    let Some(iface) = plan
        .interfaces
        .iter()
        .find(|i| i.owner == a.name && i.role == Role::Client)
    else {
        let known: Vec<&str> = plan
            .interfaces
            .iter()
            .filter(|i| i.role == Role::Client)
            .map(|i| i.owner.as_str())
            .collect();
        if diags.has_errors() {
            eprintln!(
                "error: no config for client `{}`: fix the errors above (a client whose public_key is not a valid key is left out; `--generate-key` makes one)",
                a.name
            );
            if let Some(k) = &key {
                eprintln!(
                    "  the key in `{}` has the public key {}: that is the client's `public_key = \"...\"`",
                    a.key.as_deref().unwrap_or(Path::new("?")).display(),
                    k.public_key()
                );
            }
            return Ok(ExitCode::from(1));
        }
        bail!(
            "no `[[client]]` named `{}` (clients: {})",
            a.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    if let Some(k) = &key {
        if k.public_key() != iface.public_key {
            bail!(
                "the key in `{}` belongs to public key {}, but site.toml gives client `{}` the public key {}; \
                 use the matching key, or `--generate-key`",
                a.key.as_deref().unwrap_or(Path::new("?")).display(),
                k.public_key(),
                a.name,
                iface.public_key
            );
        }
    }
    let conf = rampart_wg::client_config(&plan, &a.name, key.as_ref())
        .context("the plan has no client config for this name")?;
    if let Some(png) = &a.png {
        let bytes = rampart_wg::qr_png(&conf, 8)
            .map_err(|e| anyhow::anyhow!("cannot make a QR code of the config: {e}"))?;
        write_private_file(png, &bytes)?;
        eprintln!(
            "wrote the QR code of the config to {} (mode 0600)",
            png.display()
        );
    }
    if a.qr {
        let q = rampart_wg::qr_terminal(&conf)
            .map_err(|e| anyhow::anyhow!("cannot make a QR code of the config: {e:?}"))?;
        println!("{q}");
    } else if a.png.is_none() {
        print!("{conf}");
    }
    if let Some(text) = pending {
        site.write(text)?;
        eprintln!(
            "generated a key for client `{}`; its public key {} is now its public_key in {} \
             (compile and apply the site so its peers accept it); the private key is only in the config",
            a.name,
            iface.public_key,
            site.path.display()
        );
    }
    if key.is_none() {
        eprintln!(
            "note: the config has no private key: replace the `# PrivateKey = ...` line with \
             `PrivateKey = <key>`, where <key> is the private key whose public key is {} \
             (or run again with `--key FILE` or `--generate-key`)",
            iface.public_key
        );
    }
    Ok(status(&diags))
}

/// Write a file that may hold a secret: created 0600 (through an O_EXCL
/// temporary and a rename, so it never has wider modes).
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rampart.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write `{}`", path.display()));
    }
    Ok(())
}

// ------------------------------------------------------------ rotate

fn rotate(a: RotateArgs) -> Result<ExitCode> {
    let mut site = SiteToml::read(&a.site)?;
    let mut doc = site.doc()?;
    let nets = networks_of(&mut doc, &a.node);
    if nets.is_empty() {
        bail!(
            "`{}` is a member of no `[[wireguard]]` network in `{}`",
            a.node,
            site.path.display()
        );
    }
    let ks = open_store(&a.keys)?;
    let (plan, _, _) = site.check();
    let iface_of = |n: &str| -> String {
        plan.as_ref()
            .and_then(|p| p.get(n, &a.node))
            .map(|i| i.interface.to_string())
            .unwrap_or_else(|| "IF".into())
    };
    if !a.promote {
        let mut keys = Vec::new();
        for n in &nets {
            keys.push((n.clone(), ks.rotate(n).map_err(keystore_err)?));
        }
        publish_member_keys(&mut doc, &a.node, &keys);
        site.write(doc.to_string())?;
        println!("rotating the key of `{}`: step 1 of 2 done", a.node);
        for (n, pk) in &keys {
            println!(
                "  network `{n}`: next key {} (current key {} still in use)",
                ks.next_key_path(n).display(),
                ks.key_path(n).display()
            );
            println!(
                "    next public key {pk}, now `public_key` of `{}` in {}",
                a.node,
                site.path.display()
            );
        }
        println!("next:");
        println!(
            "  1. compile the site and apply it on every peer: each replaces the old key's peer"
        );
        println!("     with the new one (same AllowedIPs); sessions with everyone else are kept;");
        println!(
            "  2. then, on `{}`: rampart wg rotate {} --node {} --keys {} --promote",
            a.node,
            a.site.display(),
            a.node,
            a.keys.display()
        );
        for n in &nets {
            println!(
                "     and `wg set {} private-key {}` (the next handshake uses the new key).",
                iface_of(n),
                ks.key_path(n).display()
            );
        }
    } else {
        let mut promoted = Vec::new();
        for n in &nets {
            let Some(next) = ks.next_public(n).map_err(keystore_err)? else {
                bail!(
                    "network `{n}`: no rotation under way for `{}` ({} does not exist); run without --promote first",
                    a.node,
                    ks.next_key_path(n).display()
                );
            };
            let published = published_key(&mut doc, n, &a.node);
            if published.as_deref() != Some(next.to_base64().as_str()) {
                bail!(
                    "network `{n}`: site.toml does not publish the next key of `{}` ({next}); \
                     promoting now would cut it off from its peers. Publish it (run without --promote) and apply the site on the peers first",
                    a.node
                );
            }
        }
        for n in &nets {
            promoted.push((n.clone(), ks.promote(n).map_err(keystore_err)?));
        }
        println!("rotating the key of `{}`: step 2 of 2 done", a.node);
        for (n, pk) in &promoted {
            println!(
                "  network `{n}`: {} is now the current key (public key {pk}); the old key is gone",
                ks.key_path(n).display()
            );
            println!(
                "  load it: wg set {} private-key {}",
                iface_of(n),
                ks.key_path(n).display()
            );
        }
    }
    let (_, diags, map) = site.check();
    render_diags(&diags, &map);
    Ok(status(&diags))
}

// ------------------------------------------------------------ psk

fn psk(a: PskArgs) -> Result<ExitCode> {
    let site = SiteToml::read(&a.site)?;
    let (plan, diags, map) = site.check();
    render_diags(&diags, &map);
    let Some(plan) = plan.filter(|_| !diags.has_errors()) else {
        eprintln!("error: no preshared key written: fix the errors above first");
        return Ok(ExitCode::from(1));
    };
    let mut stores: Vec<(String, PathBuf, KeyStore)> = Vec::new();
    for s in &a.stores {
        let Some((name, dir)) = s
            .split_once('=')
            .filter(|(n, d)| !n.is_empty() && !d.is_empty())
        else {
            bail!("`--store {s}`: write it as NAME=DIR (the member's name, its key store)");
        };
        if stores.iter().any(|(n, _, _)| n == name) {
            bail!("`--store`: `{name}` is given twice");
        }
        if !plan.interfaces.iter().any(|i| i.owner == name) {
            bail!(
                "`--store {s}`: `{name}` is a member of no WireGuard network in {}",
                site.path.display()
            );
        }
        let dir = PathBuf::from(dir);
        let ks = open_store(&dir)?;
        stores.push((name.to_string(), dir, ks));
    }
    let pairs = plan.preshared_pairs();
    if pairs.is_empty() {
        eprintln!(
            "no pair has a preshared key in {} (`preshared_keys = true` or `preshared_pairs` on a `[[wireguard]]`)",
            site.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let store_of = |n: &str| stores.iter().find(|(m, _, _)| m == n).map(|(_, _, k)| k);
    let mut pending = 0;
    let mut touched = 0;
    for (net, x, y) in &pairs {
        let (sx, sy) = (store_of(x), store_of(y));
        if sx.is_none() && sy.is_none() {
            continue;
        }
        touched += 1;
        let have = |ks: Option<&KeyStore>| -> Result<Option<rampart_wg::PresharedKey>> {
            match ks {
                Some(k) => k.preshared_if_any(net, x, y).map_err(keystore_err),
                None => Ok(None),
            }
        };
        let (kx, ky) = (have(sx)?, have(sy)?);
        let pair = format!("network `{net}`: pair ({x}, {y})");
        let put = |ks: &KeyStore, k: &rampart_wg::PresharedKey, replace: bool| {
            ks.put_preshared(net, x, y, k, replace)
                .map_err(keystore_err)
        };
        match (sx, sy) {
            (Some(a_), Some(b_)) => {
                let (key, how) = match (&kx, &ky) {
                    _ if a.replace => (rampart_wg::PresharedKey::generate(), "replaced"),
                    (Some(p), Some(q)) if p == q => {
                        println!(
                            "{pair}: already in both stores ({}, {})",
                            a_.psk_path(net, x, y).display(),
                            b_.psk_path(net, x, y).display()
                        );
                        continue;
                    }
                    (Some(_), Some(_)) => {
                        bail!(
                            "{pair}: the stores of `{x}` and `{y}` hold different keys ({} and {}); \
                             the tunnel cannot handshake. Run again with --replace to give both a new one",
                            a_.psk_path(net, x, y).display(),
                            b_.psk_path(net, x, y).display()
                        );
                    }
                    (Some(p), None) => (p.clone(), "copied from `{x}`'s store"),
                    (None, Some(q)) => (q.clone(), "copied from `{y}`'s store"),
                    (None, None) => (rampart_wg::PresharedKey::generate(), "created"),
                };
                let how = how.replace("{x}", x).replace("{y}", y);
                // A crash between the two writes leaves one store with the
                // key; the next run copies it (or --replace renews both).
                let pa = put(a_, &key, true)?;
                let pb = put(b_, &key, true)?;
                println!(
                    "{pair}: {how}: {} and {} (0600)",
                    pa.display(),
                    pb.display()
                );
            }
            (Some(only), None) | (None, Some(only)) => {
                let (me, other) = if sx.is_some() { (x, y) } else { (y, x) };
                let mine = if sx.is_some() { &kx } else { &ky };
                let path = only.psk_path(net, x, y);
                if mine.is_none() {
                    put(only, &rampart_wg::PresharedKey::generate(), false)?;
                    println!(
                        "{pair}: created in `{me}`'s store: {} (0600)",
                        path.display()
                    );
                } else {
                    println!("{pair}: in `{me}`'s store: {}", path.display());
                }
                eprintln!(
                    "  `{other}` needs the same key: run again with `--store {me}=DIR --store {other}=DIR` \
                     (its store, or a staging directory copied to it)"
                );
                pending += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    if touched == 0 {
        bail!(
            "none of the stores given belongs to a member of a preshared pair (pairs: {})",
            pairs
                .iter()
                .map(|(n, x, y)| format!("{n}: {x}--{y}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if pending > 0 {
        eprintln!(
            "{pending} pair(s) in one store only: `rampart apply` on the other member refuses until its store has the key"
        );
    }
    Ok(status(&diags))
}

// ------------------------------------------------------------ show

fn show(a: ShowArgs) -> Result<ExitCode> {
    let site = SiteToml::read(&a.site)?;
    let (plan, diags, map) = site.check();
    render_diags(&diags, &map);
    let Some(plan) = plan else {
        return Ok(ExitCode::from(1));
    };
    let ifaces: Vec<&InterfacePlan> = plan
        .interfaces
        .iter()
        .filter(|i| match &a.node {
            Some(n) => &i.owner == n,
            None => true,
        })
        .collect();
    if let (Some(n), true) = (&a.node, ifaces.is_empty()) {
        if !diags.has_errors() {
            bail!("`{n}` has no WireGuard interface in this site");
        }
    }
    let mut out = String::new();
    for (k, i) in ifaces.iter().enumerate() {
        if k > 0 {
            out.push('\n');
        }
        out.push_str(&show_interface(i));
    }
    print!("{out}");
    Ok(status(&diags))
}

fn show_interface(i: &InterfacePlan) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let role = match i.role {
        Role::Member => "member",
        Role::Gateway => "gateway",
        Role::Client => "client",
    };
    let _ = writeln!(
        o,
        "{}: interface: {} (network {}, {role})",
        i.owner, i.interface, i.network
    );
    let _ = writeln!(o, "  public key: {}", i.public_key);
    if i.role == Role::Client {
        let _ = writeln!(o, "  private key: (on the client's device)");
    } else {
        let _ = writeln!(o, "  private key: {} (key store)", i.private_key_file);
    }
    let addrs: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(o, "  address: {}", addrs.join(", "));
    match i.listen_port {
        Some(p) => {
            let _ = writeln!(o, "  listening port: {p}");
        }
        None => {
            let _ = writeln!(o, "  listening port: (any, roaming)");
        }
    }
    if let Some(m) = i.mtu {
        let _ = writeln!(o, "  mtu: {m}");
    }
    for p in &i.peers {
        let _ = writeln!(o, "\n  peer: {} ({})", p.public_key, p.name);
        if let Some(e) = &p.endpoint {
            let _ = writeln!(o, "    endpoint: {e}");
        }
        let ips: Vec<String> = p.allowed_ips.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            o,
            "    allowed ips: {}",
            if ips.is_empty() {
                "(none)".to_string()
            } else {
                ips.join(", ")
            }
        );
        if let Some(f) = &p.preshared_key_file {
            let _ = writeln!(o, "    preshared key: {f} (key store)");
        }
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(o, "    persistent keepalive: every {k} seconds");
        }
    }
    let _ = writeln!(o, "\n  routes:");
    for a in &i.addresses {
        let _ = writeln!(o, "    {} dev {} (connected)", a.trunc(), i.interface);
    }
    for r in &i.routes {
        match r.table {
            Some(t) => {
                let _ = writeln!(o, "    {} dev {} table {t}", r.dest, i.interface);
            }
            None => {
                let _ = writeln!(o, "    {} dev {}", r.dest, i.interface);
            }
        }
    }
    o
}

// ------------------------------------------------------------ rampart check

/// The WireGuard checks `rampart check` adds: [`rampart_wg::check`] on
/// site.toml (when it has WireGuard tables) and a private-key scan of every
/// other site file. Files not yet in `map` are added to it when they hold a
/// key, so their diagnostics render with the offending line. `existing` are
/// the site's other diagnostics: a site.toml the site parser already found
/// unreadable (E0123) is not reported a second time.
pub fn site_checks(files: &SiteFiles, map: &mut SourceMap, existing: &Diagnostics) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let known: std::collections::HashMap<String, FileId> =
        map.files().map(|(id, f)| (f.path.clone(), id)).collect();
    let mut next = map.files().count() as u32;
    for (path, bytes) in &files.files {
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue; // the syntax layer reports files that are not UTF-8
        };
        // Cheap test first: the full check parses the whole file again.
        let has_wg = path == "site.toml" && (text.contains("wireguard") || text.contains("client"));
        match known.get(path) {
            Some(&id) if has_wg => {
                // Includes the private-key scan of site.toml itself.
                let (_, mut d) = rampart_wg::check(id, text);
                let toml_code = rampart_types::codes::SITE_TOML.code;
                if existing
                    .items
                    .iter()
                    .any(|x| x.code == toml_code && x.span.is_some_and(|s| s.file == id))
                {
                    d.items.retain(|x| x.code != toml_code);
                }
                diags.extend(d);
            }
            Some(&id) => diags.extend(rampart_wg::scan_private_keys(id, text)),
            None => {
                // A file the parser does not read (notes, a stray wg0.conf):
                // into the map only when it holds a key, under the id it gets.
                let found = rampart_wg::scan_private_keys(FileId(next), text);
                if !found.is_empty() {
                    let id = map.add(path.clone(), text);
                    debug_assert_eq!(id, FileId(next));
                    next += 1;
                    diags.extend(found);
                }
            }
        }
    }
    diags
}

pub use rampart_plan::wg::redacted;
