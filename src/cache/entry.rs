//! What a read answers: the [`Entry`] as Redis and the near cache hold it,
//! what a loader hands the cache on a miss ([`Loaded`]), and why a read may
//! have no entry ([`ReadError`]). The cache's own vocabulary: it knows no
//! API error, and its caller turns a [`ReadError`] back into its own.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A rendered response as stored in Redis: status, strong ETag and body
/// (JSON, or the HTML of a profile page; the caller knows which it asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub status: u16,
    pub etag: String,
    pub body: Bytes,
}

/// What a loader found, as the body to answer with. A `404` is an answer
/// like a `200` and is cached too (for `CACHE_NEGATIVE_TTL_SECS`): a create
/// bumps the namespace its resource appears in, so the `404` cannot outlive
/// it. The loader renders both bodies; the cache never looks inside them.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// The body of a `200`.
    Found(Vec<u8>),
    /// The body of a `404`.
    NotFound(Vec<u8>),
}

/// Why a read has no entry to answer with. Nothing of it is cached, and it
/// is handed to every reader that shared the load.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The loader failed; its own error, as it gave it, for the caller's
    /// layer to recognize (`crate::error` turns it back into the API error
    /// the loader raised).
    #[error("{0}")]
    Load(Arc<dyn std::error::Error + Send + Sync>),
    /// The load's task panicked; names the load (a miss or a bypass).
    #[error("{0} panicked")]
    Panicked(&'static str),
}

impl Entry {
    /// The entry of a loader's answer, its ETag a digest of the body. Also
    /// how a caller composes one answer of several entries (the users list:
    /// a page and a total).
    pub fn render(loaded: Loaded) -> Self {
        let (status, body) = match loaded {
            Loaded::Found(body) => (200, body),
            Loaded::NotFound(body) => (404, body),
        };
        let digest = Sha256::digest(&body);
        Self {
            status,
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            body: Bytes::from(body),
        }
    }

    /// `<status> <etag>\n<body>`: a HIT can answer a `304` without parsing JSON.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {}\n", self.status, self.etag).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    pub(super) fn decode(raw: Vec<u8>) -> Option<Self> {
        let newline = raw.iter().position(|&b| b == b'\n')?;
        let head = std::str::from_utf8(&raw[..newline]).ok()?;
        let (status, etag) = head.split_once(' ')?;
        let status = status.parse().ok()?;
        let etag = etag.to_owned();
        let mut body = Bytes::from(raw);
        Some(Self {
            status,
            etag,
            body: body.split_off(newline + 1),
        })
    }
}

/// A loader's failure as every reader sharing its load receives it.
pub(super) fn failed_load<E: std::error::Error + Send + Sync + 'static>(err: E) -> ReadError {
    ReadError::Load(Arc::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_their_encoding() {
        let entry = Entry::render(Loaded::Found(b"{\"data\":1}\n".to_vec()));
        assert_eq!(entry.status, 200);
        assert!(entry.etag.starts_with('"') && entry.etag.ends_with('"'));
        assert_eq!(Entry::decode(entry.encode()), Some(entry));
    }

    #[test]
    fn not_found_is_rendered_as_a_cacheable_404() {
        let body = br#"{"error":{"code":"not_found","message":"user not found"}}"#;
        let entry = Entry::render(Loaded::NotFound(body.to_vec()));
        assert_eq!(entry.status, 404);
        assert!(
            std::str::from_utf8(&entry.body)
                .expect("utf-8")
                .contains("not_found")
        );
    }

    #[test]
    fn etags_follow_the_body() {
        let a = Entry::render(Loaded::Found(b"a".to_vec()));
        let b = Entry::render(Loaded::Found(b"b".to_vec()));
        assert_ne!(a.etag, b.etag);
    }
}
