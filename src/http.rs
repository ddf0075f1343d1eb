//! Answers read with a cap: every HTTP body the tool reads (Graph, the token endpoint, the GitHub
//! Actions runner, GitHub, Azure DevOps, Blob Storage) is read chunk by chunk and refused once it
//! passes the cap its caller names, so a server that answers gigabytes costs at most the cap in
//! memory, never the whole answer.
//!
//! The caps themselves live next to their callers (`GRAPH_ANSWER_CAP`, `TOKEN_ANSWER_CAP`, …),
//! each sized for the largest answer that service can legitimately send.

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

/// One mebibyte, to write caps in.
pub(crate) const MIB: usize = 1024 * 1024;

/// An answer longer than its cap: refused whole, nothing of it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} sent more than {}; refusing the answer", size(*cap))]
pub(crate) struct TooLarge {
    /// Who sent it (the URL's host).
    pub host: String,
    /// The cap, in bytes.
    pub cap: usize,
}

/// Why a body could not be read: too long, or the transport failed while reading.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError<E> {
    #[error(transparent)]
    TooLarge(TooLarge),
    #[error(transparent)]
    Read(E),
}

/// The body of `resp`, at most `cap` bytes: an answer that declares a longer `Content-Length` is
/// refused before any of it is read, and one that streams past the cap is refused as soon as it
/// does (what was read so far is dropped, the rest never read).
pub(crate) async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Bytes, BodyError<reqwest::Error>> {
    let host = resp.url().host_str().unwrap_or("the server").to_owned();
    let declared = resp.content_length();
    // reqwest's `chunk()` as a stream (its `bytes_stream` needs a feature the tree does not have).
    let chunks = futures_util::stream::unfold(resp, |mut resp| async move {
        resp.chunk().await.transpose().map(|chunk| (chunk, resp))
    });
    collect_capped(chunks, declared, cap, &host).await
}

/// Collects `chunks` into one buffer of at most `cap` bytes. `declared` is the length the sender
/// announced, if any: more than `cap` is refused without reading.
pub(crate) async fn collect_capped<E>(
    chunks: impl Stream<Item = Result<Bytes, E>>,
    declared: Option<u64>,
    cap: usize,
    host: &str,
) -> Result<Bytes, BodyError<E>> {
    let too_large = || BodyError::TooLarge(TooLarge { host: host.to_owned(), cap });
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut chunks = std::pin::pin!(chunks);
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        let held = first.as_ref().map_or(buf.len(), Bytes::len);
        if held + chunk.len() > cap {
            return Err(too_large());
        }
        // A body that comes in one chunk (most answers) is kept as it is, without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            Some(head) => {
                buf.reserve(declared.map_or(0, |n| n as usize).max(head.len() + chunk.len()));
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&chunk);
            }
            None => buf.extend_from_slice(&chunk),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}

/// `n` bytes for a person: whole GiB, MiB or KiB when it is one, else bytes.
fn size(n: usize) -> String {
    const KIB: usize = 1024;
    const GIB: usize = 1024 * MIB;
    match n {
        0 => "0 bytes".to_owned(),
        n if n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        let all: Vec<Result<Bytes, std::io::Error>> =
            sizes.iter().enumerate().map(|(i, &n)| Ok(Bytes::from(vec![b'a' + i as u8; n]))).collect();
        futures_util::stream::iter(all)
    }

    async fn collect(sizes: &[usize], declared: Option<u64>, cap: usize) -> Result<Bytes, BodyError<std::io::Error>> {
        collect_capped(chunks(sizes), declared, cap, "graph.microsoft.com").await
    }

    #[tokio::test]
    async fn under_and_at_the_cap_the_whole_body_is_kept_in_order() {
        let got = collect(&[3, 4, 2], Some(9), 10).await.expect("under the cap");
        assert_eq!(&got[..], b"aaabbbbcc");
        let got = collect(&[3, 4, 3], None, 10).await.expect("at the cap");
        assert_eq!(&got[..], b"aaabbbbccc");
        assert_eq!(&collect(&[10], Some(10), 10).await.expect("one chunk at the cap")[..], &[b'a'; 10]);
        assert!(collect(&[], Some(0), 10).await.expect("empty").is_empty());
    }

    #[tokio::test]
    async fn over_the_cap_is_refused_naming_the_host_and_the_cap() {
        for (sizes, declared) in [(&[3, 4, 4][..], None), (&[11][..], None), (&[1][..], Some(11))] {
            match collect(sizes, declared, 10).await {
                Err(BodyError::TooLarge(e)) => {
                    assert_eq!(e, TooLarge { host: "graph.microsoft.com".into(), cap: 10 });
                }
                other => panic!("{sizes:?} {declared:?}: {other:?}"),
            }
        }
        let e = TooLarge { host: "graph.microsoft.com".into(), cap: 16 * MIB };
        assert_eq!(e.to_string(), "graph.microsoft.com sent more than 16 MiB; refusing the answer");
        assert_eq!(size(1024 * MIB), "1 GiB");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_chunk_past_the_cap() {
        let polled = std::sync::atomic::AtomicUsize::new(0);
        let endless = futures_util::stream::repeat_with(|| {
            polled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from_static(&[b' '; 1024]))
        });
        let got = collect_capped(endless, None, 10 * 1024, "h").await;
        assert!(matches!(got, Err(BodyError::TooLarge(_))));
        assert_eq!(polled.load(std::sync::atomic::Ordering::Relaxed), 11);
    }

    #[tokio::test]
    async fn a_transport_error_is_passed_on() {
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::other("connection reset")),
        ]);
        assert!(matches!(collect_capped(failing, None, 10, "h").await, Err(BodyError::Read(_))));
    }

    #[tokio::test]
    async fn a_reqwest_answer_is_read_through_the_same_cap() {
        let answer = |body: &'static [u8]| {
            reqwest::Response::from(axum::http::Response::builder().status(200).body(body.to_vec()).expect("response"))
        };
        assert_eq!(&read_capped(answer(b"{\"value\":[]}"), 64).await.expect("under")[..], b"{\"value\":[]}");
        assert!(matches!(read_capped(answer(&[b' '; 65]), 64).await, Err(BodyError::TooLarge(e)) if e.cap == 64));
    }
}
