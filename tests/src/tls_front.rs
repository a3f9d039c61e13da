//! A TLS terminator on a loopback port that pipes each decrypted
//! connection to a plain-TCP backend: in front of tinyproxy (which has no
//! TLS listener) it makes an `https://` proxy, its certificate issued by a
//! [`TestCa`]. Counts the handshakes that finished and those that failed
//! (a client that does not trust the CA aborts its handshake). Stops on
//! drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::TestCa;

/// A running TLS front.
pub struct TlsFront {
    port: u16,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    failed: AtomicUsize,
}

impl TlsFront {
    /// Listens on a free 127.0.0.1 port with a certificate from `ca` for
    /// `127.0.0.1` and `localhost`; each connection's plaintext goes to
    /// `backend` (`HOST:PORT`).
    pub async fn start(ca: &TestCa, backend: &str) -> anyhow::Result<TlsFront> {
        let acceptor = ca.acceptor()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let backend = backend.to_string();
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, backend, c) = (acceptor.clone(), backend.clone(), c.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(_) => {
                            c.failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    c.accepted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut plain) = TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Ok(TlsFront { port, counts, task })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host())
    }

    /// `https://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("https://{user}:{password}@{}", self.host())
    }

    /// TLS handshakes that finished.
    pub fn handshakes(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes the client broke off (or that failed otherwise).
    pub fn failed_handshakes(&self) -> usize {
        self.counts.failed.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
