//! When a presigned link stops working, read from the link itself:
//! `Expires=<unix seconds>` (CloudFront/S3 v2 style) or `X-Amz-Date` plus
//! `X-Amz-Expires` (S3 SigV4). A link that says nothing has no known expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The expiry a presigned URL carries, if any.
pub fn link_expiry(raw: &str) -> Option<SystemTime> {
    let url = url::Url::parse(raw).ok()?;
    let mut expires = None;
    let mut amz_date = None;
    let mut amz_expires = None;
    for (k, v) in url.query_pairs() {
        if k.eq_ignore_ascii_case("expires") {
            expires = v.trim().parse::<u64>().ok();
        } else if k.eq_ignore_ascii_case("x-amz-date") {
            amz_date = parse_amz_date(v.trim());
        } else if k.eq_ignore_ascii_case("x-amz-expires") {
            amz_expires = v.trim().parse::<u64>().ok();
        }
    }
    if let (Some(start), Some(secs)) = (amz_date, amz_expires) {
        return start.checked_add(Duration::from_secs(secs));
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(expires?))
}

/// `20261201T120000Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    if !s[..8]
        .bytes()
        .chain(s[9..15].bytes())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    humantime::parse_rfc3339(&rfc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_presigned_styles_are_read() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(
            link_expiry("https://cdn.example/v.mp4?Expires=1796126400&Signature=x&Key-Pair-Id=k"),
            Some(at(1_796_126_400))
        );
        assert_eq!(
            link_expiry(
                "https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4&X-Amz-Date=20261201T120000Z&X-Amz-Expires=604800&X-Amz-Signature=s"
            ),
            Some(at(1_796_126_400 + 604_800))
        );
        assert_eq!(link_expiry("https://cdn.example/v.mp4"), None);
        assert_eq!(link_expiry("https://cdn.example/v.mp4?Expires=soon"), None);
        assert_eq!(
            link_expiry("https://x/v.mp4?X-Amz-Date=2026-12-01&X-Amz-Expires=5"),
            None
        );
        assert_eq!(link_expiry("not a url"), None);
    }
}
