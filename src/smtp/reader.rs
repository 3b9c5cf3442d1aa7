//! The buffered reader of an SMTP session: a small buffer while the
//! session waits for commands (most connections, most of the time), a
//! large one only while a mail's DATA streams in.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Buffer of a session between mails: a command line or a few pipelined
/// ones. Longer lines are read in pieces.
pub const COMMAND_BUFFER: usize = 1024;
/// Buffer while DATA streams in: few reads per mail.
pub const DATA_BUFFER: usize = 64 * 1024;

pub struct Reader<S> {
    inner: S,
    /// Read bytes; those from `pos` on are not consumed yet.
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    pub fn new(inner: S) -> Self {
        Reader {
            inner,
            buf: Vec::with_capacity(COMMAND_BUFFER),
            pos: 0,
        }
    }

    /// The bytes not consumed yet, reading more when there are none;
    /// empty at the end of the stream.
    pub async fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.inner.read_buf(&mut self.buf).await?;
        }
        Ok(self.buffer())
    }

    pub fn buffer(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub fn consume(&mut self, used: usize) {
        self.pos = (self.pos + used).min(self.buf.len());
    }

    /// Sizes the buffer for what comes next (unconsumed bytes are kept).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        if capacity > self.buf.capacity() {
            self.buf.reserve_exact(capacity - self.buf.len());
        } else {
            self.buf.shrink_to(capacity);
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn keeps_unconsumed_bytes_across_resizes() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let mut reader = Reader::new(server);
        client
            .write_all(b"EHLO a\r\nDATA\r\nrest")
            .await
            .expect("write");
        assert_eq!(
            reader.fill_buf().await.expect("read"),
            b"EHLO a\r\nDATA\r\nrest"
        );
        reader.consume(8);
        reader.set_capacity(DATA_BUFFER);
        assert!(reader.capacity() >= DATA_BUFFER);
        assert_eq!(reader.fill_buf().await.expect("read"), b"DATA\r\nrest");
        reader.consume(10);
        let big = vec![b'x'; 100_000];
        client.write_all(&big).await.expect("write");
        let got = reader.fill_buf().await.expect("read").len();
        assert!(got > COMMAND_BUFFER && got <= DATA_BUFFER, "{got}");
        reader.consume(got);
        reader.set_capacity(COMMAND_BUFFER);
        assert!(reader.capacity() < DATA_BUFFER, "{}", reader.capacity());
        let mut seen = 0;
        while seen < big.len() - got {
            let n = reader.fill_buf().await.expect("read").len();
            assert!(n > 0 && n <= COMMAND_BUFFER.max(reader.capacity()));
            reader.consume(n);
            seen += n;
        }
        drop(client);
        assert!(reader.fill_buf().await.expect("eof").is_empty());
    }
}
