//! A TCP relay that can go silent: the connections open when
//! [`Relay::silence`] is called stop passing bytes both ways but stay open,
//! as a cut network leaves them (half-open); later ones pass. Shared by the
//! store's tests (a half-open listener) and the server's (a half-open
//! component link), included by path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct Relay {
    pub addr: SocketAddr,
    silenced_below: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl Relay {
    /// Relays every connection to `to` (`host:port`).
    pub async fn start(to: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silenced_below = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (s, n, d) = (silenced_below.clone(), accepted.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let index = n.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(&to).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut r, mut w) in [(cr, sw), (sr, cw)] {
                    let (s, d) = (s.clone(), d.clone());
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let Ok(k) = r.read(&mut buf).await else {
                                return;
                            };
                            if k == 0 {
                                return;
                            }
                            if index < s.load(Ordering::SeqCst) || d.load(Ordering::SeqCst) {
                                // Silent, and open for ever (until the test ends).
                                break;
                            }
                            if w.write_all(&buf[..k]).await.is_err() {
                                return;
                            }
                        }
                        let _keep = (r, w);
                        std::future::pending::<()>().await;
                    });
                }
            }
        });
        Relay {
            addr,
            silenced_below,
            accepted,
            down,
        }
    }

    /// Silences every connection accepted so far.
    pub fn silence(&self) {
        self.silenced_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The network goes down: every connection, open or new, is silent
    /// (and stays so) until [`Relay::come_back`].
    pub fn go_down(&self) {
        self.silence();
        self.down.store(true, Ordering::SeqCst);
    }

    /// New connections pass again.
    pub fn come_back(&self) {
        self.silence();
        self.down.store(false, Ordering::SeqCst);
    }
}
