//! Who gets a connection, and how long a connection may stall.
//!
//! Every accepted connection is answered at once, never left in the listen queue: served
//! when there is a slot, refused with a short 503 when there is none, so health probes never
//! wait behind a crowd. One address holds at most `max_connections_per_peer`; beyond the
//! `max_connections` slots, `ops_reserve` more serve only `/healthz`, `/readyz` and
//! `/metrics`, one request each. A connection whose writes make no progress for
//! `write_timeout` (a client that never reads its answers) is closed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// What a new connection may do.
pub enum Admission {
    /// Any request.
    Full(Slot),
    /// Only the probes (`/healthz`, `/readyz`, `/metrics`), then closed.
    ProbesOnly(Slot),
    /// Nothing: answered 503 and closed, for this reason.
    Refused(&'static str),
}

/// A connection's hold on its slot and its address's count, released on drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// The connection slots of a listener.
pub struct Admissions {
    general: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    per_peer: usize,
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Admissions {
    /// `max_connections` general slots, `ops_reserve` for probes, `per_peer` per address.
    pub fn new(max_connections: usize, ops_reserve: usize, per_peer: usize) -> Self {
        Self {
            general: Arc::new(Semaphore::new(max_connections.max(1))),
            reserve: Arc::new(Semaphore::new(ops_reserve)),
            per_peer: per_peer.max(1),
            peers: Arc::default(),
        }
    }

    /// Decides for a connection from `peer`.
    pub fn admit(&self, peer: IpAddr) -> Admission {
        let Some(peer) = PeerSlot::take(&self.peers, peer, self.per_peer) else {
            return Admission::Refused("too many connections from your address");
        };
        if let Ok(permit) = self.general.clone().try_acquire_owned() {
            return Admission::Full(Slot { _permit: permit, _peer: peer });
        }
        match self.reserve.clone().try_acquire_owned() {
            Ok(permit) => Admission::ProbesOnly(Slot { _permit: permit, _peer: peer }),
            Err(_) => Admission::Refused("every connection is in use"),
        }
    }
}

/// One connection counted against its address.
struct PeerSlot {
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: IpAddr,
}

impl PeerSlot {
    fn take(peers: &Arc<Mutex<HashMap<IpAddr, usize>>>, peer: IpAddr, cap: usize) -> Option<Self> {
        let mut counts = peers.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(peer).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Self { peers: peers.clone(), peer })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// Answers a refused connection with a 503 if its socket takes it now, then closes it.
pub fn refuse(stream: TcpStream, reason: &str) {
    let body = format!(r#"{{"error":{{"code":"busy","message":"{reason}; retry later"}}}}"#);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Never wait on a refused client: what the socket buffer does not take is dropped.
    let _ = stream.try_write(answer.as_bytes());
}

/// A socket whose writes fail with `TimedOut` after `timeout` without progress.
pub struct TimedWrites {
    stream: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimedWrites {
    pub fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self { stream, timeout, stalled: None }
    }

    /// `poll` of a write: progress resets the clock; pending past the timeout is an error.
    fn timed<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {timeout:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for TimedWrites {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedWrites {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.timed(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.timed(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.timed(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.timed(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_capped_and_probes_get_the_reserve() {
        let admissions = Admissions::new(2, 1, 2);
        let (a, b) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = admissions.admit(a);
        let second = admissions.admit(a);
        assert!(matches!((&first, &second), (Admission::Full(_), Admission::Full(_))));
        assert!(matches!(admissions.admit(a), Admission::Refused(r) if r.contains("your address")));
        let probe = admissions.admit(b);
        assert!(matches!(probe, Admission::ProbesOnly(_)), "the reserve");
        assert!(matches!(admissions.admit(b), Admission::Refused(r) if r.contains("every connection")));
        drop(first);
        assert!(matches!(admissions.admit(b), Admission::Full(_)), "a freed slot is reused");
        assert_eq!(admissions.peers.lock().unwrap().get(&a), Some(&1));
    }
}
