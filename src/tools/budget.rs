//! The per-user daily budget of a hosted server: how many videos each
//! signed-in user may create per UTC day on the operator's upstream key
//! (`HEYGEN_USER_DAILY_VIDEOS`). Counted in memory per process: a restart
//! or another replica starts its own count.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

const DAY: u64 = 86_400;

/// Shared counter; cheap to clone. The default has no limit.
#[derive(Debug, Clone, Default)]
pub struct UserBudget {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    limit: Option<u32>,
    /// Tenant → (UTC day number, videos counted that day).
    used: Mutex<HashMap<String, (u64, u32)>>,
}

/// One video reserved from a user's budget: given back when dropped, unless
/// [`Charge::keep`] says a video was bought.
#[derive(Debug)]
pub struct Charge {
    budget: UserBudget,
    tenant: String,
    day: u64,
    kept: bool,
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

fn today(now: SystemTime) -> (u64, u64) {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (secs / DAY, DAY - secs % DAY)
}

impl UserBudget {
    pub fn new(limit: Option<u32>) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: Mutex::default(),
            }),
        }
    }

    pub fn limit(&self) -> Option<u32> {
        self.inner.limit
    }

    /// Reserves one video for `tenant`; `Err` is the message to show when
    /// today's budget is used up (nothing is reserved then). No limit: `Ok(None)`.
    pub fn reserve(&self, tenant: &str) -> Result<Option<Charge>, String> {
        self.reserve_at(tenant, SystemTime::now())
    }

    fn reserve_at(&self, tenant: &str, now: SystemTime) -> Result<Option<Charge>, String> {
        let Some(limit) = self.inner.limit else {
            return Ok(None);
        };
        let (day, left) = today(now);
        let mut used = self
            .inner
            .used
            .lock()
            .map_err(|_| "the per-user budget is unavailable; try again".to_string())?;
        // Yesterday's counts are of no use any more.
        used.retain(|_, (d, _)| *d == day);
        let entry = used.entry(tenant.to_string()).or_insert((day, 0));
        if entry.1 >= limit {
            let hours = left / 3600;
            let minutes = (left % 3600) / 60;
            return Err(format!(
                "Daily video limit reached: this server lets each signed-in user create {limit} \
                 video(s) per day, and you have used them all today. The limit resets at \
                 00:00 UTC, in {hours} h {minutes:02} min. Nothing was created. Existing videos \
                 stay available (list_videos, get_video_status, download_video)."
            ));
        }
        entry.1 += 1;
        Ok(Some(Charge {
            budget: self.clone(),
            tenant: tenant.to_string(),
            day,
            kept: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_per_tenant_and_day_and_refunds_unbought() {
        let b = UserBudget::new(Some(2));
        let t0 = UNIX_EPOCH + Duration::from_secs(DAY * 100 + 3600);
        b.reserve_at("a", t0).unwrap().unwrap().keep();
        // Dropped without keep: given back.
        drop(b.reserve_at("a", t0).unwrap());
        b.reserve_at("a", t0).unwrap().unwrap().keep();
        let err = b.reserve_at("a", t0).unwrap_err();
        assert!(err.contains("resets at 00:00 UTC, in 23 h 00 min"), "{err}");
        // Another user has its own budget; the next day starts afresh.
        assert!(b.reserve_at("b", t0).unwrap().is_some());
        assert!(
            b.reserve_at("a", t0 + Duration::from_secs(DAY))
                .unwrap()
                .is_some()
        );
        assert!(UserBudget::default().reserve("a").unwrap().is_none());
    }
}
