//! Just enough HTTP/1.1 for a load generator: a keep-alive POST client, a chunked-body decoder
//! and an incremental SSE parser. Small buffers, no allocation per event once warm.

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::tls::{Conn, Tls};

/// A response head: status and how its body is framed.
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
}

/// Reads a response head from `stream` into `buf`, leaving any body bytes in `buf`.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<Head> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or("");
            let status = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .context("bad status line")?;
            let mut chunked = false;
            let mut content_length = None;
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().ok();
                }
            }
            buf.advance(end + 4);
            return Ok(Head {
                status,
                chunked,
                content_length,
            });
        }
        if buf.len() > 64 * 1024 {
            bail!("response head too large");
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed before the response head");
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive connection for the admin calls the publishers make (`POST`, `PUT`).
pub struct Client {
    stream: Conn,
    host: String,
    buf: BytesMut,
    req: Vec<u8>,
    body: Vec<u8>,
}

impl Client {
    pub async fn connect(host: &str, port: u16) -> Result<Client> {
        Client::connect_with(host, port, None).await
    }

    /// As `connect`, over TLS when given.
    pub async fn connect_with(host: &str, port: u16, tls: Option<&Tls>) -> Result<Client> {
        let stream = Conn::connect(host, port, tls)
            .await
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        Ok(Client {
            stream,
            host: format!("{host}:{port}"),
            buf: BytesMut::with_capacity(16 * 1024),
            req: Vec::with_capacity(1024),
            body: Vec::new(),
        })
    }

    /// Sends one `POST` and returns the status and the whole body.
    pub async fn post(&mut self, path: &str, bearer: &str, body: &[u8]) -> Result<(u16, &[u8])> {
        self.request("POST", path, bearer, body).await
    }

    /// Sends one `PUT` and returns the status and the whole body.
    pub async fn put(&mut self, path: &str, bearer: &str, body: &[u8]) -> Result<(u16, &[u8])> {
        self.request("PUT", path, bearer, body).await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: &[u8],
    ) -> Result<(u16, &[u8])> {
        self.req.clear();
        use std::io::Write;
        write!(
            self.req,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {bearer}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req).await?;
        let head = read_head(&mut self.stream, &mut self.buf).await?;
        self.body.clear();
        if head.chunked {
            let mut dechunk = Dechunk::default();
            loop {
                let done = dechunk.feed(&mut self.buf, |part| self.body.extend_from_slice(part))?;
                if done {
                    break;
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("connection closed mid-body");
                }
            }
        } else {
            let len = head.content_length.unwrap_or(0);
            while self.buf.len() < len {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("connection closed mid-body");
                }
            }
            self.body.extend_from_slice(&self.buf[..len]);
            self.buf.advance(len);
        }
        Ok((head.status, &self.body))
    }
}

/// Incremental decoder of `Transfer-Encoding: chunked`.
#[derive(Default)]
pub struct Dechunk {
    state: ChunkState,
}

#[derive(Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    Crlf,
    Done,
}

impl Dechunk {
    /// Consumes what it can from `buf`, handing body bytes to `out`. True once the last chunk
    /// has been read.
    pub fn feed(&mut self, buf: &mut BytesMut, mut out: impl FnMut(&[u8])) -> Result<bool> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(true),
                ChunkState::Size => {
                    let Some(end) = find(buf, b"\r\n") else {
                        if buf.len() > 1024 {
                            bail!("chunk size line too long");
                        }
                        return Ok(false);
                    };
                    let line = std::str::from_utf8(&buf[..end]).context("chunk size")?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).context("chunk size")?;
                    buf.advance(end + 2);
                    self.state = if size == 0 {
                        // Trailers are not used by anything here; the final CRLF follows.
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let n = left.min(buf.len());
                    out(&buf[..n]);
                    buf.advance(n);
                    self.state = if n == left {
                        ChunkState::Crlf
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::Crlf => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
            }
        }
    }
}

/// Incremental `text/event-stream` parser: hands each event's `data` (lines joined with `\n`)
/// to the caller.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8])) {
        while let Some(nl) = input.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.line_done(&input[..nl], on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&input[..nl]);
                self.line_done(&line, on_event);
                line.clear();
                self.line = line;
            }
            input = &input[nl + 1..];
        }
        self.line.extend_from_slice(input);
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
        } else if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(rest);
            self.has_data = true;
        }
        // `id:`, `retry:`, `event:` and comments: the envelope already carries the number.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_sse_split_anywhere_decodes_the_same() {
        let body = "retry: 3000\n\ndata: {\"a\":1}\n\nid: 5\ndata: {\"b\":\ndata: 2}\n\n";
        let mut wire = Vec::new();
        for part in [&body[..10], &body[10..31], &body[31..]] {
            wire.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        for split in 0..wire.len() {
            let mut d = Dechunk::default();
            let mut p = SseParser::default();
            let mut events = Vec::new();
            let mut buf = BytesMut::new();
            let mut done = false;
            for piece in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(piece);
                done = d
                    .feed(&mut buf, |b| {
                        p.feed(b, &mut |e| {
                            events.push(String::from_utf8_lossy(e).into_owned())
                        })
                    })
                    .unwrap();
            }
            assert!(done);
            assert_eq!(events, ["{\"a\":1}", "{\"b\":\n2}"], "split at {split}");
        }
    }
}
