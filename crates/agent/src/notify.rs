//! systemd integration without libsystemd: readiness (`Type=notify`),
//! reload (`RELOADING=1` .. `READY=1`) and the watchdog (`WATCHDOG=1`
//! every half `WatchdogSec=`), each one datagram to `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Send `state` (e.g. `READY=1`) to systemd. Returns false when not run
/// under systemd or the send failed (never fatal). Abstract sockets
/// (`@name`) are not supported by std; systemd uses a path by default.
pub fn sd_notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    if path.to_string_lossy().starts_with('@') {
        tracing::debug!("abstract NOTIFY_SOCKET not supported");
        return false;
    }
    match UnixDatagram::unbound().and_then(|s| s.send_to(state.as_bytes(), &path)) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("sd_notify failed: {e}");
            false
        }
    }
}

/// CLOCK_MONOTONIC in microseconds (what `MONOTONIC_USEC=` carries).
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}

/// The message that starts a reload: `RELOADING=1` and, for systemd 253
/// and later (`Type=notify-reload`), the time it began. Debian 12's
/// systemd 252 ignores `MONOTONIC_USEC`.
pub fn reloading_message() -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec())
}

/// `WATCHDOG_USEC` when it is meant for this process (`WATCHDOG_PID`
/// unset or ours), as systemd's `sd_watchdog_enabled` reads it.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// How long the main loop may go without a [`Watchdog::alive`] before the
/// pings stop (and systemd, one `WatchdogSec` later, restarts the agent).
/// Long enough for the longest apply or plan (seconds at 100,000 set
/// elements), short enough that a hung agent is restarted.
pub const MAX_STALL: Duration = Duration::from_secs(300);

/// The watchdog keep-alive: a thread sends `WATCHDOG=1` every half
/// `WATCHDOG_USEC`, so a long apply in the main loop does not miss a ping,
/// as long as the main loop said [`Watchdog::alive`] within `max_stall`.
pub struct Watchdog {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    start: Instant,
    /// Milliseconds since `start` of the last `alive`.
    last_alive: AtomicU64,
    stop: AtomicBool,
}

impl Watchdog {
    /// Started when systemd asks for a watchdog ([`watchdog_interval`]);
    /// otherwise `None` and nothing is sent.
    pub fn from_env() -> Option<Watchdog> {
        watchdog_interval().map(|d| Watchdog::start(d, MAX_STALL))
    }

    pub fn start(interval: Duration, max_stall: Duration) -> Watchdog {
        let inner = Arc::new(Inner {
            start: Instant::now(),
            last_alive: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let every = (interval / 2).max(Duration::from_millis(1));
        let tick = every.min(Duration::from_millis(100));
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut warned = false;
                while !i.stop.load(Ordering::SeqCst) {
                    if Instant::now() >= next {
                        let since = i.start.elapsed().saturating_sub(Duration::from_millis(
                            i.last_alive.load(Ordering::SeqCst),
                        ));
                        if since <= max_stall {
                            sd_notify("WATCHDOG=1");
                            warned = false;
                        } else if !warned {
                            warned = true;
                            tracing::error!(
                                "the agent's loop has not moved for {since:?}: no more watchdog \
                                 pings, systemd will restart the agent"
                            );
                        }
                        next += every;
                    }
                    std::thread::sleep(tick.min(next.saturating_duration_since(Instant::now())));
                }
            })
            .ok();
        tracing::debug!("watchdog: WATCHDOG=1 every {every:?}");
        Watchdog { inner, thread }
    }

    /// The main loop is moving (call once per iteration).
    pub fn alive(&self) {
        let ms = self.inner.start.elapsed().as_millis() as u64;
        self.inner.last_alive.store(ms, Ordering::SeqCst);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    /// The tests share the process environment: one at a time.
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn socket() -> (tempfile::TempDir, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &p);
        (dir, rx)
    }

    fn recv(rx: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_ready_to_the_socket() {
        let _g = ENV.lock().unwrap();
        let (_d, rx) = socket();
        assert!(super::sd_notify("READY=1"));
        assert_eq!(recv(&rx), "READY=1");
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        let m = super::reloading_message();
        let usec: u64 = m
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0 && usec <= super::monotonic_usec(), "{m}");
    }

    #[test]
    fn watchdog_usec_is_ours_only_for_our_pid() {
        let _g = ENV.lock().unwrap();
        std::env::set_var("WATCHDOG_USEC", "30000000");
        std::env::remove_var("WATCHDOG_PID");
        assert_eq!(super::watchdog_interval(), Some(Duration::from_secs(30)));
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert_eq!(super::watchdog_interval(), Some(Duration::from_secs(30)));
        std::env::set_var("WATCHDOG_PID", "1");
        assert_eq!(super::watchdog_interval(), None);
        std::env::remove_var("WATCHDOG_PID");
        std::env::set_var("WATCHDOG_USEC", "0");
        assert_eq!(super::watchdog_interval(), None);
        std::env::remove_var("WATCHDOG_USEC");
        assert_eq!(super::watchdog_interval(), None);
    }

    /// Pings at half the interval while the loop is alive, also while it is
    /// busy (no `alive` for longer than the interval), and stop once the
    /// loop stalled longer than `max_stall`.
    #[test]
    fn pings_at_half_the_interval_and_stop_when_the_loop_stalls() {
        let _g = ENV.lock().unwrap();
        let (_d, rx) = socket();
        let wd = super::Watchdog::start(Duration::from_millis(200), Duration::from_millis(700));
        wd.alive();
        let t = std::time::Instant::now();
        let mut n = 0;
        // No `alive` for 500 ms (a long apply): still ~5 pings.
        while t.elapsed() < Duration::from_millis(500) {
            assert_eq!(recv(&rx), "WATCHDOG=1");
            n += 1;
        }
        assert!(n >= 4, "{n} pings in 500 ms at 100 ms");
        // Past max_stall: silence.
        std::thread::sleep(Duration::from_millis(500));
        rx.set_nonblocking(true).unwrap();
        while rx.recv(&mut [0u8; 64]).is_ok() {}
        std::thread::sleep(Duration::from_millis(300));
        assert!(rx.recv(&mut [0u8; 64]).is_err(), "pinged while stalled");
        // Alive again: pings again.
        rx.set_nonblocking(false).unwrap();
        wd.alive();
        assert_eq!(recv(&rx), "WATCHDOG=1");
        drop(wd);
    }
}
