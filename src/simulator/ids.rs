//! Self-describing task ids: everything the simulator needs to answer for a
//! task (creation time, render time, owner, the task's fault markers) is
//! encoded in its id and signed with a MAC, so any simulator process can
//! follow a task another one created, and an id it did not make (or one that
//! was altered) is unknown, as it would be upstream.
//!
//! Form: `task-unified-sim-<payload>-<mac>`, both parts lowercase base32
//! without padding; always within the task-id rules `[A-Za-z0-9._:-]{1,128}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::faults::{FileFault, LookupFault, TaskFaults, Window};

pub(super) const PREFIX: &str = "task-unified-sim-";
/// Longest id the upstream's task-id rules allow.
pub(super) const MAX_ID: usize = 128;
/// Longest `[status:X]` value kept (the rest of the id is fixed-size).
pub(super) const MAX_ODD_STATUS: usize = 27;

const VERSION: u8 = 1;
pub(super) const MAC_LEN: usize = 8;
/// Shared by every simulator build, so any of them can check any id.
const MAC_KEY: &[u8] = b"heygen-video-mcp simulator task ids v1";

const FAIL: u8 = 1;
const OUTPUT: u8 = 1 << 1;
const MINIMAL: u8 = 1 << 2;
const LINK_403: u8 = 1 << 3;
const HAS_LOOKUP: u8 = 1 << 4;
const HAS_FILE: u8 = 1 << 5;
const KNOWN_FLAGS: u8 = (1 << 6) - 1;

/// A short tag of the key that created a task: another key's lookups are 404.
pub(super) type OwnerTag = [u8; 4];

pub(super) fn owner_tag(key: &str) -> OwnerTag {
    let digest = Sha256::digest(format!("owner:{key}").as_bytes());
    [digest[0], digest[1], digest[2], digest[3]]
}

/// What a task id says about its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskRecord {
    /// Millisecond precision.
    pub created: SystemTime,
    /// Millisecond precision, at most about 49 days.
    pub render: Duration,
    pub owner: OwnerTag,
    /// Random, so two tasks created alike in the same millisecond differ.
    pub nonce: [u8; 4],
    pub faults: TaskFaults,
}

impl TaskRecord {
    pub(super) fn created_unix(&self) -> u64 {
        self.created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

pub(super) fn encode(record: &TaskRecord) -> String {
    let payload = payload(record);
    let mac = mac(&payload);
    format!("{PREFIX}{}-{}", base32(&payload), base32(&mac))
}

/// The record behind an id this simulator family made; `None` for any other
/// string, including a made id with any character changed.
pub(super) fn decode(id: &str) -> Option<TaskRecord> {
    if id.len() > MAX_ID {
        return None;
    }
    let (payload, mac_text) = id.strip_prefix(PREFIX)?.split_once('-')?;
    let payload = unbase32(payload)?;
    let expected = mac(&payload);
    let given = unbase32(mac_text)?;
    // Compared without an early exit, as a MAC check should be.
    if given.len() != MAC_LEN || given.iter().zip(&expected).fold(0, |d, (a, b)| d | (a ^ b)) != 0 {
        return None;
    }
    parse(&payload)
}

pub(super) fn payload(r: &TaskRecord) -> Vec<u8> {
    let f = &r.faults;
    let created_ms = r
        .created
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .min((1 << 48) - 1) as u64;
    let mut flags = 0;
    for (on, bit) in [
        (f.fail, FAIL),
        (f.output_shape, OUTPUT),
        (f.minimal, MINIMAL),
        (f.link_403, LINK_403),
        (f.lookup.is_some(), HAS_LOOKUP),
        (f.file.is_some(), HAS_FILE),
    ] {
        if on {
            flags |= bit;
        }
    }
    let mut out = vec![VERSION];
    out.extend_from_slice(&created_ms.to_be_bytes()[2..]);
    out.extend_from_slice(&millis(r.render).to_be_bytes());
    out.extend_from_slice(&r.owner);
    out.extend_from_slice(&r.nonce);
    out.push(flags);
    if let Some((fault, window)) = f.lookup {
        let (kind, param) = match fault {
            LookupFault::Status(code) => (1, u32::from(code)),
            LookupFault::Garbage => (2, 0),
            LookupFault::Truncated => (3, 0),
            LookupFault::Drop => (4, 0),
            LookupFault::Slow(d) => (5, millis(d)),
        };
        let (mode, n) = match window {
            Window::Always => (0, 0),
            Window::First(n) => (1, n),
            Window::After(n) => (2, n),
        };
        out.push(kind);
        out.extend_from_slice(&param.to_be_bytes());
        out.push(mode);
        out.extend_from_slice(&n.to_be_bytes());
    }
    if let Some(fault) = f.file {
        let (kind, param) = match fault {
            FileFault::Truncate => (1, 0),
            FileFault::Slow(d) => (2, millis(d)),
            FileFault::NoLength => (3, 0),
            FileFault::Empty => (4, 0),
            FileFault::Html => (5, 0),
        };
        out.push(kind);
        out.extend_from_slice(&param.to_be_bytes());
    }
    // The rest is the odd status, cut to fit (at a character boundary).
    if let Some(status) = &f.odd_status {
        let mut end = status.len().min(MAX_ODD_STATUS);
        while !status.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&status.as_bytes()[..end]);
    }
    out
}

pub(super) fn parse(payload: &[u8]) -> Option<TaskRecord> {
    let mut r = Reader(payload);
    if r.u8()? != VERSION {
        return None;
    }
    let mut created = [0u8; 8];
    created[2..].copy_from_slice(r.take(6)?);
    let created = UNIX_EPOCH + Duration::from_millis(u64::from_be_bytes(created));
    let render = Duration::from_millis(u64::from(r.u32()?));
    let owner: OwnerTag = r.take(4)?.try_into().ok()?;
    let nonce: [u8; 4] = r.take(4)?.try_into().ok()?;
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    let lookup = if flags & HAS_LOOKUP != 0 {
        let (kind, param, mode, n) = (r.u8()?, r.u32()?, r.u8()?, r.u16()?);
        let fault = match kind {
            1 => LookupFault::Status(u16::try_from(param).ok()?),
            2 => LookupFault::Garbage,
            3 => LookupFault::Truncated,
            4 => LookupFault::Drop,
            5 => LookupFault::Slow(Duration::from_millis(u64::from(param))),
            _ => return None,
        };
        let window = match mode {
            0 => Window::Always,
            1 => Window::First(n),
            2 => Window::After(n),
            _ => return None,
        };
        Some((fault, window))
    } else {
        None
    };
    let file = if flags & HAS_FILE != 0 {
        let (kind, param) = (r.u8()?, r.u32()?);
        Some(match kind {
            1 => FileFault::Truncate,
            2 => FileFault::Slow(Duration::from_millis(u64::from(param))),
            3 => FileFault::NoLength,
            4 => FileFault::Empty,
            5 => FileFault::Html,
            _ => return None,
        })
    } else {
        None
    };
    let odd_status = std::str::from_utf8(r.0).ok()?;
    Some(TaskRecord {
        created,
        render,
        owner,
        nonce,
        faults: TaskFaults {
            fail: flags & FAIL != 0,
            odd_status: (!odd_status.is_empty()).then(|| odd_status.to_string()),
            output_shape: flags & OUTPUT != 0,
            minimal: flags & MINIMAL != 0,
            link_403: flags & LINK_403 != 0,
            lookup,
            file,
        },
    })
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// HMAC-SHA256 (RFC 2104) of `data`, cut to [`MAC_LEN`] bytes.
pub(super) fn mac(data: &[u8]) -> [u8; MAC_LEN] {
    const BLOCK: usize = 64;
    let mut key = [0u8; BLOCK];
    key[..MAC_KEY.len()].copy_from_slice(MAC_KEY);
    let pad = |byte: u8| key.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&outer[..MAC_LEN]);
    out
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lowercase, no padding.
pub(super) fn base32(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = ((acc << 8) | u32::from(b)) & 0xffff;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The inverse of [`base32`]; `None` for anything [`base32`] cannot produce
/// (other characters, an impossible length, non-zero leftover bits).
pub(super) fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = ((acc << 5) | v) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be padding: fewer than 5 of them, all zero.
    (bits < 5 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::faults::Faults;

    fn record(prompt: &str) -> TaskRecord {
        TaskRecord {
            created: UNIX_EPOCH + Duration::from_millis(1_757_165_031_123),
            render: Duration::from_millis(1500),
            owner: owner_tag("sim-test-key"),
            nonce: [1, 2, 3, 4],
            faults: Faults::parse(prompt).task,
        }
    }

    fn allowed(id: &str) -> bool {
        (1..=MAX_ID).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    }

    #[test]
    fn base32_round_trips_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base32(&data);
            assert_eq!(unbase32(&text), Some(data), "{text}");
        }
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(unbase32("MZXW6YTBOI"), None, "uppercase is not ours");
        assert_eq!(unbase32("mzxw6ytboj"), None, "non-zero padding bits");
        assert_eq!(unbase32("a"), None, "impossible length");
    }

    #[test]
    fn ids_round_trip() {
        for prompt in [
            "plain",
            "[fail][after:1.5]",
            "[status:rendering][output][minimal][link:403]",
            "[get:slow=3:after2][file:slow=2]",
            "[get:500:2][file:truncate]",
            "[get:drop][file:nolength]",
            "[get:garbage][file:empty]",
            "[get:truncated][file:html]",
            "[get:404:after1]",
        ] {
            let r = record(prompt);
            let id = encode(&r);
            assert!(id.starts_with("task-unified-"), "{id}");
            assert!(allowed(&id), "{id} ({} chars)", id.len());
            assert_eq!(decode(&id), Some(r), "{prompt}: {id}");
        }
    }

    #[test]
    fn any_changed_character_makes_the_id_unknown() {
        let id = encode(&record("[fail][get:500:1][status:x]"));
        for (i, c) in id.char_indices() {
            for replacement in ['a', 'b', '7', 'Z', '-', '.'] {
                if replacement == c {
                    continue;
                }
                let mut tampered = id.clone();
                tampered.replace_range(i..i + 1, &replacement.to_string());
                assert_eq!(decode(&tampered), None, "{tampered}");
            }
        }
        assert_eq!(decode(&id[..id.len() - 1]), None);
        assert_eq!(decode(&format!("{id}a")), None);
        for other in [
            "task-unified-1757165031-uyujaw3d",
            "task-unified-0-nosuch",
            "task-unified-sim-",
            "task-unified-sim--",
            "",
        ] {
            assert_eq!(decode(other), None, "{other}");
        }
    }

    #[test]
    fn the_longest_marker_set_stays_within_the_id_rules() {
        let long_status = format!("[status:{}]", "x".repeat(33));
        let all = format!(
            "{long_status}[fail][output][minimal][link:403][after:3600]\
             [get:slow=3600:after65535][file:slow=3600]"
        );
        let mut r = record(&all);
        r.render = Duration::from_secs(3600);
        let id = encode(&r);
        assert!(allowed(&id), "{id} ({} chars)", id.len());
        let back = decode(&id).unwrap();
        assert_eq!(back.faults.odd_status.unwrap(), "x".repeat(MAX_ODD_STATUS));
        // A multi-byte status is cut at a character boundary.
        r.faults.odd_status = Some("é".repeat(20));
        let back = decode(&encode(&r)).unwrap();
        assert_eq!(back.faults.odd_status.unwrap(), "é".repeat(13));
    }

    #[test]
    fn tasks_created_alike_at_once_get_different_ids() {
        let a = record("[get:garbage]");
        let b = TaskRecord {
            nonce: [4, 3, 2, 1],
            ..a.clone()
        };
        assert_ne!(encode(&a), encode(&b));
    }

    #[test]
    fn owners_differ_by_key() {
        assert_eq!(owner_tag("a"), owner_tag("a"));
        assert_ne!(owner_tag("a"), owner_tag("b"));
    }
}
