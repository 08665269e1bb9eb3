//! MySQL packet framing, shared by the admin endpoint (server side) and the
//! binlog client (client side): 3-byte length, sequence id, and payloads of
//! 16 MiB or more continued in further chunks.
//!
//! A payload can be read whole (`read`) or piecewise (`begin`), so that a large
//! binlog event goes from the socket straight into a buffer of its final size.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

/// Payloads of this length continue in the next packet.
pub const MAX_CHUNK: usize = 0xff_ff_ff;

/// Any byte stream a connection can run over (plain TCP, or TLS after the upgrade).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("packet larger than {0} bytes")]
    TooLarge(usize),
    #[error("nothing received for {0:?}")]
    TimedOut(Duration),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// The framing state that survives a change of transport (TLS upgrade).
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    seq: u8,
    /// Largest payload `read` accepts; bounds what a peer can make us buffer.
    max_packet: usize,
    /// Longest wait for each socket read; `None` waits forever.
    read_timeout: Option<Duration>,
}

/// One connection's packet stream: owns the socket and the sequence id.
pub struct Packets {
    stream: Box<dyn Io>,
    framing: Framing,
    out: Vec<u8>,
}

impl Packets {
    pub fn new(stream: Box<dyn Io>, max_packet: usize) -> Packets {
        Packets::from_parts(
            stream,
            Framing {
                seq: 0,
                max_packet,
                read_timeout: None,
            },
        )
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.framing.read_timeout = timeout;
    }

    /// A command starts a new sequence.
    pub fn reset_seq(&mut self) {
        self.framing.seq = 0;
    }

    /// Swap the transport (TLS upgrade) keeping the sequence.
    pub fn into_parts(self) -> (Box<dyn Io>, Framing) {
        (self.stream, self.framing)
    }

    pub fn from_parts(stream: Box<dyn Io>, framing: Framing) -> Packets {
        Packets {
            stream,
            framing,
            out: Vec::new(),
        }
    }

    /// Read one logical packet (joining 16 MiB continuation chunks).
    pub async fn read(&mut self) -> Result<Vec<u8>, WireError> {
        let max = self.framing.max_packet;
        self.begin().await?.read_to_end(max).await
    }

    /// Start reading a packet piecewise: see `Payload`.
    pub async fn begin(&mut self) -> Result<Payload<'_>, WireError> {
        let mut payload = Payload {
            packets: self,
            left: 0,
            last: false,
        };
        payload.next_chunk().await?;
        Ok(payload)
    }

    /// Fill `buf` from the socket, each read within the read timeout.
    async fn fill(&mut self, mut buf: &mut [u8]) -> Result<(), WireError> {
        while !buf.is_empty() {
            let read = self.stream.read(buf);
            let n = match self.framing.read_timeout {
                Some(t) => tokio::time::timeout(t, read)
                    .await
                    .map_err(|_| WireError::TimedOut(t))??,
                None => read.await?,
            };
            if n == 0 {
                return Err(WireError::Closed);
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Queue one packet; `flush` sends everything queued.
    pub fn write(&mut self, payload: &[u8]) {
        let mut chunks = payload.chunks(MAX_CHUNK).peekable();
        if chunks.peek().is_none() {
            self.push_chunk(&[]);
        }
        while let Some(chunk) = chunks.next() {
            self.push_chunk(chunk);
            if chunk.len() == MAX_CHUNK && chunks.peek().is_none() {
                self.push_chunk(&[]);
            }
        }
    }

    fn push_chunk(&mut self, chunk: &[u8]) {
        let len = chunk.len().to_le_bytes();
        self.out.extend_from_slice(&len[..3]);
        self.out.push(self.framing.seq);
        self.framing.seq = self.framing.seq.wrapping_add(1);
        self.out.extend_from_slice(chunk);
    }

    pub async fn flush(&mut self) -> Result<(), WireError> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        self.stream.flush().await?;
        Ok(())
    }

    pub async fn shutdown(&mut self) {
        // Best effort: the peer may already be gone.
        let _ = self.stream.shutdown().await;
    }

    /// Split the connection for a peer that writes while another task reads
    /// (a semi-synchronous replica's acknowledgements on its binlog stream):
    /// these `Packets` keep reading, the `PacketWriter` sends commands.
    pub fn split(self) -> (Packets, PacketWriter) {
        let (read, write) = tokio::io::split(self.stream);
        (
            Packets::from_parts(Box::new(ReadSide(read)), self.framing),
            PacketWriter(write),
        )
    }
}

/// The read half of a split connection; its writes fail (they go through the
/// `PacketWriter`).
struct ReadSide(ReadHalf<Box<dyn Io>>);

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::Error::other(
            "this connection writes through its PacketWriter",
        )))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The write half of a split connection.
pub struct PacketWriter(WriteHalf<Box<dyn Io>>);

impl PacketWriter {
    /// Send `payload` as a packet of its own that starts a sequence (id 0),
    /// as a command or a semi-sync acknowledgement does.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), WireError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&n| (n as usize) < MAX_CHUNK)
            .ok_or(WireError::TooLarge(MAX_CHUNK - 1))?;
        let mut packet = Vec::with_capacity(4 + payload.len());
        packet.extend_from_slice(&len.to_le_bytes()[..3]);
        packet.push(0);
        packet.extend_from_slice(payload);
        self.0.write_all(&packet).await?;
        self.0.flush().await?;
        Ok(())
    }
}

/// A packet being read piecewise, across its continuation chunks.
pub struct Payload<'a> {
    packets: &'a mut Packets,
    /// Bytes not yet read from the current chunk.
    left: usize,
    /// The current chunk is the packet's last.
    last: bool,
}

impl Payload<'_> {
    async fn next_chunk(&mut self) -> Result<(), WireError> {
        let mut header = [0u8; 4];
        self.packets.fill(&mut header).await?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        self.packets.framing.seq = header[3].wrapping_add(1);
        self.left = len;
        self.last = len < MAX_CHUNK;
        Ok(())
    }

    /// Read exactly `buf.len()` bytes of the payload.
    pub async fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), WireError> {
        while !buf.is_empty() {
            if self.left == 0 {
                if self.last {
                    return Err(WireError::Malformed("payload shorter than announced"));
                }
                self.next_chunk().await?;
                continue;
            }
            let n = self.left.min(buf.len());
            let (now, rest) = buf.split_at_mut(n);
            self.packets.fill(now).await?;
            self.left -= n;
            buf = rest;
        }
        Ok(())
    }

    /// The rest of the payload, at most `max` bytes.
    pub async fn read_to_end(mut self, max: usize) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            if start + self.left > max {
                return Err(WireError::TooLarge(max));
            }
            out.resize(start + self.left, 0);
            self.read_exact(&mut out[start..]).await?;
            if self.last {
                return Ok(out);
            }
            self.next_chunk().await?;
        }
    }

    /// Check that the payload holds nothing more (reading a trailing empty chunk).
    pub async fn finish(mut self) -> Result<(), WireError> {
        loop {
            if self.left != 0 {
                return Err(WireError::Malformed("payload longer than announced"));
            }
            if self.last {
                return Ok(());
            }
            self.next_chunk().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(max: usize) -> (Packets, Packets) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            Packets::new(Box::new(a), max),
            Packets::new(Box::new(b), max),
        )
    }

    #[tokio::test]
    async fn a_split_connection_reads_on_one_half_and_writes_on_the_other() {
        let (mut peer, ours) = pair(1024).await;
        let (mut reader, mut writer) = ours.split();
        peer.write(b"event");
        peer.flush().await.expect("peer writes");
        assert_eq!(reader.read().await.expect("read half reads"), b"event");
        writer.send(b"ack").await.expect("write half writes");
        peer.reset_seq();
        assert_eq!(peer.read().await.expect("peer reads"), b"ack");
        reader.write(b"x");
        assert!(
            reader.flush().await.is_err(),
            "the read half does not write"
        );
    }

    #[tokio::test]
    async fn payloads_beyond_16_mib_cross_chunks_both_ways() {
        for len in [0, 5, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 7, 2 * MAX_CHUNK] {
            let (mut w, mut r) = pair(64 << 20).await;
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let writer = tokio::spawn(async move {
                w.write(&payload);
                w.flush().await.unwrap();
                (w, payload)
            });
            let got = r.read().await.unwrap();
            let (w, payload) = writer.await.unwrap();
            assert_eq!(got.len(), payload.len(), "len {len}");
            assert!(got == payload, "len {len}");
            // Sequence ids carry on: one per chunk, plus the empty one after a full chunk.
            assert_eq!(r.framing.seq, w.framing.seq, "len {len}");
        }
    }

    #[tokio::test]
    async fn piecewise_reads_split_anywhere_and_check_the_end() {
        let len = MAX_CHUNK + 100;
        let (mut w, mut r) = pair(1024).await;
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let expected = payload.clone();
        let writer = tokio::spawn(async move {
            w.write(&payload);
            w.write(&payload[..MAX_CHUNK]);
            w.flush().await.unwrap();
        });
        // Larger than max_packet: only piecewise reading takes it.
        let mut p = r.begin().await.unwrap();
        let mut head = [0u8; 10];
        p.read_exact(&mut head).await.unwrap();
        let mut rest = vec![0u8; len - 10];
        p.read_exact(&mut rest).await.unwrap();
        p.finish().await.unwrap();
        assert_eq!(head[..], expected[..10]);
        assert!(rest[..] == expected[10..]);

        // A payload of exactly one full chunk ends with an empty chunk.
        let mut p = r.begin().await.unwrap();
        let mut all = vec![0u8; MAX_CHUNK];
        p.read_exact(&mut all).await.unwrap();
        p.finish().await.unwrap();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn short_and_long_payloads_are_errors() {
        let (mut w, mut r) = pair(4).await;
        w.write(b"abc");
        w.write(b"abcdef");
        w.flush().await.unwrap();
        let mut p = r.begin().await.unwrap();
        let mut buf = [0u8; 4];
        assert!(matches!(
            p.read_exact(&mut buf).await,
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(r.read().await, Err(WireError::TooLarge(4))));
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_w, mut r) = pair(4).await;
        r.set_read_timeout(Some(Duration::from_millis(20)));
        assert!(matches!(r.read().await, Err(WireError::TimedOut(_))));
    }
}
