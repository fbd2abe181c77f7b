//! The etcd store: a site under a key prefix, pushed as one transaction.
//!
//! Layout under `<prefix>`:
//! - `<prefix>/site/<path>`: the bytes of each site file;
//! - `<prefix>/meta/revision`: the [`Manifest`] (content hash, file count);
//!   its mod revision is the site revision;
//! - `<prefix>/status/<node>`: each node's [`NodeStatus`] as JSON.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use rampart_types::codes;
use rampart_types::files::SiteFiles;
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

use crate::retry::{Backoff, RetryPolicy, Sleeper, ThreadSleeper};
use crate::{
    check_node_name, content_hash, NodeStatus, SiteStore, SiteWatch, Snapshot, StoreError,
};

/// Where the etcd store is and how patient it is.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix of the site, e.g. `/rampart/prod` (a trailing `/` is ignored).
    pub prefix: String,
    /// Bound of each request (and of establishing a connection).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Backoff of a watch while etcd is unreachable.
    pub retry: RetryPolicy,
    /// etcd's `--max-txn-ops` (128 by default): a push needing more
    /// operations in its one transaction is refused with a clear error.
    pub max_txn_ops: usize,
}

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "/rampart";

/// Split a `--etcd` argument: comma-separated client URLs; a bare
/// `host:port` gets `http://`.
pub fn parse_endpoints(arg: &str) -> Vec<String> {
    arg.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.to_string()
            } else {
                format!("http://{s}")
            }
        })
        .collect()
}

impl EtcdOptions {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>, prefix: &str) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.trim_end_matches('/').to_string(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            max_txn_ops: 128,
        }
    }
}

/// The value of `<prefix>/meta/revision`: lets a reader check that it got
/// the complete site that was pushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`content_hash`] of the site.
    pub hash: String,
    /// Number of files.
    pub files: usize,
}

struct Inner {
    rt: Runtime,
    opts: EtcdOptions,
    client: Mutex<Option<Client>>,
}

/// An etcd prefix holding a site. Cheap to clone; all clones share one
/// connection and one small tokio runtime (blocking API).
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.opts.endpoints)
            .field("prefix", &self.inner.opts.prefix)
            .finish()
    }
}

/// Result of one consistent read of the site range.
struct RawSite {
    snapshot: Option<Snapshot>,
    header_revision: i64,
}

fn map_err(what: &str, e: etcd_client::Error) -> StoreError {
    use tonic::Code as C;
    match &e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            C::Unavailable | C::DeadlineExceeded | C::Cancelled | C::Unknown | C::Aborted => {
                StoreError::unreachable(format!("{what}: {}", s.message()))
            }
            C::ResourceExhausted if s.message().contains("space") => {
                StoreError::new(codes::DISK_FULL, format!("{what}: {}", s.message()))
            }
            C::ResourceExhausted => StoreError::unreachable(format!("{what}: {}", s.message())),
            C::OutOfRange if s.message().contains("compacted") => {
                StoreError::new(codes::SITE_UNREADABLE, format!("{what}: {}", s.message()))
            }
            _ => StoreError::new(codes::SITE_UNREADABLE, format!("{what}: {}", s.message())),
        },
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            StoreError::new(codes::SITE_UNREADABLE, format!("{what}: {e}"))
        }
        _ => StoreError::unreachable(format!("{what}: {e}")),
    }
}

/// A site path that may become a key: relative, `/`-separated, no `.`/`..`
/// or empty components, no NUL.
fn check_path(path: &str) -> Result<(), StoreError> {
    let bad = path.is_empty()
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(StoreError::unreadable(format!(
            "site path `{}` cannot be stored",
            rampart_types::escape::printable(path)
        )))
    } else {
        Ok(())
    }
}

impl EtcdStore {
    /// Prepare a store. Does not contact etcd (that happens on first use, so
    /// an agent can start while etcd is down).
    pub fn new(opts: EtcdOptions) -> Result<Self, StoreError> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::unreadable("no etcd endpoint given"));
        }
        if !opts.prefix.starts_with('/') && !opts.prefix.is_empty() {
            // Not required by etcd, but keeps keys readable and unambiguous.
            return Err(StoreError::unreadable(format!(
                "etcd prefix {:?} must start with '/'",
                opts.prefix
            )));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rampart-etcd")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::unreachable(format!("starting the etcd client runtime: {e}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                rt,
                opts,
                client: Mutex::new(None),
            }),
        })
    }

    /// Shorthand for `EtcdStore::new(EtcdOptions::new(endpoints, prefix))`.
    pub fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        prefix: &str,
    ) -> Result<Self, StoreError> {
        Self::new(EtcdOptions::new(endpoints, prefix))
    }

    pub fn options(&self) -> &EtcdOptions {
        &self.inner.opts
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.inner.opts.prefix)
    }
    fn site_prefix(&self) -> String {
        self.key("site/")
    }
    fn manifest_key(&self) -> String {
        self.key("meta/revision")
    }

    /// Run one request against etcd with the request timeout. A transport
    /// failure drops the connection so the next call reconnects.
    fn run<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let client = self.client(what)?;
        let timeout = self.inner.opts.request_timeout;
        let r = self
            .inner
            .rt
            .block_on(async { tokio::time::timeout(timeout, f(client)).await });
        let r = match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_err(what, e)),
            Err(_) => Err(StoreError::unreachable(format!(
                "{what}: no answer from etcd at {} within {timeout:?}",
                self.inner.opts.endpoints.join(",")
            ))),
        };
        if let Err(e) = &r {
            if e.is_transient() {
                *self.inner.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        r
    }

    fn client(&self, what: &str) -> Result<Client, StoreError> {
        let mut guard = self.inner.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let o = &self.inner.opts;
        let copts = ConnectOptions::new()
            .with_connect_timeout(o.connect_timeout)
            .with_timeout(o.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        let endpoints = o.endpoints.clone();
        let timeout = o.connect_timeout + o.request_timeout;
        let c = self
            .inner
            .rt
            .block_on(async {
                tokio::time::timeout(timeout, Client::connect(endpoints, Some(copts))).await
            })
            .map_err(|_| {
                StoreError::unreachable(format!(
                    "{what}: connecting to etcd at {} timed out",
                    o.endpoints.join(",")
                ))
            })?
            .map_err(|e| map_err(&format!("{what}: connecting to etcd"), e))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// One range read of `meta/` and `site/` at `revision` (0 = latest).
    fn read_site(&self, revision: i64) -> Result<RawSite, StoreError> {
        let start = self.key("meta/");
        // '0' is the byte after '/': the range covers "meta/..." up to and
        // including "site/...", and never "status/...".
        let end = self.key("site0");
        let resp = self.run("reading the site from etcd", |mut c| async move {
            let mut o = GetOptions::new().with_range(end);
            if revision > 0 {
                o = o.with_revision(revision);
            }
            c.get(start, Some(o)).await
        })?;
        let header_revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let site_prefix = self.site_prefix();
        let manifest_key = self.manifest_key();
        let mut manifest = None;
        let mut files = SiteFiles::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if key == manifest_key {
                let m: Manifest = serde_json::from_slice(kv.value()).map_err(|e| {
                    StoreError::unreadable(format!("{manifest_key}: bad manifest: {e}"))
                })?;
                manifest = Some((m, kv.mod_revision()));
            } else if let Some(path) = key.strip_prefix(&site_prefix) {
                // A pushed site is untrusted: a key that `push` would not
                // have written (`..`, empty components, NUL) is refused
                // rather than read into the site.
                check_path(path)?;
                files.insert(path, kv.value().to_vec());
            }
        }
        let Some((manifest, mod_revision)) = manifest else {
            return Ok(RawSite {
                snapshot: None,
                header_revision,
            });
        };
        let hash = content_hash(&files);
        if hash != manifest.hash || files.files.len() != manifest.files {
            return Err(StoreError::unreadable(format!(
                "the site under {} is incomplete: manifest says {} files with hash {}, \
                 read {} files with hash {hash} (keys written by hand?)",
                self.inner.opts.prefix,
                manifest.files,
                manifest.hash,
                files.files.len()
            )));
        }
        Ok(RawSite {
            snapshot: Some(Snapshot {
                files,
                revision: mod_revision.to_string(),
                hash,
            }),
            header_revision,
        })
    }

    fn no_site(&self) -> StoreError {
        StoreError::unreadable(format!(
            "no site under etcd prefix {:?} (push one with `rampart push`)",
            self.inner.opts.prefix
        ))
    }

    /// Store `files` as the site, atomically: one transaction puts changed
    /// files, deletes files no longer present and writes the manifest, so
    /// every reader sees the old site or the new one. Pushing the site that
    /// is already there writes nothing and returns the current snapshot.
    /// Concurrent pushes are serialised by comparing the manifest revision.
    pub fn push(&self, files: &SiteFiles) -> Result<Snapshot, StoreError> {
        if files.files.is_empty() {
            return Err(StoreError::unreadable("refusing to push an empty site"));
        }
        for p in files.files.keys() {
            check_path(p)?;
        }
        let hash = content_hash(files);
        let manifest = serde_json::to_vec(&Manifest {
            hash: hash.clone(),
            files: files.files.len(),
        })
        .expect("manifest serialises");
        const ATTEMPTS: u32 = 40;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Lost the compare-and-swap to another writer: wait a
                // jittered, growing while so that two pushers in lockstep
                // do not keep colliding (seen with two tight loops).
                std::thread::sleep(push_backoff(attempt));
            }
            // Everything now under site/ (not only what a valid manifest
            // covers: stray keys are deleted too).
            let site_prefix = self.site_prefix();
            let start = self.key("meta/");
            let end = self.key("site0");
            let resp = self.run("reading the site from etcd", |mut c| async move {
                c.get(start, Some(GetOptions::new().with_range(end))).await
            })?;
            let mkey = self.manifest_key();
            let mut manifest_rev = 0;
            let mut current: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut current_hash = None;
            for kv in resp.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                if key == mkey {
                    manifest_rev = kv.mod_revision();
                    current_hash = serde_json::from_slice::<Manifest>(kv.value())
                        .ok()
                        .map(|m| m.hash);
                } else if key.starts_with(&site_prefix) {
                    current.insert(key, kv.value().to_vec());
                }
            }
            let mut ops = Vec::new();
            for key in current.keys() {
                let path = &key[site_prefix.len()..];
                if !files.files.contains_key(path) {
                    ops.push(TxnOp::delete(key.as_str(), None));
                }
            }
            for (path, bytes) in &files.files {
                let key = format!("{site_prefix}{path}");
                if current.get(&key) != Some(bytes) {
                    ops.push(TxnOp::put(key, bytes.clone(), None));
                }
            }
            if ops.is_empty() && current_hash.as_deref() == Some(hash.as_str()) {
                return Ok(Snapshot {
                    files: files.clone(),
                    revision: manifest_rev.to_string(),
                    hash,
                });
            }
            ops.push(TxnOp::put(mkey.as_str(), manifest.clone(), None));
            if ops.len() > self.inner.opts.max_txn_ops {
                return Err(StoreError::unreadable(format!(
                    "this push needs {} operations in one transaction; etcd allows {} \
                     (raise etcd's --max-txn-ops and EtcdOptions::max_txn_ops)",
                    ops.len(),
                    self.inner.opts.max_txn_ops
                )));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    mkey.as_str(),
                    CompareOp::Equal,
                    manifest_rev,
                )])
                .and_then(ops);
            let resp = self.run("pushing the site to etcd", |mut c| async move {
                c.txn(txn).await
            })?;
            if resp.succeeded() {
                let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                return Ok(Snapshot {
                    files: files.clone(),
                    revision: rev.to_string(),
                    hash,
                });
            }
            // Someone else pushed in between: read again and redo.
        }
        Err(StoreError::unreachable(format!(
            "pushing the site to etcd: another writer changed the site first {ATTEMPTS} times \
             in a row; nothing of this push was written"
        )))
    }

    /// The site as it was at etcd revision `revision` (a revision string of
    /// a [`Snapshot`] of this store).
    pub fn load_at(&self, revision: &str) -> Result<Snapshot, StoreError> {
        let rev: i64 = revision
            .parse()
            .map_err(|_| StoreError::unreadable(format!("bad etcd revision {revision:?}")))?;
        self.read_site(rev)?.snapshot.ok_or_else(|| self.no_site())
    }
}

impl SiteStore for EtcdStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.read_site(0)?.snapshot.ok_or_else(|| self.no_site())
    }

    fn watch(&self, last: Option<&str>) -> Result<Box<dyn SiteWatch>, StoreError> {
        Ok(Box::new(self.watch_from(last)?))
    }

    fn put_status(&self, node: &str, status: &NodeStatus) -> Result<(), StoreError> {
        check_node_name(node)?;
        let key = self.key(&format!("status/{node}"));
        let json = serde_json::to_vec(status).expect("status serialises");
        self.run("writing node status to etcd", |mut c| async move {
            c.put(key, json, None).await
        })?;
        Ok(())
    }

    fn statuses(&self) -> Result<BTreeMap<String, NodeStatus>, StoreError> {
        let prefix = self.key("status/");
        let p2 = prefix.clone();
        let resp = self.run("reading node statuses from etcd", |mut c| async move {
            c.get(p2, Some(GetOptions::new().with_prefix())).await
        })?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let node = key[prefix.len()..].to_string();
            check_node_name(&node)?;
            let st: NodeStatus = serde_json::from_slice(kv.value())
                .map_err(|e| StoreError::unreadable(format!("{key}: bad status record: {e}")))?;
            out.insert(node, st);
        }
        Ok(out)
    }
}

impl EtcdStore {
    /// The concrete watch (also available boxed through [`SiteStore::watch`]).
    pub fn watch_from(&self, last: Option<&str>) -> Result<EtcdWatch, StoreError> {
        let last = match last {
            None => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| StoreError::unreadable(format!("bad etcd revision {s:?}")))?,
            ),
        };
        Ok(EtcdWatch {
            store: self.clone(),
            last,
            from: last.map(|r| r + 1),
            stream: None,
            pending: None,
            backoff: Backoff::new(self.inner.opts.retry.clone()),
            sleeper: Box::new(ThreadSleeper),
            reported_missing: false,
        })
    }
}

/// A watch of an etcd site (see [`SiteWatch`]). It watches the manifest key
/// from the last revision it saw, so after etcd comes back it resumes where
/// it stopped; if that revision was compacted it falls back to a full load.
/// Several pushes that arrive before `next` is called are coalesced into
/// the newest.
pub struct EtcdWatch {
    store: EtcdStore,
    /// Manifest revision of the last snapshot yielded.
    last: Option<i64>,
    /// Revision the watch stream (re)starts from; `None`: not known yet,
    /// a full load comes first.
    from: Option<i64>,
    stream: Option<WatchStream>,
    /// Newest manifest revision announced by the stream, not yet loaded.
    pending: Option<i64>,
    backoff: Backoff,
    sleeper: Box<dyn Sleeper + Send>,
    reported_missing: bool,
}

impl EtcdWatch {
    /// Replace the sleeper used between retries (tests).
    pub fn set_sleeper(&mut self, sleeper: Box<dyn Sleeper + Send>) {
        self.sleeper = sleeper;
    }

    /// Yield `snap` unless it is the one already yielded.
    fn offer(&mut self, snap: Snapshot) -> Option<Snapshot> {
        let rev: i64 = snap.revision.parse().unwrap_or(0);
        if self.last == Some(rev) {
            return None;
        }
        self.last = Some(rev);
        self.from = Some(self.from.unwrap_or(0).max(rev + 1));
        Some(snap)
    }

    /// One step; `Ok(Some)`: a snapshot; `Ok(None)`: keep going.
    fn step(&mut self, deadline: Instant) -> Result<Option<Snapshot>, StoreError> {
        // Something announced: load the newest site (several pushes that
        // arrived meanwhile are coalesced; older announcements are skipped).
        if let Some(rev) = self.pending.take() {
            if self.last.is_some_and(|last| rev <= last) {
                return Ok(None);
            }
            let r = self.store.read_site(0);
            if let Err(e) = &r {
                if e.is_transient() {
                    self.pending = Some(rev);
                }
            }
            match r?.snapshot {
                Some(s) => return Ok(self.offer(s)),
                None => return Err(self.store.no_site()),
            }
        }
        // Nothing known yet: a full load, and watch from just after it.
        if self.from.is_none() {
            let raw = self.store.read_site(0)?;
            self.from = Some(raw.header_revision + 1);
            match raw.snapshot {
                Some(s) => return Ok(self.offer(s)),
                None if !self.reported_missing => {
                    self.reported_missing = true;
                    return Err(self.store.no_site());
                }
                None => {}
            }
        }
        if self.stream.is_none() {
            let from = self.from.unwrap_or(0);
            let key = self.store.manifest_key();
            let s = self
                .store
                .run("watching the site in etcd", |mut c| async move {
                    c.watch(
                        key,
                        Some(
                            WatchOptions::new()
                                .with_start_revision(from)
                                .with_progress_notify(),
                        ),
                    )
                    .await
                })?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().expect("stream set above");
        let wait = deadline.saturating_duration_since(Instant::now());
        let msg = self
            .store
            .inner
            .rt
            .block_on(async { tokio::time::timeout(wait, stream.message()).await });
        let resp = match msg {
            Err(_) => return Ok(None), // timed out, stream still fine
            Ok(Ok(Some(resp))) => resp,
            Ok(Ok(None)) => {
                self.stream = None;
                return Err(StoreError::unreachable("etcd closed the watch stream"));
            }
            Ok(Err(e)) => {
                self.stream = None;
                *self
                    .store
                    .inner
                    .client
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                return Err(map_err("watching the site in etcd", e));
            }
        };
        if resp.compact_revision() > 0 {
            // Our start revision is gone: reload everything, then watch on.
            self.stream = None;
            let raw = self.store.read_site(0)?;
            self.from = Some(raw.header_revision + 1);
            return match raw.snapshot {
                Some(s) => Ok(self.offer(s)),
                None => Err(self.store.no_site()),
            };
        }
        if resp.canceled() {
            self.stream = None;
            return Err(StoreError::unreachable(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            )));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            self.from = Some(self.from.unwrap_or(0).max(kv.mod_revision() + 1));
            match ev.event_type() {
                EventType::Put => {
                    self.pending = Some(self.pending.unwrap_or(0).max(kv.mod_revision()))
                }
                EventType::Delete => {
                    self.pending = None;
                    return Err(StoreError::unreadable(format!(
                        "the site under {} was deleted from etcd",
                        self.store.inner.opts.prefix
                    )));
                }
            }
        }
        Ok(None)
    }
}

impl SiteWatch for EtcdWatch {
    /// While etcd is unreachable this retries with backoff until `timeout`
    /// and then returns the last error; the next call resumes.
    fn next(&mut self, timeout: Duration) -> Result<Option<Snapshot>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.step(deadline) {
                Ok(Some(s)) => {
                    self.backoff.reset();
                    return Ok(Some(s));
                }
                Ok(None) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(e) if e.is_transient() => {
                    let now = self.sleeper.now();
                    if now >= deadline {
                        return Err(e);
                    }
                    let d = self.backoff.next_delay().min(deadline - now);
                    self.sleeper.sleep(d);
                    if self.sleeper.now() >= deadline {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How long to wait before retry `attempt` (1-based) of a push that lost
/// its compare-and-swap: exponential from 2 ms, capped at 100 ms, with full
/// jitter (a random fraction), so competing writers spread out.
fn push_backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let r = h.finish();
    Duration::from_micros(500 + r % (cap_ms * 1000))
}
