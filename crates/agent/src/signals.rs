//! SIGTERM/SIGINT (stop) and SIGHUP (reload) without unsafe code: the
//! signals are blocked in the calling thread (and so in every thread it
//! starts afterwards) and a dedicated thread waits for them with sigwait.

use nix::sys::signal::{SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Call early in `main`, before other threads start.
    pub fn install() -> std::io::Result<Signals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.add(Signal::SIGHUP);
        set.thread_block().map_err(std::io::Error::from)?;
        let s = Signals::default();
        let t = s.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                match set.wait() {
                    Ok(Signal::SIGHUP) => t.reload.store(true, Ordering::SeqCst),
                    Ok(sig) => {
                        tracing::info!("received {sig}");
                        t.stop.store(true, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            })?;
        Ok(s)
    }

    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst)
    }

    pub fn reload(&self) {
        self.reload.store(true, Ordering::SeqCst)
    }

    /// True once per SIGHUP.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }
}
