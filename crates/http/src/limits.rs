//! Connection limits every listener enforces before TLS: a cap on open
//! connections in total and per client address, and an idle timeout that
//! closes a connection on which nothing has been read or written for a while.
//!
//! Counting happens when a connection is accepted and is released when the
//! stream is dropped, so a burst of connections cannot pass the cap: the slot
//! is taken atomically before anything else runs.

use std::collections::HashMap;
use std::future::{Future, Ready};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionCounts {
    /// Connections open now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn take(
        self: &Arc<Self>,
        client: IpAddr,
        max_total: usize,
        max_per_client: usize,
    ) -> Option<Slot> {
        let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let mine = per_client.get(&client).copied().unwrap_or(0);
        if mine >= max_per_client {
            return None;
        }
        // Under the map's lock, so the total and the per-client count move together.
        if self.total.load(Ordering::Acquire) >= max_total {
            return None;
        }
        self.total.fetch_add(1, Ordering::AcqRel);
        per_client.insert(client, mine + 1);
        Some(Slot {
            counts: self.clone(),
            client,
        })
    }
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
struct Slot {
    counts: Arc<ConnectionCounts>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_client = self
            .counts
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match per_client.get_mut(&self.client) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                per_client.remove(&self.client);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_total: usize,
    pub max_per_client: usize,
    pub idle_timeout: Duration,
    pub counts: Arc<ConnectionCounts>,
}

/// Accepts a TCP connection if the limits allow it (else drops it at once),
/// sets `TCP_NODELAY`, and wraps it in an idle timer.
#[derive(Debug, Clone)]
pub struct LimitedAcceptor {
    pub limits: ConnectionLimits,
}

impl<S> Accept<TcpStream, S> for LimitedAcceptor {
    type Stream = Limited<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(self.wrap(stream).map(|s| (s, service)))
    }
}

impl LimitedAcceptor {
    fn wrap(&self, stream: TcpStream) -> io::Result<Limited<TcpStream>> {
        let client = stream.peer_addr()?.ip();
        let limits = &self.limits;
        let Some(slot) = limits
            .counts
            .take(client, limits.max_total, limits.max_per_client)
        else {
            metrics::counter!("http_connections_refused_total").increment(1);
            return Err(io::Error::other("connection limit reached"));
        };
        // Small answers go out at once: without TCP_NODELAY, Nagle's algorithm
        // holds them back waiting for the peer's delayed ACK.
        stream.set_nodelay(true)?;
        Ok(Limited {
            inner: stream,
            idle: limits.idle_timeout,
            timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            _slot: slot,
        })
    }
}

/// A stream that fails with `TimedOut` once nothing has moved across it for
/// the idle timeout, and frees its connection slot when dropped.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl<S> Limited<S> {
    fn touch(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.idle);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => {
                metrics::counter!("http_connections_idle_closed_total").increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle",
                )))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        match written {
            Poll::Ready(Ok(n)) if n > 0 => self.touch(),
            Poll::Pending if self.expired(cx) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle",
                )));
            }
            _ => {}
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_in_total_and_freed_on_drop() {
        let counts = Arc::new(ConnectionCounts::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = counts.take(a, 3, 2).unwrap();
        let _s2 = counts.take(a, 3, 2).unwrap();
        assert!(counts.take(a, 3, 2).is_none(), "per-client cap");
        let _s3 = counts.take(b, 3, 2).unwrap();
        assert!(counts.take(b, 3, 2).is_none(), "total cap");
        assert_eq!(counts.total(), 3);
        drop(s1);
        assert_eq!(counts.total(), 2);
        assert!(counts.take(a, 3, 2).is_some());
    }
}
