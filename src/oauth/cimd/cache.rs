//! Validated metadata documents, cached for as long as their HTTP cache headers allow (RFC 9111
//! `Cache-Control`), within the operator's bounds. Errors and invalid documents are never
//! cached (draft-ietf-oauth-client-id-metadata-document §5.2). Bounded in entries: when full,
//! expired entries go first, then the one closest to expiry.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::ClientRow;

/// How long a response may be cached, from its headers, before the operator's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// `no-store`, `no-cache` or `max-age=0`: fetch again next time.
    DoNotCache,
    /// `max-age` (less `Age`), in seconds.
    MaxAge(u64),
    /// No cache directive: the operator's minimum applies.
    Unspecified,
}

/// Reads `Cache-Control` (and `Age`) the way a private cache does.
pub fn freshness(cache_control: Option<&str>, age: Option<&str>) -> Freshness {
    let Some(cc) = cache_control else { return Freshness::Unspecified };
    let mut max_age = None;
    for directive in cc.split(',') {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Freshness::DoNotCache;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // RFC 9111 §4.2.1: an invalid max-age means stale.
            match value.and_then(|v| v.parse::<u64>().ok()) {
                Some(secs) => max_age = Some(secs),
                None => return Freshness::DoNotCache,
            }
        }
    }
    let age = age.and_then(|a| a.trim().parse::<u64>().ok()).unwrap_or(0);
    match max_age {
        Some(secs) if secs > age => Freshness::MaxAge(secs - age),
        Some(_) => Freshness::DoNotCache,
        None => Freshness::Unspecified,
    }
}

/// Seconds to keep a document, or `None` to not keep it.
pub fn ttl(freshness: Freshness, min: i64, max: i64) -> Option<i64> {
    match freshness {
        Freshness::DoNotCache => None,
        Freshness::MaxAge(secs) => Some(i64::try_from(secs).unwrap_or(i64::MAX).clamp(min, max)),
        Freshness::Unspecified => Some(min),
    }
    .filter(|t| *t > 0)
}

struct Entry {
    client: ClientRow,
    expires_at: i64,
}

/// Client ID URL -> the client its document describes.
pub struct DocumentCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
}

impl DocumentCache {
    pub fn new(capacity: usize) -> Self {
        DocumentCache { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The cached client, if still fresh at `now`.
    pub fn get(&self, url: &str, now: i64) -> Option<ClientRow> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match entries.get(url) {
            Some(e) if e.expires_at > now => Some(e.client.clone()),
            Some(_) => {
                entries.remove(url);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, url: &str, client: ClientRow, expires_at: i64, now: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !entries.contains_key(url) && entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires_at > now);
            if entries.len() >= self.capacity
                && let Some(soonest) = entries.iter().min_by_key(|(_, e)| e.expires_at).map(|(k, _)| k.clone())
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(url.to_owned(), Entry { client, expires_at });
    }

    /// Forgets a document (its client was removed, or an operator wants it fetched again).
    pub fn forget(&self, url: &str) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(url);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_read_like_a_private_cache() {
        assert_eq!(freshness(None, None), Freshness::Unspecified);
        assert_eq!(freshness(Some("public, max-age=3600"), None), Freshness::MaxAge(3600));
        assert_eq!(freshness(Some("max-age=\"60\""), None), Freshness::MaxAge(60));
        assert_eq!(freshness(Some("max-age=600"), Some("100")), Freshness::MaxAge(500));
        assert_eq!(freshness(Some("max-age=60"), Some("100")), Freshness::DoNotCache);
        assert_eq!(freshness(Some("no-store"), None), Freshness::DoNotCache);
        assert_eq!(freshness(Some("max-age=600, No-Cache"), None), Freshness::DoNotCache);
        assert_eq!(freshness(Some("max-age=soon"), None), Freshness::DoNotCache);
        assert_eq!(freshness(Some("public"), None), Freshness::Unspecified);
    }

    fn client(id: &str) -> ClientRow {
        crate::oauth::cimd::document::client_from_document(
            id,
            format!(r#"{{"client_id":"{id}","client_name":"c","redirect_uris":["https://a.example/cb"]}}"#).as_bytes(),
            0,
        )
        .unwrap()
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let cache = DocumentCache::new(2);
        cache.insert("https://a.example/1", client("https://a.example/1"), 100, 0);
        cache.insert("https://a.example/2", client("https://a.example/2"), 50, 0);
        assert!(cache.get("https://a.example/2", 49).is_some());
        assert!(cache.get("https://a.example/2", 50).is_none(), "expired at its time");
        cache.insert("https://a.example/2", client("https://a.example/2"), 50, 0);
        // Full: the entry closest to expiry makes room.
        cache.insert("https://a.example/3", client("https://a.example/3"), 200, 10);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("https://a.example/2", 10).is_none());
        assert!(cache.get("https://a.example/1", 10).is_some() && cache.get("https://a.example/3", 10).is_some());
        // Expired entries go first, whatever their expiry order.
        cache.insert("https://a.example/4", client("https://a.example/4"), 300, 150);
        assert!(cache.get("https://a.example/3", 150).is_some(), "still fresh");
        assert!(cache.get("https://a.example/1", 150).is_none());
        cache.forget("https://a.example/3");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn ttl_is_bounded() {
        assert_eq!(ttl(Freshness::MaxAge(10), 300, 86_400), Some(300));
        assert_eq!(ttl(Freshness::MaxAge(1_000_000), 300, 86_400), Some(86_400));
        assert_eq!(ttl(Freshness::MaxAge(3_600), 300, 86_400), Some(3_600));
        assert_eq!(ttl(Freshness::Unspecified, 300, 86_400), Some(300));
        assert_eq!(ttl(Freshness::DoNotCache, 300, 86_400), None);
        assert_eq!(ttl(Freshness::Unspecified, 0, 86_400), None);
    }
}
