//! The reader between stdin and rmcp's line transport: it sees each whole
//! line first, reads a `tools/call` strictly, and takes a line that is not
//! JSON out of the stream (for its parse error, see the parent module).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rmcp::model::RequestId;
use rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;
use tokio::io::{AsyncRead, ReadBuf};

use super::{NotJson, Readings, lock};
use crate::mcp::strict::{self, StrictArguments};

/// The byte-order mark rmcp strips from the front of a line.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A reader that hands rmcp whole lines, each `tools/call` read strictly
/// first (and, when only a surrogate escape kept serde_json from reading it,
/// rewritten to the same-length routable copy, see `strict.rs`), and each
/// line that is not JSON withheld and reported to `not_json`.
pub(super) struct Tap<R> {
    inner: R,
    /// The line so far, held until its newline (a line past rmcp's own limit
    /// is passed through unread, as rmcp drops it).
    line: Vec<u8>,
    oversized: bool,
    /// Bytes scanned and ready for rmcp, from `at`.
    ready: Vec<u8>,
    at: usize,
    readings: Readings,
    not_json: Arc<NotJson>,
}

impl<R> Tap<R> {
    pub(super) fn new(inner: R, readings: Readings, not_json: Arc<NotJson>) -> Self {
        Tap {
            inner,
            line: Vec::new(),
            oversized: false,
            ready: Vec::new(),
            at: 0,
            readings,
            not_json,
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let ends = piece.ends_with(b"\n");
            if self.oversized {
                self.ready.extend_from_slice(piece);
            } else if self.line.len() + piece.len() > DEFAULT_MAX_LINE_LENGTH {
                self.oversized = true;
                self.ready.append(&mut self.line);
                self.ready.extend_from_slice(piece);
            } else {
                self.line.extend_from_slice(piece);
                if ends {
                    self.read_line();
                    self.ready.append(&mut self.line);
                }
            }
            if ends {
                self.oversized = false;
            }
        }
    }

    /// Reads the held line: withheld if it is not JSON, read strictly if it
    /// may be a `tools/call`.
    fn read_line(&mut self) {
        let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
        // rmcp skips an empty line; any other it cannot parse it drops
        // without an answer.
        if !text.is_empty()
            && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(text)
        {
            self.not_json.push(e.to_string());
            self.line.clear();
            return;
        }
        if !text.windows(10).any(|w| w == b"tools/call") {
            return;
        }
        let Some((message, rewritten)) = strict::routable(text) else {
            return;
        };
        if !strict::is_tool_call(&message) {
            return;
        }
        let Some(id) = message
            .get("id")
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok())
        else {
            return;
        };
        let reading = StrictArguments::read(text);
        lock(&self.readings).push_back((id, reading));
        if let Some(rewritten) = rewritten {
            self.line[..rewritten.len()].copy_from_slice(&rewritten);
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let this = &mut *self;
            if this.at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.at);
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                if this.at == this.ready.len() {
                    this.ready.clear();
                    this.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of input: a last line without its newline goes on
                    // as it is (rmcp reads it at end of input too).
                    if this.line.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.read_line();
                    this.ready.append(&mut this.line);
                }
                Poll::Ready(Ok(())) => this.scan(read.filled()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_reads_tool_calls_split_across_reads() {
        let mut tap = Tap::new(tokio::io::empty(), Readings::default(), Default::default());
        let dup = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"a","message":"b"}}}"#;
        let ping = br#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#;
        let (head, tail) = dup.split_at(40);
        tap.scan(head);
        tap.scan(tail);
        tap.scan(b"\r\n");
        tap.scan(ping);
        tap.scan(b"\n");
        let readings = lock(&tap.readings).clone();
        assert_eq!(readings.len(), 1, "only the tools/call is read");
        let (id, reading) = &readings[0];
        assert_eq!(*id, RequestId::Number(7));
        let e = reading.0.clone().expect_err("a duplicate name");
        assert_eq!(e.path, "/message");
    }

    #[tokio::test]
    async fn the_tap_hands_on_every_line_and_routes_a_lone_surrogate() {
        use tokio::io::AsyncReadExt;
        let surrogate = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"\ud800"}}}"#;
        let ping = r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#;
        let sent = format!("{surrogate}\n{ping}\n{ping}");
        let readings = Readings::default();
        let mut handed = Vec::new();
        Tap::new(sent.as_bytes(), readings.clone(), Default::default())
            .read_to_end(&mut handed)
            .await
            .unwrap();
        let expected = sent.replacen(r"\ud800", r"\ufffd", 1);
        assert_eq!(String::from_utf8(handed).unwrap(), expected);
        let readings = lock(&readings).clone();
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0].0, RequestId::Number(9));
        let e = readings[0].1.0.clone().expect_err("a lone surrogate");
        assert_eq!(e.path, "/message");
    }

    #[tokio::test]
    async fn the_tap_withholds_lines_that_are_not_json() {
        use tokio::io::AsyncReadExt;
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let sent = format!("hello\n\n{ping}\n{{\"jsonrpc\":\n\u{feff}{ping}\n");
        let not_json = Arc::new(NotJson::default());
        let mut handed = Vec::new();
        Tap::new(sent.as_bytes(), Readings::default(), not_json.clone())
            .read_to_end(&mut handed)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(handed).unwrap(),
            format!("\n{ping}\n\u{feff}{ping}\n"),
            "the two broken lines are withheld, the rest handed on as sent"
        );
        let reasons = not_json.take();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("expected value"), "{reasons:?}");
        assert!(!reasons.iter().any(|r| r.contains("hello")), "no content");
    }
}
