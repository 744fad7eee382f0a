//! Framing on a libp2p stream: a 4-byte big-endian length, then the frame. A frame over
//! the reader's limit (at most [`MAX_FRAME`]) is refused before anything is allocated;
//! a frame is read in pieces of [`READ_CHUNK`], so memory grows only as bytes arrive,
//! and must arrive within [`FRAME_TIMEOUT`] of its length.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;
use std::time::Duration;

use super::limits::{FRAME_TIMEOUT, READ_CHUNK};

/// Largest frame: the largest sync message (see [`crate::core::limits`]).
pub const MAX_FRAME: usize = crate::core::limits::MAX_FRAME;

/// Reads one frame of at most `max` bytes (never more than [`MAX_FRAME`]), waiting up to
/// `wait` for it to begin; `None` on a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    wait: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(wait, r.read_exact(&mut len)).await {
        Err(_) => return Err(timed_out("no frame arrived in time")),
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > max.min(MAX_FRAME) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {n} bytes is too large"),
        ));
    }
    match tokio::time::timeout(FRAME_TIMEOUT, read_body(r, n)).await {
        Ok(body) => body.map(Some),
        Err(_) => Err(timed_out("a frame did not arrive in time")),
    }
}

/// Reads `n` bytes, growing the buffer only as they arrive (at most doubling, never past
/// `n`).
async fn read_body<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n.min(READ_CHUNK));
    while buf.len() < n {
        let start = buf.len();
        let want = (n - start).min(READ_CHUNK);
        if buf.capacity() < start + want {
            let target = (buf.capacity() * 2).max(start + want).min(n);
            buf.reserve_exact(target - start);
        }
        buf.resize(start + want, 0);
        let got = r.read(&mut buf[start..]).await?;
        buf.truncate(start + got);
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf)
}

/// Writes one frame; the peer must take it within [`FRAME_TIMEOUT`].
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    if frame.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let send = async {
        w.write_all(&(frame.len() as u32).to_be_bytes()).await?;
        w.write_all(frame).await?;
        w.flush().await
    };
    tokio::time::timeout(FRAME_TIMEOUT, send)
        .await
        .map_err(|_| timed_out("the peer did not take a frame in time"))?
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that has `declared` bytes of frame announced but only `sent` of them.
    fn frame(declared: u32, sent: usize) -> futures::io::Cursor<Vec<u8>> {
        let mut bytes = declared.to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, sent));
        futures::io::Cursor::new(bytes)
    }

    #[tokio::test]
    async fn a_frame_round_trips_in_pieces() {
        let body: Vec<u8> = (0..3 * READ_CHUNK + 5).map(|i| i as u8).collect();
        let mut out = futures::io::Cursor::new(Vec::new());
        write(&mut out, &body).await.unwrap();
        let mut input = futures::io::Cursor::new(out.into_inner());
        let got = read(&mut input, MAX_FRAME, FRAME_TIMEOUT).await.unwrap();
        assert_eq!(got, Some(body));
        assert_eq!(
            read(&mut input, MAX_FRAME, FRAME_TIMEOUT).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn attack_oversized_and_truncated_frames_are_refused() {
        let mut big = frame(1000, 1000);
        let e = read(&mut big, 999, FRAME_TIMEOUT).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut huge = frame(MAX_FRAME as u32 + 1, 0);
        let e = read(&mut huge, usize::MAX, FRAME_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Declares the largest frame, sends 10 bytes and ends: an error, not a hang, and
        // no 8 MiB buffer on the way.
        let mut short = frame(MAX_FRAME as u32, 10);
        let e = read(&mut short, MAX_FRAME, FRAME_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_frame_that_never_begins_times_out() {
        let (_keep_open, mut silent) = stalled(Vec::new());
        let e = read(&mut silent, MAX_FRAME, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    /// A reader that yields `bytes`, then waits forever (its writer is kept open).
    fn stalled(
        bytes: Vec<u8>,
    ) -> (
        futures::channel::mpsc::Sender<io::Result<Vec<u8>>>,
        impl AsyncRead + Unpin,
    ) {
        use futures::TryStreamExt;
        let (mut tx, rx) = futures::channel::mpsc::channel(1);
        tx.try_send(Ok(bytes)).unwrap();
        (tx, rx.into_async_read())
    }
}
