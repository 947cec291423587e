//! Fewer, fuller socket writes: [`Coalescing`] holds what HTTP/2 writes
//! until it flushes, and lets the rest of the runtime's ready work run once
//! before it sends.
//!
//! A short gRPC exchange is several HTTP/2 frames made by different tasks:
//! the connection task writes a request's HEADERS while the body task is
//! still about to hand over its DATA; an answer's DATA goes out while the
//! answer's task is about to hand over the trailers. Written as they come,
//! each frame is a TLS record, a system call and a wake-up of the peer, and
//! the peer then reads, decrypts and parses a frame at a time.
//!
//! [`Coalescing`] copies writes into one buffer. On the first `poll_flush`
//! with something buffered it asks to be polled again and returns
//! `Pending`: the runtime puts the task at the back of its queue, the tasks
//! that were about to add frames run, and the next flush sends everything
//! in one TLS write. A flush therefore waits for at most one pass of the
//! worker's queue; nothing waits on a timer. A buffer that reaches
//! [`FLUSH_AT`] is written without waiting, so bulk transfers stream as
//! before and the socket's back-pressure still reaches the writer.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes at which a write goes to the stream without waiting for a
/// flush: large enough to fill TLS records of the maximum size, small
/// enough to keep each connection's memory bounded.
pub const FLUSH_AT: usize = 64 * 1024;

/// An I/O stream whose writes are gathered until flushed (see the module
/// documentation).
#[derive(Debug)]
pub struct Coalescing<S> {
    inner: S,
    pending: Vec<u8>,
    /// Bytes of `pending` already handed to `inner`.
    written: usize,
    /// Whether this flush has already let the queue run once.
    yielded: bool,
}

impl<S> Coalescing<S> {
    pub fn new(inner: S) -> Self {
        Coalescing {
            inner,
            pending: Vec::new(),
            written: 0,
            yielded: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Hands every buffered byte to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room before a write: drains the buffer if it is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.pending.len() >= FLUSH_AT {
            self.poll_drain(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_room(cx))?;
        let n = buf.len().min(FLUSH_AT - this.pending.len());
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(FLUSH_AT - this.pending.len());
            this.pending.extend_from_slice(&buf[..n]);
            taken += n;
            if n < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.pending.is_empty() && !this.yielded {
            // Let the tasks that are about to add frames run first.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stream that records each write it receives and accepts at most
    /// `chunk` bytes per call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        chunk: usize,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.chunk.max(1));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    fn recorder(chunk: usize) -> Coalescing<Recorder> {
        Coalescing::new(Recorder {
            chunk,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn small_writes_leave_in_one_write_at_flush() {
        let mut io = recorder(usize::MAX);
        io.write_all(b"headers").await.unwrap();
        io.write_all(b"data").await.unwrap();
        assert!(
            io.get_ref().writes.is_empty(),
            "nothing is sent before a flush"
        );
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"headersdata".to_vec()]);
        assert_eq!(io.get_ref().flushes, 1);
        // A flush with nothing buffered neither writes nor waits.
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 1);
        assert_eq!(io.get_ref().flushes, 2);
    }

    #[tokio::test]
    async fn the_first_flush_lets_other_tasks_run_before_sending() {
        let mut io = recorder(usize::MAX);
        io.write_all(b"x").await.unwrap();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(io.get_ref().writes.is_empty());
        // Whatever arrives in between goes in the same write.
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, b"y"),
            Poll::Ready(Ok(1))
        ));
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.get_ref().writes, vec![b"xy".to_vec()]);
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_without_a_flush_and_in_order() {
        // The inner stream takes 10,000 bytes per call, like a busy socket.
        let mut io = recorder(10_000);
        let data: Vec<u8> = (0..(3 * FLUSH_AT + 123)).map(|i| (i % 251) as u8).collect();
        io.write_all(&data).await.unwrap();
        let sent: usize = io.get_ref().writes.iter().map(Vec::len).sum();
        assert!(sent >= 3 * FLUSH_AT, "full buffers went out: {sent}");
        assert!(io.pending.len() <= FLUSH_AT);
        io.shutdown().await.unwrap();
        assert!(io.get_ref().shut);
        assert_eq!(io.get_ref().writes.concat(), data);
    }

    #[tokio::test]
    async fn vectored_writes_are_gathered_and_bounded() {
        let mut io = recorder(usize::MAX);
        let big = vec![7u8; FLUSH_AT];
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(&big), IoSlice::new(b"cd")];
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(Ok(n)) = Pin::new(&mut io).poll_write_vectored(&mut cx, &bufs) else {
            panic!("a write into an empty buffer is ready");
        };
        assert_eq!(n, FLUSH_AT, "takes up to the bound, no more");
        assert!(io.get_ref().writes.is_empty());
    }

    #[tokio::test]
    async fn reads_and_round_trips_pass_through() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut a = Coalescing::new(a);
        let mut b = Coalescing::new(b);
        let writer = tokio::spawn(async move {
            for i in 0..1000u32 {
                a.write_all(&i.to_be_bytes()).await.unwrap();
                if i % 7 == 0 {
                    a.flush().await.unwrap();
                }
            }
            a.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        let want: Vec<u8> = (0..1000u32).flat_map(|i| i.to_be_bytes()).collect();
        assert_eq!(got, want);
    }
}
