//! Bounded line splitting for agent pipes (stdout, heartbeat fd).
//!
//! A pipe is drained continuously whatever the agent prints, so the splitter never holds more than
//! `max_line_bytes` of a partial line: a line that grows past the bound is counted as oversized and
//! the rest of it is skipped up to the next newline, without being buffered. Lines are handed out
//! without their `\n` (and without the `\r` of a `\r\n`).
//!
//! The bound applies to the bytes of a line before its `\n`; a `\r` right before the `\n` counts
//! towards it, so a line of exactly `max_line_bytes` followed by `\r\n` is oversized.

/// One item produced by [`LineSplitter::push_each`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line, without its line ending.
    Complete(&'a [u8]),
    /// A line outgrew the bound: it is dropped (reported once, when the bound is crossed; the rest
    /// of it up to the next newline is skipped silently).
    Oversized,
}

/// Splits a byte stream into lines with bounded memory.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    buf: Vec<u8>,
    skipping: bool,
    lines: u64,
    oversized: u64,
    skipped_bytes: u64,
}

impl LineSplitter {
    /// A splitter that keeps at most `max_line_bytes` of a partial line (at least 1).
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            max_line_bytes: max_line_bytes.max(1),
            buf: Vec::new(),
            skipping: false,
            lines: 0,
            oversized: 0,
            skipped_bytes: 0,
        }
    }

    /// The bound this splitter was built with.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Complete lines handed out so far (including a trailing line returned by `finish`).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Lines dropped because they outgrew the bound.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Bytes thrown away as parts of oversized lines.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    /// Bytes of the current partial line held in memory (never more than the bound).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Memory reserved for the partial line (never more than the bound).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether the splitter is inside an oversized line, skipping to the next newline.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// Feed bytes; returns the lines they completed, as owned copies.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.push_each(data, |line| {
            if let Line::Complete(l) = line {
                out.push(l.to_vec());
            }
        });
        out
    }

    /// Feed bytes; calls `on_line` for every line they complete and for every line that crosses
    /// the bound. Complete lines that lie wholly inside `data` are passed without copying.
    pub fn push_each<F: FnMut(Line<'_>)>(&mut self, data: &[u8], mut on_line: F) {
        let mut rest = data;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let seg = &rest[..i];
                    rest = &rest[i + 1..];
                    if self.skipping {
                        self.skipped_bytes += seg.len() as u64 + 1;
                        self.skipping = false;
                    } else if self.buf.len() + seg.len() > self.max_line_bytes {
                        self.skipped_bytes += (self.buf.len() + seg.len()) as u64 + 1;
                        self.buf.clear();
                        self.oversized += 1;
                        on_line(Line::Oversized);
                    } else if self.buf.is_empty() {
                        self.lines += 1;
                        on_line(Line::Complete(strip_cr(seg)));
                    } else {
                        self.append(seg);
                        self.lines += 1;
                        on_line(Line::Complete(strip_cr(&self.buf)));
                        self.buf.clear();
                    }
                }
                None => {
                    if self.skipping {
                        self.skipped_bytes += rest.len() as u64;
                    } else if self.buf.len() + rest.len() > self.max_line_bytes {
                        self.skipped_bytes += (self.buf.len() + rest.len()) as u64;
                        self.buf.clear();
                        self.skipping = true;
                        self.oversized += 1;
                        on_line(Line::Oversized);
                    } else {
                        self.append(rest);
                    }
                    break;
                }
            }
        }
    }

    /// End of stream: returns the trailing partial line, if any (an oversized tail was already
    /// reported and is not returned). The splitter is ready for a new stream afterwards; counters
    /// are kept.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let was_skipping = std::mem::replace(&mut self.skipping, false);
        if was_skipping || self.buf.is_empty() {
            self.buf.clear();
            return None;
        }
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.lines += 1;
        Some(line)
    }

    /// Append to the partial line, growing the buffer no further than the bound (the caller has
    /// checked that `buf.len() + seg.len() <= max_line_bytes`).
    fn append(&mut self, seg: &[u8]) {
        let needed = self.buf.len() + seg.len();
        if needed > self.buf.capacity() {
            let target = needed
                .max(self.buf.capacity().saturating_mul(2))
                .max(64)
                .min(self.max_line_bytes);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(seg);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', head)) => head,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_chunks(s: &mut LineSplitter, data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            out.extend(s.push(c));
            assert!(s.buffered() <= s.max_line_bytes());
            assert!(s.buffer_capacity() <= s.max_line_bytes());
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let mut s = LineSplitter::new(100);
        let out = s.push(b"one\ntwo\r\n\nthree");
        assert_eq!(out, vec![b"one".to_vec(), b"two".to_vec(), b"".to_vec()]);
        assert_eq!(s.buffered(), 5);
        assert_eq!(s.finish(), Some(b"three".to_vec()));
        assert_eq!(s.finish(), None);
        assert_eq!(s.lines(), 4);
        assert_eq!(s.oversized(), 0);
    }

    #[test]
    fn lone_cr_inside_a_line_is_kept() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.push(b"a\rb\n"), vec![b"a\rb".to_vec()]);
    }

    #[test]
    fn crlf_split_across_chunks() {
        let mut s = LineSplitter::new(100);
        assert!(s.push(b"abc\r").is_empty());
        assert_eq!(s.push(b"\nd"), vec![b"abc".to_vec()]);
        assert_eq!(s.finish(), Some(b"d".to_vec()));
    }

    #[test]
    fn trailing_cr_at_eof_is_stripped() {
        let mut s = LineSplitter::new(100);
        assert!(s.push(b"tail\r").is_empty());
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
    }

    #[test]
    fn any_chunking_gives_the_same_lines() {
        let data = b"alpha\r\nbeta\n\ngamma delta\nepsilon";
        let mut whole = LineSplitter::new(64);
        let mut expected = whole.push(data);
        expected.extend(whole.finish());
        for chunk in 1..=data.len() {
            let mut s = LineSplitter::new(64);
            let mut got = feed_chunks(&mut s, data, chunk);
            got.extend(s.finish());
            assert_eq!(got, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn line_exactly_at_the_bound_passes_one_over_is_dropped() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"abcd\n"), vec![b"abcd".to_vec()]);
        assert_eq!(s.push(b"abcde\nok\n"), vec![b"ok".to_vec()]);
        assert_eq!(s.oversized(), 1);
        assert_eq!(s.skipped_bytes(), 6);
        // The \r counts towards the bound.
        assert_eq!(s.push(b"abcd\r\nok\n"), vec![b"ok".to_vec()]);
        assert_eq!(s.oversized(), 2);
    }

    #[test]
    fn oversized_line_is_reported_once_when_the_bound_is_crossed() {
        let mut s = LineSplitter::new(8);
        let mut events = Vec::new();
        for chunk in [&b"0123"[..], b"4567", b"89", b"abcdef", b"ghi\nnext\n"] {
            s.push_each(chunk, |l| {
                events.push(match l {
                    Line::Complete(x) => String::from_utf8_lossy(x).into_owned(),
                    Line::Oversized => "<oversized>".into(),
                })
            });
        }
        assert_eq!(events, vec!["<oversized>", "next"]);
        assert_eq!(s.oversized(), 1);
        assert!(!s.is_skipping());
        assert_eq!(s.skipped_bytes(), 20);
    }

    #[test]
    fn oversized_tail_at_eof_is_not_returned() {
        let mut s = LineSplitter::new(4);
        assert!(s.push(b"ok\n0123456789").len() == 1);
        assert!(s.is_skipping());
        assert_eq!(s.finish(), None);
        assert_eq!(s.oversized(), 1);
        assert_eq!(s.push(b"new\n"), vec![b"new".to_vec()]);
    }

    #[test]
    fn ten_megabyte_line_keeps_memory_bounded() {
        const MIB: usize = 1024 * 1024;
        let mut s = LineSplitter::new(MIB);
        let block = vec![b'x'; 64 * 1024 - 1];
        let mut lines = s.push(b"{\"type\":\"before\"}\n");
        for _ in 0..160 {
            // 160 blocks of 64 KiB: a 10 MiB line, fed the way a pipe reader would.
            lines.extend(s.push(&block));
            lines.extend(s.push(b"y"));
            assert!(s.buffered() <= MIB);
            assert!(s.buffer_capacity() <= MIB);
        }
        lines.extend(s.push(b"\n{\"type\":\"after\"}\n"));
        assert_eq!(
            lines,
            vec![
                b"{\"type\":\"before\"}".to_vec(),
                b"{\"type\":\"after\"}".to_vec()
            ]
        );
        assert_eq!(s.oversized(), 1);
        assert_eq!(s.skipped_bytes(), 10 * MIB as u64 + 1);
        assert!(s.buffer_capacity() <= MIB);
    }

    #[test]
    fn ten_megabyte_line_in_one_push() {
        const MIB: usize = 1024 * 1024;
        let mut s = LineSplitter::new(MIB);
        let mut data = vec![b'z'; 10 * MIB];
        data.extend_from_slice(b"\nafter\n");
        assert_eq!(s.push(&data), vec![b"after".to_vec()]);
        assert_eq!(s.oversized(), 1);
        assert_eq!(s.buffer_capacity(), 0);
    }

    #[test]
    fn zero_bound_is_raised_to_one() {
        let mut s = LineSplitter::new(0);
        assert_eq!(s.push(b"a\nbb\n"), vec![b"a".to_vec()]);
        assert_eq!(s.oversized(), 1);
    }
}
