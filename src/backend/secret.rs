//! `ApiKey`: the upstream bearer key, kept out of every `Debug`, log line and
//! error message, plus the scrubber that removes it (and any fragment of six or
//! more characters) from upstream text before a user sees it.

use sha2::{Digest, Sha256};

/// Shortest fragment of a key that is treated as a leak.
const MIN_FRAGMENT: usize = 6;

#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String, Option<String>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl ApiKey {
    /// A key from configuration or a caller's header; blank means "none".
    pub fn new(raw: impl AsRef<str>) -> Option<Self> {
        let k = raw.as_ref().trim();
        (!k.is_empty()).then(|| ApiKey(k.to_string(), None))
    }

    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A stable, non-reversible tenant id (hex SHA-256 prefix) used to scope
    /// local records per key.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
    }

    /// The same key used on behalf of a signed-in user: local records
    /// (ledger, idempotency, downloads) are scoped by `tenant` instead of
    /// the key's fingerprint.
    pub fn for_tenant(mut self, tenant: String) -> Self {
        self.1 = Some(tenant);
        self
    }

    /// Whose local records this key reads and writes: the signed-in user's
    /// tenant when there is one, otherwise the key's fingerprint.
    pub fn tenant(&self) -> String {
        self.1.clone().unwrap_or_else(|| self.fingerprint())
    }

    /// Whether the key is used on behalf of a signed-in user.
    pub fn signed_in(&self) -> bool {
        self.1.is_some()
    }

    /// Replaces the key and every fragment of it of six or more characters.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.0)
    }

    /// Whether `raw` (e.g. an upstream body) may contain the key or a
    /// fragment of it long enough to be scrubbed. A cheap check that lets the
    /// common case skip the scrubbing walk; conservative for keys with
    /// characters JSON might escape.
    pub fn may_appear_in(&self, raw: &[u8]) -> bool {
        let key = self.0.as_bytes();
        if key.len() < MIN_FRAGMENT
            || !key
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return true;
        }
        // One pass over the body: each 6-byte window, packed into an integer
        // as it rolls by, looked up among the key's windows.
        let pack = |w: &[u8]| w.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut windows: Vec<u64> = key.windows(MIN_FRAGMENT).map(pack).collect();
        windows.sort_unstable();
        windows.dedup();
        let mask = (1u64 << (8 * MIN_FRAGMENT)) - 1;
        let mut rolling = 0u64;
        for (i, b) in raw.iter().enumerate() {
            rolling = ((rolling << 8) | u64::from(*b)) & mask;
            if i + 1 >= MIN_FRAGMENT && windows.binary_search(&rolling).is_ok() {
                return true;
            }
        }
        false
    }

    /// Scrubs every string (and object key) inside a JSON value, in place.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                let clean = self.scrub(s);
                if clean != *s {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.scrub_json(&mut v);
                    map.insert(self.scrub(&k), v);
                }
            }
            _ => {}
        }
    }
}

/// Removes `secret` and any substring of it at least six characters long from `text`.
pub fn scrub(text: &str, secret: &str) -> String {
    let key: Vec<char> = secret.chars().collect();
    if key.len() < MIN_FRAGMENT {
        return if secret.is_empty() {
            text.to_string()
        } else {
            text.replace(secret, "[redacted]")
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let mut longest = 0;
        // Longest run starting at i that is also a run somewhere in the key.
        for start in 0..key.len() {
            let mut n = 0;
            while i + n < chars.len() && start + n < key.len() && chars[i + n] == key[start + n] {
                n += 1;
            }
            longest = longest.max(n);
        }
        if longest >= MIN_FRAGMENT {
            out.push_str("[redacted]");
            i += longest;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = ApiKey::new("sk-very-secret-123456").unwrap();
        assert_eq!(format!("{k:?}"), "ApiKey([redacted])");
        assert!(!format!("{:?}", Some(k)).contains("secret"));
    }

    #[test]
    fn blank_is_no_key() {
        assert!(ApiKey::new("  ").is_none());
        assert_eq!(ApiKey::new(" k1 ").unwrap().expose(), "k1");
    }

    #[test]
    fn scrub_removes_key_and_fragments() {
        let k = "sk-live-ABCDEFGHIJ0123456789";
        assert_eq!(scrub(&format!("bad key {k}!"), k), "bad key [redacted]!");
        assert_eq!(
            scrub("key ends in ABCDEFG here", k),
            "key ends in [redacted] here"
        );
        assert_eq!(scrub("short ABCDE ok", k), "short ABCDE ok");
        assert_eq!(scrub("Bearer sk-live-ABC…", k), "Bearer [redacted]…");
    }

    #[test]
    fn scrub_json_cleans_nested_strings_and_keys() {
        let k = ApiKey::new("sk-live-ABCDEFGHIJ0123456789").unwrap();
        let mut v = serde_json::json!({
            "balance": 5,
            "echo": {"authorization": "Bearer sk-live-ABCDEFGHIJ0123456789"},
            "list": ["ok", "ABCDEFGHIJ"],
            "sk-live-ABCDEFGHIJ0123456789": true
        });
        k.scrub_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("ABCDEFG"), "{text}");
        assert_eq!(v["balance"], 5);
        assert_eq!(v["echo"]["authorization"], "Bearer [redacted]");
    }

    #[test]
    fn may_appear_in_finds_fragments_and_skips_clean_text() {
        let k = ApiKey::new("sk-live-ABCDEFGHIJ0123456789").unwrap();
        assert!(k.may_appear_in(b"xx GHIJ0123 yy"));
        assert!(!k.may_appear_in(br#"{"id":"task-1","status":"completed"}"#));
        assert!(
            ApiKey::new("k/ey+with\"odd")
                .unwrap()
                .may_appear_in(b"anything")
        );
    }

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        let a = ApiKey::new("a-key").unwrap();
        let b = ApiKey::new("b-key").unwrap();
        assert_eq!(a.fingerprint(), ApiKey::new("a-key").unwrap().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 24);
    }
}
