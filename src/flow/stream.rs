//! `Stream`: the initiator's first payload as its receiver will read it.
//!
//! UDP datagrams are kept in arrival order, each whole: a QUIC ClientHello spans several.
//!
//! TCP segments are put in sequence order (RFC 9293 §3.10.7.4: the receiver delivers bytes in sequence
//! and keeps segments that arrive after a gap until it fills). A segment after a gap is kept, within a
//! bound, and joins the stream when the missing bytes arrive, so a request whose segments were reordered
//! on the way (common on Wi-Fi) is read whole. Retransmissions add only the bytes past what is held.
//!
//! Overlapping copies of the same bytes must agree. When they do not, which copy the server keeps depends
//! on its TCP stack and on arrival order (the classic evasion of Ptacek and Newsham, 1998), so the bytes
//! read here might not be the bytes the server reads: that is reported as [`Added::Conflict`] and the
//! caller decides the flow without trusting its payload.

/// What adding a segment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Added {
    /// The in-order bytes grew.
    Grew,
    /// Nothing new in order (a retransmission, an empty segment, or a segment kept after a gap).
    Nothing,
    /// Overlapping copies of the same sequence numbers differ.
    Conflict,
}

/// The in-order bytes from the first payload byte, and the segments waiting after a gap; or, for UDP,
/// the datagrams.
#[derive(Debug, Default)]
pub(super) struct Stream {
    bytes: Vec<u8>,
    datagrams: Vec<Vec<u8>>,
    datagrams_len: usize,
    /// The sequence number of the byte after `bytes`, once known (after the SYN, or the first segment).
    next: Option<u32>,
    /// Segments after a gap: (sequence number, bytes), in arrival order.
    ahead: Vec<(u32, Vec<u8>)>,
    ahead_len: usize,
}

/// The signed distance from `from` to `to` in sequence space (RFC 9293 §3.4: modulo 2^32).
fn distance(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32)
}

impl Stream {
    /// The bytes read in order so far.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The datagrams so far, in arrival order.
    pub(super) fn datagrams(&self) -> &[Vec<u8>] {
        &self.datagrams
    }

    /// Bytes that can be read: in order, or in datagrams.
    pub(super) fn readable(&self) -> usize {
        self.bytes.len() + self.datagrams_len
    }

    /// Bytes held, in order, after gaps and in datagrams: what the stream costs in memory.
    pub(super) fn held(&self) -> usize {
        self.bytes.len() + self.ahead_len + self.datagrams_len
    }

    /// Adds a datagram of a datagram protocol (empty ones add nothing).
    pub(super) fn datagram(&mut self, data: &[u8]) -> Added {
        if data.is_empty() {
            return Added::Nothing;
        }
        self.datagrams.push(data.to_vec());
        self.datagrams_len += data.len();
        Added::Grew
    }

    /// Adds a TCP segment from the initiator. `window` bounds how far past the in-order bytes a segment
    /// after a gap is kept (the caller's byte budget): the bytes beyond would not be read anyway.
    pub(super) fn segment(&mut self, seq: u32, syn: bool, data: &[u8], window: usize) -> Added {
        // RFC 9293 §3.4: the SYN takes one sequence number; data on a SYN (TCP Fast Open) follows it.
        let seq = if syn {
            let first = seq.wrapping_add(1);
            if self.next.is_none() {
                self.next = Some(first);
            }
            first
        } else {
            seq
        };
        if data.is_empty() {
            return Added::Nothing;
        }
        let next = *self.next.get_or_insert(seq);
        let ahead = distance(next, seq);
        if ahead > 0 {
            return self.keep_ahead(seq, ahead, data, window);
        }
        match self.append(seq, data) {
            Added::Conflict => Added::Conflict,
            grew => match self.join_ahead() {
                Added::Conflict => Added::Conflict,
                Added::Grew => Added::Grew,
                Added::Nothing => grew,
            },
        }
    }

    /// Appends the part of a segment that starts at or before `next`; the part it repeats must agree
    /// with the bytes already read.
    fn append(&mut self, seq: u32, data: &[u8]) -> Added {
        let Some(next) = self.next else {
            return Added::Nothing;
        };
        let first = next.wrapping_sub(self.bytes.len() as u32);
        // Bytes before the first payload byte (before SYN + 1) are not part of this stream.
        let before = distance(seq, first);
        let (seq, data) = match before {
            b if b > 0 => match data.get(b as usize..) {
                Some(rest) if !rest.is_empty() => (first, rest),
                _ => return Added::Nothing,
            },
            _ => (seq, data),
        };
        // The caller only appends segments that start at or before `next`: `start <= bytes.len()`.
        let start = (distance(first, seq).max(0) as usize).min(self.bytes.len());
        let overlap = data.len().min(self.bytes.len() - start);
        if self.bytes[start..start + overlap] != data[..overlap] {
            return Added::Conflict;
        }
        let fresh = &data[overlap..];
        if fresh.is_empty() {
            return Added::Nothing;
        }
        self.bytes.extend_from_slice(fresh);
        self.next = Some(next.wrapping_add(fresh.len() as u32));
        Added::Grew
    }

    /// Keeps a segment that starts after a gap, if it starts within `window` bytes of the stream's start;
    /// where it overlaps segments already kept, they must agree.
    fn keep_ahead(&mut self, seq: u32, ahead: i64, data: &[u8], window: usize) -> Added {
        let start = self.bytes.len() as i64 + ahead;
        if start >= window as i64 || self.ahead_len >= window {
            return Added::Nothing;
        }
        let end = seq.wrapping_add(data.len() as u32);
        for (s, d) in &self.ahead {
            let e = s.wrapping_add(d.len() as u32);
            // The overlap of [seq, end) and [s, e), in sequence space.
            let lo = if distance(*s, seq) >= 0 { seq } else { *s };
            let hi = if distance(e, end) <= 0 { end } else { e };
            let len = distance(lo, hi);
            if len <= 0 {
                continue;
            }
            let (a, b) = (distance(seq, lo) as usize, distance(*s, lo) as usize);
            let len = len as usize;
            if data[a..a + len] != d[b..b + len] {
                return Added::Conflict;
            }
        }
        let keep = data.len().min(window - self.ahead_len);
        self.ahead.push((seq, data[..keep].to_vec()));
        self.ahead_len += keep;
        Added::Nothing
    }

    /// Moves kept segments that the in-order bytes have reached into the stream.
    fn join_ahead(&mut self) -> Added {
        let mut result = Added::Nothing;
        while let Some(next) = self.next {
            let Some(i) = self.ahead.iter().position(|(s, _)| distance(next, *s) <= 0) else {
                break;
            };
            let (seq, data) = self.ahead.swap_remove(i);
            self.ahead_len -= data.len();
            match self.append(seq, &data) {
                Added::Conflict => return Added::Conflict,
                Added::Grew => result = Added::Grew,
                Added::Nothing => {}
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds segments (seq, bytes) after a SYN at 99 (so the first byte is 100); returns the last result
    /// and the in-order text.
    fn feed(segments: &[(u32, &str)]) -> (Added, String) {
        let mut s = Stream::default();
        s.segment(99, true, b"", 1 << 16);
        let mut last = Added::Nothing;
        for (seq, data) in segments {
            last = s.segment(*seq, false, data.as_bytes(), 1 << 16);
            if last == Added::Conflict {
                break;
            }
        }
        (last, String::from_utf8_lossy(s.bytes()).into_owned())
    }

    #[test]
    fn in_order_segments_and_retransmissions() {
        assert_eq!(feed(&[(100, "GET / HT")]), (Added::Grew, "GET / HT".into()));
        assert_eq!(
            feed(&[(100, "GET / HT"), (100, "GET / HT")]),
            (Added::Nothing, "GET / HT".into()),
            "a retransmission adds nothing"
        );
        assert_eq!(
            feed(&[(100, "GET / HT"), (104, "/ HTTP/1")]),
            (Added::Grew, "GET / HTTP/1".into()),
            "an overlap that agrees adds what goes past"
        );
    }

    #[test]
    fn reordered_segments_are_read_whole() {
        assert_eq!(
            feed(&[(108, "TP/1.1\r\n"), (100, "GET / HT")]),
            (Added::Grew, "GET / HTTP/1.1\r\n".into()),
            "the later half first, then the gap fills"
        );
        assert_eq!(
            feed(&[(112, ".1"), (108, "TP/1"), (100, "GET / HT")]),
            (Added::Grew, "GET / HTTP/1.1".into()),
            "three segments in reverse order"
        );
        let (r, text) = feed(&[(108, "TP/1.1")]);
        assert_eq!(
            (r, text.as_str()),
            (Added::Nothing, ""),
            "kept, not read yet"
        );
    }

    #[test]
    fn overlaps_that_disagree_are_a_conflict() {
        assert_eq!(
            feed(&[(100, "GET / HT"), (104, "XXXXTP/1")]).0,
            Added::Conflict,
            "a retransmission with other bytes"
        );
        assert_eq!(
            feed(&[(108, "TP/1"), (110, "XX"), (100, "GET / HT")]).0,
            Added::Conflict,
            "two kept segments that disagree"
        );
        assert_eq!(
            feed(&[(104, "HOST"), (100, "GET / HT")]).0,
            Added::Conflict,
            "a kept segment that disagrees with the bytes that fill the gap"
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut s = Stream::default();
        s.segment(u32::MAX, true, b"", 100);
        assert_eq!(s.segment(2, false, b"cd", 100), Added::Nothing);
        assert_eq!(s.segment(0, false, b"ab", 100), Added::Grew);
        assert_eq!(s.bytes(), b"abcd");
    }

    #[test]
    fn segments_far_ahead_are_not_kept() {
        let mut s = Stream::default();
        s.segment(99, true, b"", 16);
        assert_eq!(s.segment(200, false, b"far", 16), Added::Nothing);
        assert_eq!(s.held(), 0, "beyond the window: not kept");
        assert_eq!(s.segment(108, false, b"0123456789", 16), Added::Nothing);
        assert!(s.held() <= 16);
    }

    #[test]
    fn bytes_before_the_first_payload_byte_are_not_read() {
        let mut s = Stream::default();
        s.segment(99, true, b"", 100);
        assert_eq!(s.segment(98, false, b"xyGET", 100), Added::Grew);
        assert_eq!(
            s.bytes(),
            b"GET",
            "the two bytes before SYN + 1 are dropped"
        );
    }

    #[test]
    fn without_a_syn_the_first_segment_starts_the_stream() {
        let mut s = Stream::default();
        assert_eq!(s.segment(5000, false, b"abc", 100), Added::Grew);
        assert_eq!(s.segment(5003, false, b"def", 100), Added::Grew);
        assert_eq!(s.bytes(), b"abcdef");
    }
}
