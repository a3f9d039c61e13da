//! A wide-area network between the contenders and the registries: one TCP
//! forwarder per registry, all of a profile's forwarders sharing one link.
//!
//! Each direction of each connection is delayed by half the round trip:
//! chunks are queued with the time they arrived and leave when that time
//! plus the one-way delay has come, so the delay is latency and never caps
//! throughput. A new connection also pays the TCP handshake's round trip
//! (nothing crosses before it would have completed). The rate is capped by
//! one token bucket per direction (a full-duplex link: what comes down from
//! the source and what goes up to the target each get the rate), shared by
//! every connection to every registry, so contenders that open more
//! connections get no more of the link. Not modelled: loss, and TCP's slow
//! start and windows (the contenders' TCP sees a loopback peer).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// `RTT,RATE`: `40ms,1gbit`, `100ms,200mbit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WanProfile {
    pub rtt: Duration,
    /// Bits per second, each direction.
    pub rate_bits: u64,
}

impl WanProfile {
    pub fn bytes_per_sec(&self) -> f64 {
        self.rate_bits as f64 / 8.0
    }

    /// Time to move `bytes` at the rate.
    pub fn transfer_time(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec())
    }
}

impl fmt::Display for WanProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.rtt.as_secs_f64() * 1000.0;
        let (v, unit) = [
            (1_000_000_000, "gbit"),
            (1_000_000, "mbit"),
            (1_000, "kbit"),
        ]
        .into_iter()
        .find(|(u, _)| self.rate_bits >= *u && self.rate_bits.is_multiple_of(*u))
        .map(|(u, n)| (self.rate_bits / u, n))
        .unwrap_or((self.rate_bits, "bit"));
        write!(f, "{ms}ms,{v}{unit}")
    }
}

impl FromStr for WanProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("{s:?}: use RTT,RATE, e.g. 40ms,1gbit or 100ms,200mbit");
        let (rtt, rate) = s.split_once(',').ok_or_else(usage)?;
        let number = |text: &str, units: &[(&str, f64)]| -> Option<f64> {
            let text = text.trim().to_ascii_lowercase();
            // Longest unit first: "ms" before "s".
            units.iter().find_map(|(u, scale)| {
                let n: f64 = text.strip_suffix(u)?.trim().parse().ok()?;
                (n.is_finite() && n >= 0.0).then_some(n * scale)
            })
        };
        let rtt = number(rtt, &[("us", 1e-6), ("ms", 1e-3), ("s", 1.0)]).ok_or_else(usage)?;
        let rate = number(
            rate,
            &[("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)],
        )
        .ok_or_else(usage)?;
        if rate < 8.0 || rtt > 60.0 {
            return Err(format!(
                "{s:?}: a rate of at least 8bit and a round trip under 60s"
            ));
        }
        Ok(WanProfile {
            rtt: Duration::from_secs_f64(rtt),
            rate_bits: rate as u64,
        })
    }
}

/// A token bucket kept as a virtual clock: `next` is when the link will
/// have sent everything granted so far. Up to `burst` of idle time is
/// credited, so a link that was idle sends a burst at once.
pub struct TokenBucket {
    bytes_per_sec: f64,
    burst: Duration,
    next: Mutex<Instant>,
}

impl TokenBucket {
    pub fn new(bytes_per_sec: f64) -> Self {
        // 5 ms of the rate, at least one chunk: fine enough that no
        // measurement sees bursts, coarse enough for tokio's 1 ms timer.
        let burst = Duration::from_secs_f64((CHUNK as f64 / bytes_per_sec).max(0.005));
        TokenBucket {
            bytes_per_sec,
            burst,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Wait until `n` more bytes may cross.
    pub async fn take(&self, n: usize) {
        let until = {
            let mut next = self.next.lock().expect("token bucket lock");
            let now = Instant::now();
            let credited = now.checked_sub(self.burst).unwrap_or(now);
            let start = (*next).max(credited);
            *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
            *next
        };
        tokio::time::sleep_until(until).await;
    }
}

/// The link of one profile: its delays and one bucket per direction,
/// shared by every forwarder started on it.
pub struct Link {
    pub profile: WanProfile,
    /// Registry to client.
    down: TokenBucket,
    /// Client to registry.
    up: TokenBucket,
}

impl Link {
    pub fn new(profile: WanProfile) -> Arc<Link> {
        Arc::new(Link {
            profile,
            down: TokenBucket::new(profile.bytes_per_sec()),
            up: TokenBucket::new(profile.bytes_per_sec()),
        })
    }

    /// Bytes one direction of one connection may hold in flight: twice
    /// what the whole link carries in one one-way delay, so no connection
    /// is held back by its queue, and memory stays bounded.
    fn in_flight(&self) -> usize {
        let bdp = self.profile.bytes_per_sec() * self.profile.rtt.as_secs_f64();
        (bdp as usize).clamp(1 << 20, 256 << 20)
    }
}

/// Read size of the forwarder.
const CHUNK: usize = 64 * 1024;

/// A forwarder from a local port to one registry, over a [`Link`]. It stops
/// (with every connection it holds) when dropped.
pub struct Shaper {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Shaper {
    pub async fn start(upstream: SocketAddr, link: Arc<Link>) -> io::Result<Shaper> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Owned here: aborting this task drops the set, which aborts
            // every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(forward(client, upstream, link.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Shaper { addr, task })
    }

    /// `127.0.0.1:PORT`, to use in place of the registry's host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: both directions until both have ended, or until either
/// fails (which closes both).
async fn forward(client: TcpStream, upstream: SocketAddr, link: Arc<Link>) {
    let accepted = Instant::now();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (rtt, one_way) = (link.profile.rtt, link.profile.rtt / 2);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // The handshake: the client could first send at accepted + RTT (its
    // SYN's answer), the server when the client's ACK reached it, half a
    // round trip later.
    let up = Direction {
        bucket: &link.up,
        delay: one_way,
        first_send: accepted + rtt,
        in_flight: link.in_flight(),
    };
    let down = Direction {
        bucket: &link.down,
        delay: one_way,
        first_send: accepted + rtt + one_way,
        in_flight: link.in_flight(),
    };
    let _ = tokio::try_join!(
        up.pump(client_read, server_write),
        down.pump(server_read, client_write)
    );
}

struct Direction<'a> {
    bucket: &'a TokenBucket,
    delay: Duration,
    /// Nothing is sent (nor takes tokens) before this.
    first_send: Instant,
    in_flight: usize,
}

impl Direction<'_> {
    /// Read, take tokens, stamp, queue; a second task writes each chunk
    /// when its stamp plus the delay has come. The end of the stream is
    /// delayed like data.
    async fn pump(&self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) -> io::Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Bytes>)>();
        let room = Semaphore::new(self.in_flight);
        let reader = async {
            loop {
                let mut buf = BytesMut::with_capacity(CHUNK);
                let n = from.read_buf(&mut buf).await?;
                tokio::time::sleep_until(self.first_send).await;
                if n == 0 {
                    let _ = tx.send((Instant::now(), None));
                    return Ok::<_, io::Error>(());
                }
                room.acquire_many(n as u32)
                    .await
                    .expect("never closed")
                    .forget();
                self.bucket.take(n).await;
                if tx.send((Instant::now(), Some(buf.freeze()))).is_err() {
                    return Ok(());
                }
            }
        };
        let writer = async {
            while let Some((stamp, data)) = rx.recv().await {
                tokio::time::sleep_until(stamp + self.delay).await;
                match data {
                    Some(data) => {
                        to.write_all(&data).await?;
                        room.add_permits(data.len());
                    }
                    None => break,
                }
            }
            to.shutdown().await
        };
        tokio::try_join!(reader, writer).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_print() {
        let p: WanProfile = "40ms,1gbit".parse().unwrap();
        assert_eq!(p.rtt, Duration::from_millis(40));
        assert_eq!(p.rate_bits, 1_000_000_000);
        assert_eq!(p.to_string(), "40ms,1gbit");
        let p: WanProfile = "100ms,200mbit".parse().unwrap();
        assert_eq!(p.bytes_per_sec(), 25e6);
        assert_eq!(p.to_string(), "100ms,200mbit");
        assert_eq!(
            "0.5s,1500kbit".parse::<WanProfile>().unwrap().to_string(),
            "500ms,1500kbit"
        );
        for bad in ["40ms", "40,1gbit", "40ms,fast", "-1ms,1gbit", "40ms,0bit"] {
            assert!(bad.parse::<WanProfile>().is_err(), "{bad}");
        }
    }

    /// Accepts one connection and hands it over.
    async fn one_peer() -> (SocketAddr, tokio::task::JoinHandle<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (
            addr,
            tokio::spawn(async move { l.accept().await.unwrap().0 }),
        )
    }

    fn within(what: &str, got: Duration, want: Duration) {
        // Timers round up to a millisecond; a busy two-core machine adds a few.
        let (lo, hi) = (
            want.saturating_sub(Duration::from_millis(2)),
            want + Duration::from_millis(40),
        );
        assert!(
            got >= lo && got <= hi,
            "{what}: {got:?}, expected {want:?} (−2 ms, +40 ms)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_direction_is_delayed_by_half_the_round_trip() {
        let rtt = Duration::from_millis(200);
        let link = Link::new(WanProfile {
            rtt,
            rate_bits: 1_000_000_000,
        });
        let (addr, server) = one_peer().await;
        let shaper = Shaper::start(addr, link).await.unwrap();
        let t0 = Instant::now();
        let mut client = TcpStream::connect(shaper.host()).await.unwrap();
        client.write_all(b"a").await.unwrap();
        let mut server = server.await.unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).await.unwrap();
        // Handshake (one round trip), then the one-way delay.
        within("first byte up", t0.elapsed(), rtt + rtt / 2);

        tokio::time::sleep(rtt).await;
        let sent = Instant::now();
        client.write_all(b"b").await.unwrap();
        server.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"b");
        within("client to server", sent.elapsed(), rtt / 2);

        let sent = Instant::now();
        server.write_all(b"c").await.unwrap();
        client.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"c");
        within("server to client", sent.elapsed(), rtt / 2);

        // The end of the stream is delayed too, and passes through.
        let sent = Instant::now();
        drop(server);
        assert_eq!(client.read(&mut b).await.unwrap(), 0);
        within("close", sent.elapsed(), rtt / 2);
    }

    /// Sends `bytes` from a server to a client through `shaper`, returning
    /// when the client has them all.
    async fn download(shaper: &Shaper, server: tokio::task::JoinHandle<TcpStream>, bytes: usize) {
        let mut client = TcpStream::connect(shaper.host()).await.unwrap();
        let mut server = server.await.unwrap();
        let send = tokio::spawn(async move {
            let block = vec![7u8; CHUNK];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(block.len());
                server.write_all(&block[..n]).await.unwrap();
                left -= n;
            }
            server.shutdown().await.unwrap();
        });
        let mut got = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        send.await.unwrap();
        assert_eq!(got, bytes);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rate_is_shared_and_the_delay_does_not_cap_it() {
        // 40 Mbit/s = 5 MB/s; a 100 ms round trip, which a sleep per read
        // would turn into a few hundred KiB/s.
        let profile = WanProfile {
            rtt: Duration::from_millis(100),
            rate_bits: 40_000_000,
        };
        let per = 2_500_000;
        let one_link = Link::new(profile);
        let (addr, server) = one_peer().await;
        let shaper = Shaper::start(addr, one_link.clone()).await.unwrap();
        let t0 = Instant::now();
        download(&shaper, server, per * 2).await;
        let alone = t0.elapsed();
        let want = profile.transfer_time((per * 2) as u64) + profile.rtt * 2;
        assert!(
            alone.as_secs_f64() >= 0.9 * want.as_secs_f64()
                && alone.as_secs_f64() <= 1.1 * want.as_secs_f64(),
            "one connection: {alone:?}, expected {want:?} ±10%"
        );

        // Two connections, through two forwarders on the same link, take
        // as long as one with the same bytes.
        let (a, sa) = one_peer().await;
        let (b, sb) = one_peer().await;
        let (fa, fb) = (
            Shaper::start(a, one_link.clone()).await.unwrap(),
            Shaper::start(b, one_link).await.unwrap(),
        );
        let t0 = Instant::now();
        tokio::join!(download(&fa, sa, per), download(&fb, sb, per));
        let shared = t0.elapsed();
        assert!(
            shared.as_secs_f64() >= 0.9 * want.as_secs_f64()
                && shared.as_secs_f64() <= 1.1 * want.as_secs_f64(),
            "two connections: {shared:?}, expected {want:?} ±10%"
        );
    }

    #[tokio::test]
    async fn a_bucket_paces_to_its_rate() {
        let bucket = TokenBucket::new(10e6);
        let t0 = Instant::now();
        for _ in 0..40 {
            bucket.take(CHUNK).await;
        }
        let want = 40.0 * CHUNK as f64 / 10e6;
        let got = t0.elapsed().as_secs_f64();
        assert!(
            (got - want).abs() <= 0.1 * want,
            "{got} s for {want} s of tokens"
        );
    }
}
