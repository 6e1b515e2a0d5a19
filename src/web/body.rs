//! Reading a request body up to a limit, so that a refused body still gets its answer.
//!
//! Refusing an oversized body is the easy half. The other half is that the client sees the
//! refusal: if the server drops a body it has not read, hyper closes the connection with the
//! rest still unread in the kernel's buffer, the kernel answers with a reset, and a client that
//! is still sending (every client sending a 1 MB form) reads "connection reset" instead of our
//! 413. So the rest of a refused body is read and thrown away in the background, up to a
//! bound, while the answer goes out: the lingering close web servers have long done.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;

/// How much of a refused body is read and discarded so that its client sees the answer.
/// Beyond it the connection is closed under the sender, which is then its own fault.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// How long a refused body is drained at most: a slow sender does not hold a task for long.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit, by its `Content-Length` or by what arrived.
    TooLarge,
    /// The connection failed or the body was malformed (a bad chunk, say).
    Unreadable,
}

/// Reads `body` whole if it is at most `limit` bytes. A body announced or found to be larger
/// is refused without buffering more than `limit`, and its rest is drained in the background.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        drain_in_background(body);
        return Err(BodyError::TooLarge);
    }
    let mut body = body;
    let mut read = Vec::with_capacity(announced.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(BodyError::Unreadable) };
        let Ok(data) = frame.into_data() else { continue };
        if read.len() + data.len() > limit {
            drain_in_background(body);
            return Err(BodyError::TooLarge);
        }
        read.extend_from_slice(&data);
    }
    Ok(Bytes::from(read))
}

/// Keeps reading `body` for a while so that hyper goes on taking it off the connection while
/// the answer is written; dropping it at once would make hyper close with data unread.
fn drain_in_background(mut body: Body) {
    tokio::spawn(async move {
        let drain = async {
            let mut drained = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                drained += frame.data_ref().map_or(0, Bytes::len);
                if drained > DRAIN_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(len: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(n) = len {
            h.insert(header::CONTENT_LENGTH, n.into());
        }
        h
    }

    #[tokio::test]
    async fn bodies_up_to_the_limit_are_read_whole() {
        let got = read_limited(&headers(Some(5)), Body::from("hello"), 5).await.unwrap();
        assert_eq!(&got[..], b"hello");
        let got = read_limited(&headers(None), Body::from(""), 5).await.unwrap();
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn larger_bodies_are_refused_by_length_or_by_content() {
        assert_eq!(read_limited(&headers(Some(6)), Body::from("hello!"), 5).await, Err(BodyError::TooLarge));
        // Without a Content-Length (chunked), what arrives is counted.
        let stream = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("abc")), Ok(Bytes::from("def"))]);
        let body = Body::from_stream(stream);
        assert_eq!(read_limited(&headers(None), body, 5).await, Err(BodyError::TooLarge));
    }

    #[tokio::test]
    async fn a_failing_body_is_unreadable() {
        let stream = futures::stream::iter([Ok(Bytes::from("ab")), Err(std::io::Error::other("reset"))]);
        let body = Body::from_stream(stream);
        assert_eq!(read_limited(&headers(None), body, 5).await, Err(BodyError::Unreadable));
    }
}
