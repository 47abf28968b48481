//! Message content: the DATA reader (end-of-data detection, dot-unstuffing)
//! and the BDAT chunk reader, both writing into a size-limited [`Body`]
//! with every line ending normalised to CRLF.
//!
//! # End of data (SMTP smuggling)
//!
//! DATA ends only on the exact sequence CR LF `.` CR LF, where the message
//! start counts as following a CR LF (so `.` CR LF alone is an empty
//! message). A bare CR or a bare LF is never a line ending for this purpose:
//! `\n.\n`, `\r.\r\n`, `\r\n.\r\r\n`, `\r\n\0.\r\n` and the like are content.
//! Servers and filters that disagree on where a message ends are what SMTP
//! smuggling exploits; refusing every variant but the RFC 5321 one (and
//! normalising the body so nothing downstream sees a bare CR or LF either)
//! closes that gap.
//!
//! # Normalisation
//!
//! In the body handed to the driver, CR LF stays CR LF, and every bare CR
//! and every bare LF becomes CR LF. A line that starts (after a real CR LF)
//! with `.` loses that dot (RFC 5321 §4.5.2), whatever follows it; a dot
//! after a bare CR or LF is kept, since that is not a line start on the
//! wire. BDAT content is not dot-stuffed (RFC 3030) but gets the same line
//! ending normalisation, across chunk boundaries, so the driver sees one
//! body format whichever way the message came.

/// A message body under construction, limited to `limit` octets.
///
/// Once the content exceeds the limit the buffer is dropped and further
/// content is only counted, so a session never holds more than the limit.
#[derive(Debug, Default)]
pub(crate) struct Body {
    buf: Vec<u8>,
    limit: usize,
    overflow: bool,
}

impl Body {
    /// Initial capacity never exceeds this, whatever SIZE the client
    /// declares: the declaration costs the client nothing.
    const MAX_INITIAL_CAPACITY: usize = 1024 * 1024;

    /// An empty body limited to `limit` octets, with room for
    /// `declared` octets (capped).
    pub(crate) fn new(limit: usize, declared: Option<usize>) -> Self {
        let capacity = declared
            .unwrap_or(0)
            .clamp(4096, Self::MAX_INITIAL_CAPACITY)
            .min(limit);
        Self {
            buf: Vec::with_capacity(capacity),
            limit,
            overflow: false,
        }
    }

    /// Appends `bytes`, or marks the body as too large.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.overflow || bytes.is_empty() {
            return;
        }
        if self.buf.len().saturating_add(bytes.len()) > self.limit {
            self.overflow = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Whether the content went past the limit.
    pub(crate) fn is_overflow(&self) -> bool {
        self.overflow
    }

    /// The content, moved out.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

const CRLF: &[u8] = b"\r\n";

/// Where the DATA reader is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DotState {
    /// Just after CR LF, or at the start of the message.
    LineStart,
    /// Read `.` at a line start.
    Dot,
    /// Read `.` CR at a line start: LF now ends the message.
    DotCr,
    /// Inside a line.
    Text,
    /// Read CR inside a line: LF now ends the line.
    Cr,
}

impl DotState {
    /// The state at the start of the message (which counts as a line start).
    pub(crate) const START: DotState = DotState::LineStart;
}

/// Reads DATA content from `input` into `body`. Returns how many bytes were
/// consumed and whether the end-of-data sequence was among them; bytes after
/// it are left unconsumed (they are the next command).
pub(crate) fn read_dot(state: &mut DotState, input: &[u8], body: &mut Body) -> (usize, bool) {
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        match *state {
            DotState::Text => {
                let rest = input.get(i..).unwrap_or_default();
                match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                    None => {
                        body.push(rest);
                        return (input.len(), false);
                    }
                    Some(at) => {
                        body.push(rest.get(..at).unwrap_or_default());
                        i += at + 1;
                        if rest.get(at) == Some(&b'\r') {
                            *state = DotState::Cr;
                        } else {
                            // Bare LF: a line break in the body, not on the wire.
                            body.push(CRLF);
                        }
                    }
                }
            }
            DotState::Cr => {
                body.push(CRLF);
                if byte == b'\n' {
                    i += 1;
                    *state = DotState::LineStart;
                } else {
                    // Bare CR: normalised, and `byte` is read again as text.
                    *state = DotState::Text;
                }
            }
            DotState::LineStart => {
                if byte == b'.' {
                    i += 1;
                    *state = DotState::Dot;
                } else {
                    *state = DotState::Text;
                }
            }
            DotState::Dot => {
                if byte == b'\r' {
                    i += 1;
                    *state = DotState::DotCr;
                } else {
                    // A stuffed dot: dropped; `byte` is read again as text.
                    *state = DotState::Text;
                }
            }
            DotState::DotCr => {
                if byte == b'\n' {
                    return (i + 1, true);
                }
                // `.` CR followed by something else: the dot was stuffing,
                // the CR is bare.
                body.push(CRLF);
                *state = DotState::Text;
            }
        }
    }
    (i, false)
}

/// Normalises the line endings of BDAT chunks, remembering a CR at the end
/// of one chunk so that a CR LF split across chunks stays one line ending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChunkNormalizer {
    pending_cr: bool,
}

impl ChunkNormalizer {
    /// Appends `input` to `body` with bare CR and bare LF turned into CR LF.
    pub(crate) fn push(&mut self, input: &[u8], body: &mut Body) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                body.push(CRLF);
                if rest.first() == Some(&b'\n') {
                    rest = rest.get(1..).unwrap_or_default();
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    body.push(rest);
                    return;
                }
                Some(at) => {
                    body.push(rest.get(..at).unwrap_or_default());
                    if rest.get(at) == Some(&b'\r') {
                        self.pending_cr = true;
                    } else {
                        body.push(CRLF);
                    }
                    rest = rest.get(at + 1..).unwrap_or_default();
                }
            }
        }
    }

    /// Ends the message: a CR left at the very end becomes CR LF.
    pub(crate) fn finish(&mut self, body: &mut Body) {
        if std::mem::take(&mut self.pending_cr) {
            body.push(CRLF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut state = DotState::START;
        let mut body = Body::new(1 << 20, None);
        let (used, done) = read_dot(&mut state, input, &mut body);
        (body.into_vec(), done.then_some(used))
    }

    #[test]
    fn end_of_data_and_unstuffing() {
        assert_eq!(dot(b".\r\nNEXT"), (Vec::new(), Some(3)));
        assert_eq!(
            dot(b"a\r\n..b\r\n.\r\n"),
            (b"a\r\n.b\r\n".to_vec(), Some(11))
        );
        assert_eq!(
            dot(b"a\nb\rc\r\n.\r\n"),
            (b"a\r\nb\r\nc\r\n".to_vec(), Some(10))
        );
        assert_eq!(dot(b"a\r\n.\r\r\n").1, None);
        assert_eq!(dot(b"a\n.\r\n").1, None);
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"x\r\n..y\r\r\n.\r.\n\r\n.\r\n";
        let mut state = DotState::START;
        let mut body = Body::new(1 << 20, None);
        let mut end = None;
        for (i, b) in input.iter().enumerate() {
            let (used, done) = read_dot(&mut state, std::slice::from_ref(b), &mut body);
            assert_eq!(used, 1);
            if done {
                end = Some(i + 1);
                break;
            }
        }
        let (whole, whole_end) = dot(input);
        assert_eq!(body.into_vec(), whole);
        assert_eq!(end, whole_end);
    }

    #[test]
    fn chunks_normalise_across_boundaries() {
        let mut n = ChunkNormalizer::default();
        let mut body = Body::new(1 << 20, None);
        for chunk in [&b"a\r"[..], b"\nb\n", b"c\r", b"d\r"] {
            n.push(chunk, &mut body);
        }
        n.finish(&mut body);
        assert_eq!(body.into_vec(), b"a\r\nb\r\nc\r\nd\r\n");
    }

    #[test]
    fn body_stops_buffering_past_the_limit() {
        let mut body = Body::new(4, None);
        body.push(b"abcd");
        assert!(!body.is_overflow());
        body.push(b"e");
        assert!(body.is_overflow());
        assert!(body.into_vec().is_empty());
    }
}
