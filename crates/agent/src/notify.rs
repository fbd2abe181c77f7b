//! systemd readiness (`Type=notify`) without libsystemd: one datagram to
//! `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

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

#[cfg(test)]
mod tests {
    #[test]
    fn sends_ready_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &p);
        assert!(super::sd_notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
