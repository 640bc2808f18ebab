//! Signed, self-describing values of the v3 wire, all under the MAC of
//! `ids.rs` (the key every simulator build shares):
//! - session ids `sess-sim-<payload>-<mac>` and video ids `vid-sim-<payload>-<mac>`
//!   carry a task record (creation time, render time, owner, nonce, task
//!   faults) plus the v3 flags, so any simulator process answers for them;
//!   the video id of a session is derived from it and leads back to it;
//! - asset ids `asset-sim-<payload>-<mac>` carry the owner, type and size;
//! - page tokens `pg-<payload>-<mac>` carry the list, a fingerprint of its
//!   filters and the offset of the next page;
//! - link signatures cover the file name and its `Expires`.
//!
//! The first payload byte names the kind, so one kind is never accepted as
//! another, nor as a gateway task id. Every form stays within
//! `[A-Za-z0-9._:-]{1,128}`.

use sha2::{Digest, Sha256};

use super::super::ids::{self, MAC_LEN, OwnerTag, TaskRecord, base32, mac, unbase32};

const SESSION_PREFIX: &str = "sess-sim-";
const VIDEO_PREFIX: &str = "vid-sim-";
const ASSET_PREFIX: &str = "asset-sim-";
const TOKEN_PREFIX: &str = "pg-";

const SESSION: u8 = b'S';
const VIDEO: u8 = b'V';
const ASSET: u8 = b'A';
const TOKEN: u8 = b'P';
const LINK: u8 = b'L';

/// `[session-fail]`
const SESSION_FAIL: u8 = 1;
/// `mode: "chat"`
const CHAT: u8 = 1 << 1;
const KNOWN_FLAGS: u8 = SESSION_FAIL | CHAT;

/// What a session id (and its video id) says about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    pub task: TaskRecord,
    /// `[session-fail]`: the session fails before any video exists.
    pub session_fail: bool,
    /// `mode: "chat"`: the session stops at `waiting_for_input`.
    pub chat: bool,
}

pub(super) fn session_id(s: &Session) -> String {
    seal(SESSION_PREFIX, session_payload(SESSION, s))
}

/// The video id of a session: fixed by the session id alone.
pub(super) fn video_id(s: &Session) -> String {
    seal(VIDEO_PREFIX, session_payload(VIDEO, s))
}

pub(super) fn open_session(id: &str) -> Option<Session> {
    parse_session(SESSION, &open(SESSION_PREFIX, id)?)
}

pub(super) fn open_video(id: &str) -> Option<Session> {
    parse_session(VIDEO, &open(VIDEO_PREFIX, id)?)
}

fn session_payload(kind: u8, s: &Session) -> Vec<u8> {
    let mut flags = 0;
    if s.session_fail {
        flags |= SESSION_FAIL;
    }
    if s.chat {
        flags |= CHAT;
    }
    let mut out = vec![kind, flags];
    out.extend_from_slice(&ids::payload(&s.task));
    out
}

fn parse_session(kind: u8, payload: &[u8]) -> Option<Session> {
    let (&[k, flags], rest) = payload.split_first_chunk::<2>()?;
    if k != kind || flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    Some(Session {
        task: ids::parse(rest)?,
        session_fail: flags & SESSION_FAIL != 0,
        chat: flags & CHAT != 0,
    })
}

/// What an asset id says about its asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AssetRef {
    pub owner: OwnerTag,
    /// Index into the asset types of `assets.rs`.
    pub mime: u8,
    pub size: u32,
    pub nonce: [u8; 4],
}

pub(super) fn asset_id(a: &AssetRef) -> String {
    let mut p = vec![ASSET, a.mime];
    p.extend_from_slice(&a.size.to_be_bytes());
    p.extend_from_slice(&a.owner);
    p.extend_from_slice(&a.nonce);
    seal(ASSET_PREFIX, p)
}

pub(super) fn open_asset(id: &str) -> Option<AssetRef> {
    let p = open(ASSET_PREFIX, id)?;
    let (&[kind, mime], rest) = p.split_first_chunk::<2>()?;
    let rest: &[u8; 12] = rest.try_into().ok()?;
    if kind != ASSET {
        return None;
    }
    let (size, rest) = rest.split_first_chunk::<4>()?;
    let (owner, nonce) = rest.split_first_chunk::<4>()?;
    Some(AssetRef {
        owner: *owner,
        mime,
        size: u32::from_be_bytes(*size),
        nonce: nonce.try_into().ok()?,
    })
}

/// The token of the page starting at `offset` of list `list` under `filters`.
pub(super) fn page_token(list: u8, filters: &str, offset: usize) -> String {
    let mut p = vec![TOKEN, list];
    p.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_be_bytes());
    p.extend_from_slice(&fingerprint(filters));
    seal(TOKEN_PREFIX, p)
}

/// The offset a token stands for, when it was made for this list and filters.
pub(super) fn open_page_token(token: &str, list: u8, filters: &str) -> Option<usize> {
    let p = open(TOKEN_PREFIX, token)?;
    let p: &[u8; 10] = p.as_slice().try_into().ok()?;
    let (&[kind, l], rest) = p.split_first_chunk::<2>()?;
    let (offset, fp) = rest.split_first_chunk::<4>()?;
    (kind == TOKEN && l == list && *fp == fingerprint(filters))
        .then(|| usize::try_from(u32::from_be_bytes(*offset)).ok())
        .flatten()
}

fn fingerprint(filters: &str) -> [u8; 4] {
    let d = Sha256::digest(filters.as_bytes());
    [d[0], d[1], d[2], d[3]]
}

/// The `Signature` of a result link: covers the file name and its expiry.
pub(super) fn link_signature(file: &str, expires: u64) -> String {
    let mut p = vec![LINK];
    p.extend_from_slice(file.as_bytes());
    p.push(b'|');
    p.extend_from_slice(expires.to_string().as_bytes());
    base32(&mac(&p))
}

/// Whether `given` is the signature of `file` expiring at `expires`.
pub(super) fn link_signature_ok(file: &str, expires: u64, given: &str) -> bool {
    same(link_signature(file, expires).as_bytes(), given.as_bytes())
}

fn seal(prefix: &str, payload: Vec<u8>) -> String {
    format!("{prefix}{}-{}", base32(&payload), base32(&mac(&payload)))
}

/// The payload of a value made by [`seal`] under `prefix`; `None` for
/// anything else, including a sealed value with any character changed.
fn open(prefix: &str, id: &str) -> Option<Vec<u8>> {
    if id.len() > ids::MAX_ID {
        return None;
    }
    let (payload, mac_text) = id.strip_prefix(prefix)?.split_once('-')?;
    let payload = unbase32(payload)?;
    let given = unbase32(mac_text)?;
    (given.len() == MAC_LEN && same(&given, &mac(&payload))).then_some(payload)
}

/// Equality without an early exit, as a MAC check should be.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::simulator::faults::Faults;

    fn session(prompt: &str) -> Session {
        Session {
            task: TaskRecord {
                created: UNIX_EPOCH + Duration::from_millis(1_767_225_600_123),
                render: Duration::from_millis(2500),
                owner: ids::owner_tag("k"),
                nonce: [9, 8, 7, 6],
                faults: Faults::parse(prompt).task,
            },
            session_fail: prompt.contains("[session-fail]"),
            chat: prompt.contains("chat"),
        }
    }

    fn allowed(id: &str) -> bool {
        (1..=ids::MAX_ID).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    }

    #[test]
    fn session_and_video_ids_round_trip_and_stay_apart() {
        for prompt in [
            "plain",
            "[fail][after:3] chat",
            "[session-fail][link:403][file:truncate]",
            "[get:500:2][status:rendering]",
        ] {
            let s = session(prompt);
            let sid = session_id(&s);
            let vid = video_id(&s);
            assert!(allowed(&sid) && allowed(&vid), "{sid} {vid}");
            assert!(sid.starts_with(SESSION_PREFIX) && vid.starts_with(VIDEO_PREFIX));
            assert_eq!(open_session(&sid), Some(s.clone()));
            assert_eq!(open_video(&vid), Some(s.clone()));
            assert_eq!(video_id(&s), vid, "the video id is fixed by the session");
            assert_eq!(open_video(&sid), None);
            assert_eq!(open_session(&vid), None);
            assert_eq!(ids::decode(&sid), None, "not a gateway task id");
        }
    }

    #[test]
    fn the_longest_session_id_stays_within_the_rules() {
        let all = format!(
            "[status:{}][fail][link:403][get:slow=3600:after65535][file:slow=3600] chat [session-fail]",
            "x".repeat(40)
        );
        let s = session(&all);
        let sid = session_id(&s);
        assert!(allowed(&sid), "{sid} ({} chars)", sid.len());
        assert!(allowed(&video_id(&s)));
        assert_eq!(open_session(&sid), Some(s));
    }

    #[test]
    fn altered_values_are_refused() {
        let sid = session_id(&session("[fail]"));
        for (i, c) in sid.char_indices().skip(SESSION_PREFIX.len()) {
            let r = if c == 'a' { "b" } else { "a" };
            let mut t = sid.clone();
            t.replace_range(i..i + 1, r);
            assert_eq!(open_session(&t), None, "{t}");
        }
        assert_eq!(open_session("sess-sim-abc-def"), None);
        assert_eq!(open_session(""), None);
    }

    #[test]
    fn asset_ids_round_trip() {
        let a = AssetRef {
            owner: ids::owner_tag("k"),
            mime: 3,
            size: 123_456,
            nonce: [1, 2, 3, 4],
        };
        let id = asset_id(&a);
        assert!(allowed(&id), "{id}");
        assert_eq!(open_asset(&id), Some(a));
        assert_eq!(open_asset(&id.replace("asset-sim-", "asset-xxx-")), None);
    }

    #[test]
    fn page_tokens_belong_to_one_list_and_filter_set() {
        let t = page_token(2, "language=english", 40);
        assert_eq!(open_page_token(&t, 2, "language=english"), Some(40));
        assert_eq!(open_page_token(&t, 3, "language=english"), None);
        assert_eq!(open_page_token(&t, 2, "language=french"), None);
        assert_eq!(open_page_token("garbage", 2, "language=english"), None);
    }

    #[test]
    fn link_signatures_cover_name_and_expiry() {
        let s = link_signature("vid-x.mp4", 100);
        assert!(link_signature_ok("vid-x.mp4", 100, &s));
        assert!(!link_signature_ok("vid-x.mp4", 101, &s));
        assert!(!link_signature_ok("vid-y.mp4", 100, &s));
        assert!(!link_signature_ok("vid-x.mp4", 100, ""));
    }
}
