//! How many connections the server keeps open: in all, and per client address. A connection over either
//! cap gets a plain `503` with `Retry-After` and is closed at once, before any of its bytes are read, so
//! slow or idle clients cannot use up the process's file descriptors and starve every tenant. Not for the
//! per-tenant request slots (`tenant.rs`) or the header and body deadlines (`server.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// The connections open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The connections one client address may hold open at once, by default.
pub const DEFAULT_MAX_PER_CLIENT: usize = 64;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub total: usize,
    pub per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { total: DEFAULT_MAX_CONNECTIONS, per_client: DEFAULT_MAX_PER_CLIENT }
    }
}

/// The connections open now.
#[derive(Debug, Default)]
pub struct Connections {
    limits: ConnectionLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; it counts until dropped.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections { limits, open: Mutex::default() })
    }

    /// Counts a new connection from `client`, or says which cap it is over. A trusted proxy (`proxy`)
    /// carries many clients: only the total cap applies to it.
    pub fn admit(self: &Arc<Self>, client: IpAddr, proxy: bool) -> Result<Admitted, String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_client) = &mut *open;
        let mine = per_client.get(&client).copied().unwrap_or(0);
        if *total >= self.limits.total {
            return Err(format!("the server has its limit of {} connections open; retry shortly", self.limits.total));
        }
        if mine >= self.limits.per_client && !proxy {
            return Err(format!(
                "this address has its limit of {} connections open; close some (or reuse them) and retry",
                self.limits.per_client
            ));
        }
        *total += 1;
        *per_client.entry(client).or_insert(0) += 1;
        Ok(Admitted { connections: self.clone(), client })
    }

    /// How many connections are open, in all.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_client) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// Answers a connection over a cap with `503` and closes it (within a second, whatever the client does).
pub async fn refuse(mut stream: TcpStream, message: String) {
    let body = format!("{message}\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_client_and_freed_when_dropped() {
        let c = Connections::new(ConnectionLimits { total: 3, per_client: 2 });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = c.admit(a, false).unwrap();
        let _a2 = c.admit(a, false).unwrap();
        assert!(c.admit(a, false).unwrap_err().contains("this address"));
        let _b1 = c.admit(b, false).unwrap();
        assert!(c.admit(b, false).unwrap_err().contains("limit of 3 connections"));
        assert_eq!(c.open(), 3);
        drop(a1);
        assert_eq!(c.open(), 2);
        let _a3 = c.admit(a, false).unwrap();
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_total_only() {
        let c = Connections::new(ConnectionLimits { total: 3, per_client: 1 });
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let held: Vec<Admitted> = (0..3).map(|_| c.admit(proxy, true).unwrap()).collect();
        assert!(c.admit(proxy, true).unwrap_err().contains("limit of 3 connections"));
        drop(held);
    }
}
