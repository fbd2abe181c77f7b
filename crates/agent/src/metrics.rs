//! Prometheus text metrics and a minimal `/metrics` HTTP server (std only).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Counter(AtomicU64);
impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicU64);
impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }
    /// Stores seconds as f64 bits.
    pub fn set_secs(&self, d: Duration) {
        self.0.store(d.as_secs_f64().to_bits(), Ordering::Relaxed)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn secs(&self) -> f64 {
        f64::from_bits(self.get())
    }
}

#[derive(Default)]
pub struct Metrics {
    pub applies: Counter,
    pub failures: Counter,
    pub refusals: Counter,
    pub drift_repairs: Counter,
    pub last_apply_duration: Gauge,
    pub rules: Gauge,
    pub set_elements: Gauge,
    plan: Mutex<Option<String>>,
}

impl Metrics {
    pub fn set_plan(&self, hash: &str) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash.to_owned());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut c = |name: &str, help: &str, v: u64| {
            o.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        c(
            "rampart_applies_total",
            "Plans applied to the kernel.",
            self.applies.get(),
        );
        c(
            "rampart_apply_failures_total",
            "Applies the kernel or the state refused.",
            self.failures.get(),
        );
        c(
            "rampart_refusals_total",
            "Site revisions not applied: invalid, not compiling, or refused by the lock-out guard.",
            self.refusals.get(),
        );
        c(
            "rampart_drift_repairs_total",
            "Times rampart's tables drifted from the plan and were re-applied.",
            self.drift_repairs.get(),
        );
        o.push_str(&format!(
            "# HELP rampart_last_apply_duration_seconds Duration of the last apply.\n# TYPE rampart_last_apply_duration_seconds gauge\nrampart_last_apply_duration_seconds {}\n",
            self.last_apply_duration.secs()
        ));
        if let Some(h) = &*self.plan.lock().unwrap_or_else(|e| e.into_inner()) {
            o.push_str(&format!(
                "# HELP rampart_plan_info The plan that runs.\n# TYPE rampart_plan_info gauge\nrampart_plan_info{{hash=\"{h}\"}} 1\n"
            ));
        }
        o.push_str(&format!(
            "# HELP rampart_ruleset_rules Rules in the last compiled ruleset.\n# TYPE rampart_ruleset_rules gauge\nrampart_ruleset_rules {}\n",
            self.rules.get()
        ));
        o.push_str(&format!(
            "# HELP rampart_set_elements Set elements in the last compiled ruleset.\n# TYPE rampart_set_elements gauge\nrampart_set_elements {}\n",
            self.set_elements.get()
        ));
        o
    }
}

/// Serve `GET /metrics` on `addr` from a background thread; returns the
/// bound address (port 0 picks one).
pub fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    serve_metrics_in(None, addr, metrics)
}

/// [`serve_metrics`] with the port bound in network namespace `netns`
/// (`agent --netns`): reachable there, not in the caller's namespace.
pub fn serve_metrics_in(
    netns: Option<&str>,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<SocketAddr> {
    let l = rampart_apply::netlink::in_netns(netns, || TcpListener::bind(addr))?;
    let local = l.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let first = line.lines().next().unwrap_or("");
                let resp = if first.starts_with("GET /metrics ") || first == "GET /metrics" {
                    let body = metrics.render();
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                };
                let _ = s.write_all(resp.as_bytes());
            }
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn serves_prometheus_text() {
        let m = Arc::new(Metrics::default());
        m.applies.inc();
        m.applies.inc();
        m.drift_repairs.inc();
        m.rules.set(7);
        m.set_plan("abc123");
        m.last_apply_duration.set_secs(Duration::from_millis(250));
        let addr = serve_metrics("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        for line in [
            "rampart_applies_total 2",
            "rampart_apply_failures_total 0",
            "rampart_refusals_total 0",
            "rampart_drift_repairs_total 1",
            "rampart_last_apply_duration_seconds 0.25",
            "rampart_plan_info{hash=\"abc123\"} 1",
            "rampart_ruleset_rules 7",
            "rampart_set_elements 0",
            "# TYPE rampart_applies_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "missing `{line}` in\n{out}");
        }
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    }
}
