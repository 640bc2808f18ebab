//! Progress notifications for a bounded wait (DESIGN.md §8 "Progress"): sent
//! only when the request carries a `progressToken`, on every change of status
//! or progress and at least every heartbeat, with strictly increasing values
//! (`max(last + 0.1, upstream)`, below 100 until the task is finished, 100 when
//! it is), total 100 and the upstream status as message. The final update is
//! written out before the result, and the result then waits a moment, so a
//! client that handles notifications on their own tasks still finds the
//! request open when its last update is handled.

use std::time::Duration;

use rmcp::{
    model::{ProgressNotificationParam, ProgressToken},
    service::{Peer, RequestContext, RoleServer},
};
use tokio::time::Instant;

use super::view::{VideoStatus, VideoTask};

/// The highest value sent while a task is still running.
const RUNNING_CAP: f64 = 99.9;
/// The smallest step between two values.
const STEP: f64 = 0.1;
/// How long the result waits after the final (100) update was written.
const FINAL_SETTLE: Duration = Duration::from_millis(50);

/// The next value to send, or `None` when no strictly larger value is possible
/// (then nothing is sent: a value is never repeated).
pub fn next_value(last: Option<f64>, upstream: f64, finished: bool) -> Option<f64> {
    let upstream = if upstream.is_finite() {
        upstream.clamp(0.0, 100.0)
    } else {
        0.0
    };
    if finished {
        return match last {
            Some(l) if l >= 100.0 => None,
            _ => Some(100.0),
        };
    }
    let Some(last) = last else {
        return Some(round1(upstream).min(RUNNING_CAP));
    };
    let candidate = round1((last + STEP).max(upstream)).min(RUNNING_CAP);
    if candidate > last {
        return Some(candidate);
    }
    // At the cap: creep towards 100 without reaching it, while floats allow.
    let halfway = last + (100.0 - last) / 2.0;
    (halfway > last && halfway < 100.0).then_some(halfway)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Sends the notifications of one request.
pub struct ProgressReporter {
    token: Option<ProgressToken>,
    peer: Peer<RoleServer>,
    heartbeat: Duration,
    last_value: Option<f64>,
    last_seen: Option<(VideoStatus, String, u8)>,
    last_sent: Option<Instant>,
    done: bool,
}

impl ProgressReporter {
    pub fn new(ctx: &RequestContext<RoleServer>, heartbeat: Duration) -> Self {
        Self {
            token: ctx.meta.get_progress_token(),
            peer: ctx.peer.clone(),
            heartbeat,
            last_value: None,
            last_seen: None,
            last_sent: None,
            done: false,
        }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some() && !self.done
    }

    /// When the next heartbeat is due, if notifications are on.
    pub fn heartbeat_at(&self) -> Option<Instant> {
        if !self.enabled() {
            return None;
        }
        Some(
            self.last_sent
                .map_or_else(Instant::now, |t| t + self.heartbeat),
        )
    }

    /// After a status lookup: notify when anything changed, the task finished
    /// or the heartbeat is due.
    pub async fn observe(&mut self, view: &VideoTask) {
        if !self.enabled() {
            return;
        }
        let seen = (view.status, view.upstream_status.clone(), view.progress);
        let changed = self.last_seen.as_ref() != Some(&seen);
        self.last_seen = Some(seen);
        let due = self.heartbeat_at().is_some_and(|t| t <= Instant::now());
        if changed || due || view.status.is_finished() {
            self.send(view).await;
        }
    }

    /// A heartbeat without a new lookup: the same status, a slightly higher value.
    pub async fn beat(&mut self, view: &VideoTask) {
        if self.enabled() {
            self.send(view).await;
        }
    }

    async fn send(&mut self, view: &VideoTask) {
        let Some(token) = self.token.clone() else {
            return;
        };
        let finished = view.status.is_finished();
        // Whatever happens below, the next heartbeat is measured from now.
        self.last_sent = Some(Instant::now());
        let Some(value) = next_value(self.last_value, f64::from(view.progress), finished) else {
            return;
        };
        self.last_value = Some(value);
        if finished {
            self.done = true;
        }
        let message = if view.upstream_status.is_empty() {
            view.status.as_str().to_string()
        } else {
            view.upstream_status.clone()
        };
        let param = ProgressNotificationParam::new(token, value)
            .with_total(100.0)
            .with_message(message);
        // Returns once the transport has written the notification.
        match self.peer.notify_progress(param).await {
            Ok(()) if finished => {
                tokio::task::yield_now().await;
                tokio::time::sleep(FINAL_SETTLE).await;
            }
            Ok(()) => {}
            Err(e) => {
                // The client went away; stop notifying, the wait ends on its own.
                tracing::debug!("progress notification not delivered: {e}");
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_strictly_increase_and_stay_below_100_until_finished() {
        let mut last = None;
        let mut seen = Vec::new();
        // Upstream progress that stalls, jumps, goes back and reports 100 early.
        for up in [0.0, 0.0, 0.0, 40.0, 40.0, 30.0, 99.0, 100.0, 100.0, 100.0] {
            let v = next_value(last, up, false).unwrap();
            assert!(last.is_none_or(|l| v > l), "{v} after {last:?}");
            assert!(v < 100.0, "{v}");
            last = Some(v);
            seen.push(v);
        }
        assert_eq!(&seen[..4], &[0.0, 0.1, 0.2, 40.0]);
        assert_eq!(seen[5], 40.2);
        let fin = next_value(last, 100.0, true).unwrap();
        assert_eq!(fin, 100.0);
        assert_eq!(next_value(Some(100.0), 100.0, true), None);
    }

    #[test]
    fn creeping_at_the_cap_never_repeats_or_reaches_100() {
        let mut last = Some(RUNNING_CAP);
        for _ in 0..200 {
            match next_value(last, 100.0, false) {
                Some(v) => {
                    assert!(v > last.unwrap() && v < 100.0);
                    last = Some(v);
                }
                None => return,
            }
        }
    }

    #[test]
    fn odd_upstream_values_are_tamed() {
        assert_eq!(next_value(None, f64::NAN, false), Some(0.0));
        assert_eq!(next_value(None, -5.0, false), Some(0.0));
        assert_eq!(next_value(None, 250.0, false), Some(RUNNING_CAP));
        assert_eq!(next_value(None, 0.0, true), Some(100.0));
    }
}
