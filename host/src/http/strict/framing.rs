//! Reads an HTTP/1.1 connection's raw bytes alongside hyper to catch the
//! framing hyper quietly repairs but another server in the chain may read
//! differently (request smuggling): `Content-Length` together with
//! `Transfer-Encoding`, repeated `Content-Length` (hyper keeps one when they
//! agree), a transfer coding other than `chunked`, a list in
//! `Content-Length`. hyper never shows these in the parsed request, so the
//! watcher parses each head itself (with hyper's own parser, `httparse`)
//! and tracks body framing to find the next head.
//!
//! The watcher only judges; [`Verdicts::for_request`] lets the service
//! answer the offending request with 400 and close the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first framing violation on a connection: which request, what kind.
#[derive(Debug)]
pub struct Verdicts {
    /// Index (0-based) of the first offending request; `u64::MAX` for none.
    request: AtomicU64,
    violation: AtomicU8,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            request: AtomicU64::new(u64::MAX),
            violation: AtomicU8::new(0),
        }
    }
}

impl Verdicts {
    /// The violation of the connection's `index`-th request, if it had one.
    pub fn for_request(&self, index: u64) -> Option<Violation> {
        if self.request.load(Ordering::Acquire) != index {
            return None;
        }
        Violation::from_code(self.violation.load(Ordering::Relaxed))
    }

    fn record(&self, index: u64, violation: Violation) {
        self.violation.store(violation as u8, Ordering::Relaxed);
        self.request.store(index, Ordering::Release);
    }
}

/// Framing another HTTP implementation could read differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[repr(u8)]
pub enum Violation {
    #[error("the request has both Content-Length and Transfer-Encoding")]
    LengthAndTransferEncoding = 1,
    #[error("the request has more than one Content-Length")]
    RepeatedContentLength,
    #[error("Content-Length is not a single decimal number")]
    BadContentLength,
    #[error("the only transfer coding accepted is a single `chunked`")]
    TransferEncoding,
}

impl Violation {
    fn from_code(code: u8) -> Option<Violation> {
        [
            Violation::LengthAndTransferEncoding,
            Violation::RepeatedContentLength,
            Violation::BadContentLength,
            Violation::TransferEncoding,
        ]
        .into_iter()
        .find(|v| *v as u8 == code)
    }
}

/// Where in the byte stream the watcher is.
#[derive(Debug)]
enum State {
    Head,
    /// Bytes of a `Content-Length` body still to come.
    Body(u64),
    Chunked(Chunk),
    /// Not HTTP/1.1 framing any more (h2, an upgrade, a violation, or
    /// bytes hyper refuses too): nothing more to judge.
    Off,
}

#[derive(Debug)]
enum Chunk {
    /// Reading the chunk-size line.
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// At the start of a trailer line (an empty one ends the body).
    TrailerStart,
    TrailerLine,
}

/// The longest chunk-size line (with extensions) tracked; hyper refuses longer.
const MAX_CHUNK_LINE: usize = 4096;
/// Headers parsed per head; hyper refuses a head with more.
const MAX_HEADERS: usize = 100;

/// Parses the framing of one connection's requests as they arrive.
#[derive(Debug)]
pub struct FramingWatch {
    verdicts: Arc<Verdicts>,
    state: State,
    /// A head or chunk-size line split across reads.
    pending: Vec<u8>,
    /// Heads seen so far: the index of the next request.
    heads: u64,
    max_head: usize,
}

impl FramingWatch {
    /// A watcher for a new connection whose heads hyper caps at `max_head` bytes.
    pub fn new(max_head: usize) -> (FramingWatch, Arc<Verdicts>) {
        let verdicts = Arc::new(Verdicts::default());
        let watch = FramingWatch {
            verdicts: verdicts.clone(),
            state: State::Head,
            pending: Vec::new(),
            heads: 0,
            max_head,
        };
        (watch, verdicts)
    }

    /// Follows `data`, the next bytes the client sent.
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.heads == 0 && self.pending.is_empty() && data.starts_with(b"PRI * HTTP/2.0") {
            self.state = State::Off;
        }
        while !data.is_empty() {
            data = match &mut self.state {
                State::Off => return,
                State::Head => self.head(data),
                State::Body(left) => {
                    let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    &data[n..]
                }
                State::Chunked(_) => self.chunked(data),
            };
        }
    }

    /// Parses a head once it is complete; returns the bytes after it.
    fn head<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let (parsed, rest) = if self.pending.is_empty() {
            match request.parse(data) {
                Ok(httparse::Status::Complete(n)) => (framing_of(&request), &data[n..]),
                Ok(httparse::Status::Partial) => {
                    self.pending.extend_from_slice(data);
                    self.check_pending_size();
                    return &[];
                }
                Err(_) => {
                    self.state = State::Off;
                    return &[];
                }
            }
        } else {
            let before = self.pending.len();
            self.pending.extend_from_slice(data);
            match request.parse(&self.pending) {
                Ok(httparse::Status::Complete(n)) => {
                    let framing = framing_of(&request);
                    (framing, &data[n - before..])
                }
                Ok(httparse::Status::Partial) => {
                    self.check_pending_size();
                    return &[];
                }
                Err(_) => {
                    self.state = State::Off;
                    return &[];
                }
            }
        };
        self.pending.clear();
        let index = self.heads;
        self.heads += 1;
        self.state = match parsed {
            Err(violation) => {
                self.verdicts.record(index, violation);
                State::Off
            }
            Ok(Framing::Upgrade) => State::Off,
            Ok(Framing::None) | Ok(Framing::Length(0)) => State::Head,
            Ok(Framing::Length(n)) => State::Body(n),
            Ok(Framing::Chunked) => State::Chunked(Chunk::Size),
        };
        rest
    }

    fn check_pending_size(&mut self) {
        if self.pending.len() > self.max_head {
            self.state = State::Off;
            self.pending = Vec::new();
        }
    }

    /// Follows chunked framing; returns the bytes not consumed yet.
    fn chunked<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let State::Chunked(chunk) = &mut self.state else {
            return data;
        };
        match chunk {
            Chunk::Size => {
                let Some(end) = data.iter().position(|&b| b == b'\n') else {
                    self.pending.extend_from_slice(data);
                    if self.pending.len() > MAX_CHUNK_LINE {
                        self.state = State::Off;
                    }
                    return &[];
                };
                self.pending.extend_from_slice(&data[..=end]);
                let size = chunk_size(&self.pending);
                self.pending.clear();
                *chunk = match size {
                    Some(0) => Chunk::TrailerStart,
                    Some(n) => Chunk::Data(n),
                    None => {
                        self.state = State::Off;
                        return &[];
                    }
                };
                &data[end + 1..]
            }
            Chunk::Data(left) => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
                &data[n..]
            }
            Chunk::DataEnd => {
                if data[0] == b'\n' {
                    *chunk = Chunk::Size;
                }
                &data[1..]
            }
            Chunk::TrailerStart => {
                match data[0] {
                    b'\r' => {}
                    b'\n' => self.state = State::Head,
                    _ => *chunk = Chunk::TrailerLine,
                }
                &data[1..]
            }
            Chunk::TrailerLine => match data.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    *chunk = Chunk::TrailerStart;
                    &data[end + 1..]
                }
                None => &[],
            },
        }
    }
}

/// How a request's body is framed, as far as it matters to find the next head.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Upgrade or CONNECT: the bytes after the head may not be HTTP.
    Upgrade,
}

/// Judges one parsed head's framing headers.
fn framing_of(request: &httparse::Request) -> Result<Framing, Violation> {
    let mut length = None;
    let mut lengths = 0;
    let mut codings = 0;
    let mut chunked = false;
    let mut upgrade = request.method == Some("CONNECT");
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            let value = std::str::from_utf8(header.value).unwrap_or("").trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Violation::BadContentLength);
            }
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| Violation::BadContentLength)?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings += 1;
            chunked = header.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if lengths > 0 && codings > 0 {
        return Err(Violation::LengthAndTransferEncoding);
    }
    if lengths > 1 {
        return Err(Violation::RepeatedContentLength);
    }
    if codings > 1 || codings == 1 && !chunked {
        return Err(Violation::TransferEncoding);
    }
    Ok(if upgrade {
        Framing::Upgrade
    } else if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    })
}

/// The size in a chunk-size line (`1a;ext=x\r\n`), if it is one.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(text, 16).ok()
}

/// A client connection whose reads go through a [`FramingWatch`].
pub struct Watched<I> {
    inner: I,
    watch: FramingWatch,
}

impl<I> Watched<I> {
    pub fn new(inner: I, watch: FramingWatch) -> Watched<I> {
        Watched { inner, watch }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.watch.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
    use super::*;

    fn verdicts(stream: &[&[u8]]) -> (Vec<Option<Violation>>, u64) {
        let (mut watch, verdicts) = FramingWatch::new(64 * 1024);
        for part in stream {
            watch.feed(part);
        }
        let found = (0..watch.heads).map(|i| verdicts.for_request(i)).collect();
        (found, watch.heads)
    }

    #[test]
    fn length_with_transfer_encoding_is_flagged_in_either_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        ] {
            assert_eq!(
                verdicts(&[head]).0,
                vec![Some(Violation::LengthAndTransferEncoding)]
            );
        }
    }

    #[test]
    fn repeated_or_listed_lengths_and_other_codings_are_flagged() {
        let cases: [(&[u8], Violation); 4] = [
            (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", Violation::RepeatedContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", Violation::BadContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Violation::TransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::TransferEncoding),
        ];
        for (head, violation) in cases {
            assert_eq!(verdicts(&[head]).0, vec![Some(violation)]);
        }
    }

    #[test]
    fn bodies_are_skipped_to_find_the_next_head_across_split_reads() {
        let stream: &[&[u8]] = &[
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Len",
            b"gth: 5\r\n\r\nhel",
            b"loPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nCon\r\n",
            b"0\r\nX-Trailer: 1\r\n\r\nGET /c HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        let (found, heads) = verdicts(stream);
        assert_eq!(heads, 3);
        assert_eq!(
            found,
            vec![None, None, Some(Violation::LengthAndTransferEncoding)]
        );
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_not_judged() {
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let (found, heads) = verdicts(&[head.as_bytes(), body]);
        assert_eq!((found, heads), (vec![None], 1));
    }

    #[test]
    fn h2_and_upgrades_stop_the_watch() {
        let (_, heads) = verdicts(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert_eq!(heads, 0);
        let (found, heads) = verdicts(&[
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!((found, heads), (vec![None], 1));
    }
}
