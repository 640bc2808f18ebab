//! The dedupe and idempotency decision of a claim, as a pure function. Each
//! store runs its atomic section (a transaction under its locks): it marks
//! stale reservations (see [`stale_before`]), reads the rows named in
//! [`Found`], asks [`decide`], and carries the [`Decision`] out. The rules
//! live here once, table-tested, and every store follows them.
//!
//! The rules, in order:
//! 1. The create this call waited for ([`ClaimPolicy::joined`]) answers it,
//!    whatever the window: in flight → wait on; maybe created → refused;
//!    created and not failed → that task. Gone or failed → the next rules.
//! 2. With an idempotency key: the row holding it answers, unless the key
//!    expired ([`ClaimPolicy::key_lifetime`]) or its task failed, which
//!    frees the key. Other arguments under the same key are a conflict.
//! 3. Without a key: the newest row with the same arguments that is in
//!    flight, maybe created within the key lifetime, or created within the
//!    window (and not failed) answers.
//! 4. Otherwise the call reserves a new row.

use super::{Claim, ClaimPolicy, CreateIdentity, LedgerRecord, RecordState, ms};

/// Most same-argument rows a store hands to [`decide`], newest first.
pub const SAME_ARGS_SCAN: i64 = 50;

/// What the store read in its atomic section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// The row [`ClaimPolicy::joined`] names, when it still exists with this
    /// tenant and arguments.
    pub joined: Option<LedgerRecord>,
    /// The row holding the identity's idempotency key (only with a key).
    pub by_key: Option<LedgerRecord>,
    /// Rows of this tenant with the same arguments requested within the key
    /// lifetime or still in flight, newest first (at most
    /// [`SAME_ARGS_SCAN`]; only without a key).
    pub same_args: Vec<LedgerRecord>,
}

/// What the store does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer the call with this (no new row).
    Answer(Box<Claim>),
    /// Reserve a new row for this call, after clearing the idempotency key
    /// of the row given (its key expired or its task failed; the row stays
    /// in the history).
    Reserve { free_key: Option<i64> },
}

/// Reservations requested before the first time, or without a heartbeat
/// since the second (milliseconds since the epoch), belong to calls that died
/// mid-create: the store turns them into "maybe created" first.
pub fn stale_before(now_ms: i64, policy: &ClaimPolicy) -> (i64, i64) {
    (
        now_ms.saturating_sub(ms(policy.stale_after)),
        now_ms.saturating_sub(ms(policy.orphaned_after)),
    )
}

/// The earliest `requested_at` (ms) a row may have and still matter.
pub fn oldest_relevant(now_ms: i64, policy: &ClaimPolicy) -> i64 {
    now_ms.saturating_sub(ms(policy.key_lifetime.max(policy.window)))
}

fn answer_of(rec: LedgerRecord, by_key: bool) -> Claim {
    match rec.state {
        RecordState::Creating => Claim::InProgress(rec.row_id),
        RecordState::MaybeCreated => Claim::MaybeCreated(rec),
        RecordState::Created => Claim::Existing {
            record: rec,
            by_key,
        },
    }
}

/// The decision for one claim; `now_ms` is the store's clock.
pub fn decide(id: &CreateIdentity, policy: &ClaimPolicy, now_ms: i64, found: Found) -> Decision {
    if let Some(rec) = found.joined
        && rec.tenant == id.tenant
        && rec.args_hash == id.args_hash
        && (rec.state != RecordState::Created || rec.dedupable())
    {
        let by_key = rec.idempotency_key.is_some() && rec.idempotency_key == id.idempotency_key;
        return Decision::Answer(Box::new(answer_of(rec, by_key)));
    }
    if let Some(key) = &id.idempotency_key {
        let Some(rec) = found
            .by_key
            .filter(|r| r.tenant == id.tenant && r.idempotency_key.as_ref() == Some(key))
        else {
            return Decision::Reserve { free_key: None };
        };
        let expired = rec.requested_at_ms < now_ms.saturating_sub(ms(policy.key_lifetime));
        let dead = rec.state == RecordState::Created && !rec.dedupable();
        if expired || dead {
            return Decision::Reserve {
                free_key: Some(rec.row_id),
            };
        }
        if rec.args_hash != id.args_hash {
            return Decision::Answer(Box::new(Claim::KeyConflict(rec)));
        }
        return Decision::Answer(Box::new(answer_of(rec, true)));
    }
    let window_start = now_ms.saturating_sub(ms(policy.window));
    let maybe_start = now_ms.saturating_sub(ms(policy.key_lifetime));
    let hit = found.same_args.into_iter().find(|r| {
        r.tenant == id.tenant
            && r.args_hash == id.args_hash
            && match r.state {
                RecordState::Creating => true,
                RecordState::MaybeCreated => r.requested_at_ms >= maybe_start,
                RecordState::Created => {
                    !policy.window.is_zero() && r.requested_at_ms >= window_start && r.dedupable()
                }
            }
    });
    match hit {
        Some(rec) => Decision::Answer(Box::new(answer_of(rec, false))),
        None => Decision::Reserve { free_key: None },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::video::VideoStatus;

    const NOW: i64 = 1_800_000_000_000;
    const MIN: i64 = 60_000;

    fn policy(window_min: u64) -> ClaimPolicy {
        ClaimPolicy {
            window: Duration::from_secs(window_min * 60),
            key_lifetime: Duration::from_secs(24 * 3600),
            stale_after: Duration::from_secs(150),
            orphaned_after: Duration::from_secs(10),
            joined: None,
        }
    }

    fn id(key: Option<&str>) -> CreateIdentity {
        CreateIdentity {
            tenant: "t".into(),
            args_hash: "h".into(),
            idempotency_key: key.map(String::from),
            prompt_preview: "p".into(),
        }
    }

    fn row(row_id: i64, state: RecordState, age_min: i64) -> LedgerRecord {
        LedgerRecord {
            row_id,
            tenant: "t".into(),
            state,
            task_id: (state == RecordState::Created).then(|| format!("task-{row_id}")),
            requested_at_ms: NOW - age_min * MIN,
            created_at: None,
            prompt_preview: "p".into(),
            args_hash: "h".into(),
            idempotency_key: None,
            status: None,
            upstream_status: None,
            progress: 0,
            video_urls: Vec::new(),
            links_expire_at: None,
            error: None,
            estimated_seconds: None,
            saved_path: None,
            size_bytes: None,
            note: None,
        }
    }

    fn keyed(mut r: LedgerRecord, key: &str) -> LedgerRecord {
        r.idempotency_key = Some(key.into());
        r
    }

    fn with(mut r: LedgerRecord, f: impl FnOnce(&mut LedgerRecord)) -> LedgerRecord {
        f(&mut r);
        r
    }

    fn failed(r: LedgerRecord) -> LedgerRecord {
        with(r, |r| r.status = Some(VideoStatus::Failed))
    }

    /// What the decision was, in one word, and the row it names.
    fn outcome(d: &Decision) -> (&'static str, Option<i64>) {
        let answer = match d {
            Decision::Reserve { free_key } => return ("reserve", *free_key),
            Decision::Answer(answer) => answer,
        };
        match answer.as_ref() {
            Claim::Existing { record, by_key } => (
                if *by_key {
                    "existing-by-key"
                } else {
                    "existing"
                },
                Some(record.row_id),
            ),
            Claim::InProgress(r) => ("in-progress", Some(*r)),
            Claim::MaybeCreated(r) => ("maybe-created", Some(r.row_id)),
            Claim::KeyConflict(r) => ("key-conflict", Some(r.row_id)),
            Claim::Reserved(r) => ("reserved?", Some(*r)),
        }
    }

    #[test]
    fn the_rules_as_a_table() {
        use RecordState::*;
        struct Case {
            name: &'static str,
            key: Option<&'static str>,
            window_min: u64,
            joined: Option<i64>,
            found: Found,
            want: (&'static str, Option<i64>),
        }
        let none = Found::default();
        let cases = vec![
            Case {
                name: "nothing known",
                key: None,
                window_min: 5,
                joined: None,
                found: none.clone(),
                want: ("reserve", None),
            },
            Case {
                name: "same args, created 2 min ago",
                key: None,
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![row(1, Created, 2)],
                    ..none.clone()
                },
                want: ("existing", Some(1)),
            },
            Case {
                name: "same args, created outside the window",
                key: None,
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![row(1, Created, 6)],
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "window 0 never reuses a finished create",
                key: None,
                window_min: 0,
                joined: None,
                found: Found {
                    same_args: vec![row(1, Created, 0)],
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "window 0 still waits for one in flight",
                key: None,
                window_min: 0,
                joined: None,
                found: Found {
                    same_args: vec![row(1, Creating, 0)],
                    ..none.clone()
                },
                want: ("in-progress", Some(1)),
            },
            Case {
                name: "a failed task is not reused",
                key: None,
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![failed(row(2, Created, 1))],
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "the newest match wins, a failed one is skipped",
                key: None,
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![failed(row(3, Created, 1)), row(2, Created, 2)],
                    ..none.clone()
                },
                want: ("existing", Some(2)),
            },
            Case {
                name: "maybe created blocks within the key lifetime",
                key: None,
                window_min: 0,
                joined: None,
                found: Found {
                    same_args: vec![row(1, MaybeCreated, 23 * 60)],
                    ..none.clone()
                },
                want: ("maybe-created", Some(1)),
            },
            Case {
                name: "maybe created expires with the key lifetime",
                key: None,
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![row(1, MaybeCreated, 25 * 60)],
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "another tenant's row never answers",
                key: None,
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![with(row(1, Created, 1), |r| r.tenant = "u".into())],
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "a key answers with its task",
                key: Some("k"),
                window_min: 5,
                joined: None,
                found: Found {
                    by_key: Some(keyed(row(4, Created, 60), "k")),
                    ..none.clone()
                },
                want: ("existing-by-key", Some(4)),
            },
            Case {
                name: "a key in flight is waited for",
                key: Some("k"),
                window_min: 5,
                joined: None,
                found: Found {
                    by_key: Some(keyed(row(4, Creating, 0), "k")),
                    ..none.clone()
                },
                want: ("in-progress", Some(4)),
            },
            Case {
                name: "a key with other arguments conflicts",
                key: Some("k"),
                window_min: 5,
                joined: None,
                found: Found {
                    by_key: Some(keyed(
                        with(row(4, Created, 1), |r| r.args_hash = "other".into()),
                        "k",
                    )),
                    ..none.clone()
                },
                want: ("key-conflict", Some(4)),
            },
            Case {
                name: "an expired key is freed and a new row reserved",
                key: Some("k"),
                window_min: 5,
                joined: None,
                found: Found {
                    by_key: Some(keyed(row(4, Created, 25 * 60), "k")),
                    ..none.clone()
                },
                want: ("reserve", Some(4)),
            },
            Case {
                name: "a key of a failed task is freed",
                key: Some("k"),
                window_min: 5,
                joined: None,
                found: Found {
                    by_key: Some(keyed(failed(row(4, Created, 1)), "k")),
                    ..none.clone()
                },
                want: ("reserve", Some(4)),
            },
            Case {
                name: "a new key ignores same-argument rows",
                key: Some("k2"),
                window_min: 5,
                joined: None,
                found: Found {
                    same_args: vec![row(1, Created, 1)],
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "the joined create answers outside the window",
                key: None,
                window_min: 0,
                joined: Some(7),
                found: Found {
                    joined: Some(row(7, Created, 1)),
                    ..none.clone()
                },
                want: ("existing", Some(7)),
            },
            Case {
                name: "a joined create that failed falls through",
                key: None,
                window_min: 5,
                joined: Some(7),
                found: Found {
                    joined: Some(failed(row(7, Created, 1))),
                    ..none.clone()
                },
                want: ("reserve", None),
            },
            Case {
                name: "a joined create that may exist is refused",
                key: None,
                window_min: 5,
                joined: Some(7),
                found: Found {
                    joined: Some(row(7, MaybeCreated, 1)),
                    ..none.clone()
                },
                want: ("maybe-created", Some(7)),
            },
            Case {
                name: "a joined keyed create answers by key",
                key: Some("k"),
                window_min: 5,
                joined: Some(7),
                found: Found {
                    joined: Some(keyed(row(7, Created, 1), "k")),
                    ..none.clone()
                },
                want: ("existing-by-key", Some(7)),
            },
        ];
        for c in cases {
            let mut p = policy(c.window_min);
            p.joined = c.joined;
            let d = decide(&id(c.key), &p, NOW, c.found);
            assert_eq!(outcome(&d), c.want, "{}", c.name);
        }
    }

    #[test]
    fn staleness_and_reach_come_from_the_policy() {
        let p = policy(5);
        assert_eq!(stale_before(NOW, &p), (NOW - 150_000, NOW - 10_000));
        assert_eq!(oldest_relevant(NOW, &p), NOW - 24 * 60 * MIN);
    }
}
