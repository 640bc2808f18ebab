//! The per-user daily budget of a hosted server: how many videos each
//! signed-in user may create per UTC day on the operator's upstream key
//! (`HEYGEN_USER_DAILY_VIDEOS`).
//!
//! With a ledger, the day's count comes from it, so it holds across restarts
//! and across replicas sharing one database: every create of the user
//! requested since 00:00 UTC that the ledger recorded, whether created, in
//! flight or "maybe created" (a create that provably created nothing is not
//! counted). In one process, a user's budgeted creates are checked one after
//! another: the next check waits until the previous create has its outcome,
//! so a create in flight here is always counted once. Creates racing on two
//! replicas at the same instant can each see the other's still unrecorded
//! and both go through.
//!
//! Without a ledger (or when the embedded one is unusable) the count is kept
//! in memory per process: a restart or another replica starts its own. A
//! shared ledger that cannot answer refuses the create instead, as the
//! create itself would be.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::OwnedMutexGuard;

use crate::ledger::Ledger;

const DAY: u64 = 86_400;

/// Shared counter; cheap to clone. The default has no limit.
#[derive(Debug, Clone, Default)]
pub struct UserBudget {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    limit: Option<u32>,
    /// Tenant → (UTC day number, videos counted that day in this process).
    used: Mutex<HashMap<String, (u64, u32)>>,
    /// Tenant → the turn a budgeted create holds from its check to its outcome.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One video reserved from a user's budget: given back when dropped, unless
/// [`Charge::keep`] says a video was bought.
#[derive(Debug)]
pub struct Charge {
    budget: UserBudget,
    tenant: String,
    day: u64,
    kept: bool,
    /// Held until the create has its outcome (and, with a ledger, its row).
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Charge {
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Ok(mut used) = self.budget.inner.used.lock()
            && let Some((day, n)) = used.get_mut(&self.tenant)
            && *day == self.day
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// The UTC day number of `now` and the seconds left until it ends.
fn today(now: SystemTime) -> (u64, u64) {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (secs / DAY, DAY - secs % DAY)
}

fn day_start_ms(day: u64) -> i64 {
    i64::try_from(day.saturating_mul(DAY).saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn limit_reached(limit: u32, left: u64) -> String {
    let hours = left / 3600;
    let minutes = (left % 3600) / 60;
    format!(
        "Daily video limit reached: this server lets each signed-in user create {limit} \
         video(s) per day, and you have used them all today. The limit resets at 00:00 UTC, \
         in {hours} h {minutes:02} min. Nothing was created. Existing videos stay available \
         (list_videos, get_video_status, download_video)."
    )
}

const UNAVAILABLE: &str = "the per-user budget is unavailable; try again";

impl UserBudget {
    pub fn new(limit: Option<u32>) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                ..Inner::default()
            }),
        }
    }

    pub fn limit(&self) -> Option<u32> {
        self.inner.limit
    }

    /// Reserves one video for `tenant`, counting the day's creates in
    /// `ledger` when there is one; `Err` is the message to show when today's
    /// budget is used up or cannot be checked (nothing is reserved then).
    /// No limit: `Ok(None)`.
    pub async fn reserve(
        &self,
        tenant: &str,
        ledger: Option<&dyn Ledger>,
    ) -> Result<Option<Charge>, String> {
        if self.inner.limit.is_none() {
            return Ok(None);
        }
        let Some(ledger) = ledger else {
            return self.reserve_at(tenant, SystemTime::now(), 0, None);
        };
        let turn = self.turn(tenant)?.lock_owned().await;
        let now = SystemTime::now();
        let (day, _) = today(now);
        let recorded = match ledger.count_since(tenant, day_start_ms(day)).await {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(e) if ledger.shared() => {
                tracing::warn!("the daily budget could not be checked: {e}");
                return Err(format!(
                    "The video was not created: the daily video limit could not be checked, \
                     because the shared video ledger is unavailable ({e}). Nothing was sent to \
                     the video service and nothing was charged. Try again in a moment."
                ));
            }
            Err(e) => {
                tracing::debug!("counting the daily budget in memory: {e}");
                0
            }
        };
        self.reserve_at(tenant, now, recorded, Some(turn))
    }

    /// The turn of `tenant`'s budgeted creates in this process.
    fn turn(&self, tenant: &str) -> Result<Arc<tokio::sync::Mutex<()>>, String> {
        let mut turns = self
            .inner
            .turns
            .lock()
            .map_err(|_| UNAVAILABLE.to_string())?;
        // Turns nobody holds or waits for are of no use any more.
        turns.retain(|_, t| Arc::strong_count(t) > 1);
        Ok(turns.entry(tenant.to_string()).or_default().clone())
    }

    /// Reserves one video if neither this process's count nor `recorded`
    /// (the ledger's count of today) has reached the limit.
    fn reserve_at(
        &self,
        tenant: &str,
        now: SystemTime,
        recorded: u32,
        turn: Option<OwnedMutexGuard<()>>,
    ) -> Result<Option<Charge>, String> {
        let Some(limit) = self.inner.limit else {
            return Ok(None);
        };
        let (day, left) = today(now);
        let mut used = self
            .inner
            .used
            .lock()
            .map_err(|_| UNAVAILABLE.to_string())?;
        // Yesterday's counts are of no use any more.
        used.retain(|_, (d, _)| *d == day);
        let entry = used.entry(tenant.to_string()).or_insert((day, 0));
        if entry.1.max(recorded) >= limit {
            return Err(limit_reached(limit, left));
        }
        entry.1 += 1;
        Ok(Some(Charge {
            budget: self.clone(),
            tenant: tenant.to_string(),
            day,
            kept: false,
            _turn: turn,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ledger::{ClaimPolicy, CreateIdentity, SqliteLedger},
        video::NewVideo,
    };
    use std::time::Duration;

    #[test]
    fn counts_per_tenant_and_day_and_refunds_unbought() {
        let b = UserBudget::new(Some(2));
        let t0 = UNIX_EPOCH + Duration::from_secs(DAY * 100 + 3600);
        b.reserve_at("a", t0, 0, None).unwrap().unwrap().keep();
        // Dropped without keep: given back.
        drop(b.reserve_at("a", t0, 0, None).unwrap());
        b.reserve_at("a", t0, 0, None).unwrap().unwrap().keep();
        let err = b.reserve_at("a", t0, 0, None).unwrap_err();
        assert!(err.contains("resets at 00:00 UTC, in 23 h 00 min"), "{err}");
        // Another user has their own budget; the next day starts afresh.
        assert!(b.reserve_at("b", t0, 0, None).unwrap().is_some());
        assert!(
            b.reserve_at("a", t0 + Duration::from_secs(DAY), 0, None)
                .unwrap()
                .is_some()
        );
        // What the ledger recorded counts too.
        assert!(b.reserve_at("c", t0, 2, None).is_err());
    }

    /// A create's ledger row, as `create_video` records it.
    async fn record(ledger: &SqliteLedger, tenant: &str, prompt: &str) {
        let policy = ClaimPolicy {
            window: Duration::ZERO,
            key_lifetime: Duration::from_secs(DAY),
            stale_after: Duration::from_secs(120),
            orphaned_after: Duration::from_secs(60),
            joined: None,
        };
        let id = CreateIdentity::new(tenant.into(), &NewVideo::new(prompt), None);
        ledger.claim(id, policy).await.unwrap();
    }

    #[tokio::test]
    async fn the_ledger_count_holds_for_a_fresh_process() {
        let ledger = SqliteLedger::in_memory();
        record(&ledger, "u", "one").await;
        record(&ledger, "u", "two").await;
        // A budget that has counted nothing itself (another replica's).
        let b = UserBudget::new(Some(2));
        let err = b.reserve("u", Some(&ledger)).await.unwrap_err();
        assert!(err.contains("Daily video limit reached"), "{err}");
        let other = b.reserve("v", Some(&ledger)).await.unwrap();
        assert!(other.is_some());
        assert!(
            UserBudget::default()
                .reserve("u", None)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_create_in_flight_here_is_counted_once() {
        let ledger = SqliteLedger::in_memory();
        let b = UserBudget::new(Some(2));
        let first = b.reserve("u", Some(&ledger)).await.unwrap().unwrap();
        record(&ledger, "u", "one").await;
        let mut second = Box::pin(b.reserve("u", Some(&ledger)));
        // The next check waits for the first create's outcome...
        assert!(futures::poll!(second.as_mut()).is_pending());
        // ...and then counts it once: one of two used.
        first.keep();
        let second = second.await.unwrap().unwrap();
        record(&ledger, "u", "two").await;
        second.keep();
        assert!(b.reserve("u", Some(&ledger)).await.is_err());
        // Another user never waits for this one's turn.
        let held = b.reserve("v", Some(&ledger)).await.unwrap().unwrap();
        assert!(b.reserve("w", Some(&ledger)).await.unwrap().is_some());
        drop(held);
    }
}
