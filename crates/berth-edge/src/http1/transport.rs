//! What the HTTP/1 connection loop needs of a client connection, so the same loop serves plain
//! TCP and TLS: its two halves (a body is read from the read half while the write half waits
//! for the answer), putting them back together (an HTTP/2 hand-off, a WebSocket tunnel), and a
//! wait for the next request that holds no buffer where the transport allows it.
//!
//! Knows nothing of HTTP.

use std::future::Future;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A client connection the HTTP/1 loop can serve.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    type Read: AsyncRead + Unpin + Send + Sync + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;

    /// Whether the connection is encrypted (`X-Forwarded-Proto: https`).
    const SECURE: bool;

    fn split(self) -> (Self::Read, Self::Write);

    /// The connection again from its halves (`None`: they are not halves of one connection).
    fn unsplit(read: Self::Read, write: Self::Write) -> Option<Self>;

    /// Waits until the client sends something. Plain TCP waits for readiness and reads
    /// nothing (an idle connection holds no buffer); TLS must decrypt to know, so the first
    /// bytes of the next request land in `buf`. Ok(false): the client closed.
    fn wait_readable<'a>(
        read: &'a mut Self::Read,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<bool>> + Send + 'a;
}

impl ClientStream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    const SECURE: bool = false;

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }

    fn unsplit(read: OwnedReadHalf, write: OwnedWriteHalf) -> Option<Self> {
        read.reunite(write).ok()
    }

    fn wait_readable<'a>(
        read: &'a mut OwnedReadHalf,
        _buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<bool>> + Send + 'a {
        // The socket's own waker slot rather than a readiness future: the wait of an idle
        // connection stays a pointer wide (the connection's task is the socket's only reader).
        let read: &'a OwnedReadHalf = read;
        std::future::poll_fn(move |cx| {
            let stream: &tokio::net::TcpStream = read.as_ref();
            stream.poll_read_ready(cx).map(|ready| ready.map(|()| true))
        })
    }
}

/// A TLS connection from a client (rustls over TCP).
pub type TlsClient = tokio_rustls::server::TlsStream<TcpStream>;

impl ClientStream for TlsClient {
    type Read = ReadHalf<TlsClient>;
    type Write = WriteHalf<TlsClient>;
    const SECURE: bool = true;

    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }

    fn unsplit(read: Self::Read, write: Self::Write) -> Option<Self> {
        if read.is_pair_of(&write) {
            Some(read.unsplit(write))
        } else {
            None
        }
    }

    async fn wait_readable(read: &mut Self::Read, buf: &mut BytesMut) -> io::Result<bool> {
        buf.reserve(4096);
        read.read_buf(buf).await.map(|n| n > 0)
    }
}
