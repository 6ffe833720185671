//! A response body that stops at the call's `max_response_bytes`.
//!
//! The cap is enforced as bytes arrive, before they reach the guest, so a
//! huge or endless response costs the host at most one frame over the cap.
//! Hitting it is recorded in the call's [`EgressRecord`], which fails the
//! call with a clear message even if the guest ignores the stream error.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error as HttpError;

use super::EgressRecord;

/// `inner`, failing with `HttpResponseBodySize` once more than `cap` bytes
/// of data have come through.
pub(super) struct CappedBody {
    inner: hyper::body::Incoming,
    seen: u64,
    cap: u64,
    url: String,
    record: Arc<EgressRecord>,
}

impl CappedBody {
    pub(super) fn new(
        inner: hyper::body::Incoming,
        cap: u64,
        url: String,
        record: Arc<EgressRecord>,
    ) -> Self {
        CappedBody {
            inner,
            seen: 0,
            cap,
            url,
            record,
        }
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.seen > self.cap {
            return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(self.cap)))));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(HttpError::Hyper(e)))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > self.cap {
                self.record.body_too_large(&self.url, self.cap);
                return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(self.cap)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
