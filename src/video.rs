//! Domain types every layer may use; no I/O, no wire formats, no MCP.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The quota an unlimited New-API key reports as its total (1e8).
pub const UNLIMITED_QUOTA: f64 = 100_000_000.0;

/// A key's balance, typed the same way whatever the upstream's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct Credits {
    /// What is left; absent when unlimited or not reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<f64>,
    /// What has been spent so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<f64>,
    /// The key's total quota; absent when unlimited or not reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// The key has no quota limit.
    pub unlimited: bool,
    /// The unit, when the upstream names it (gateways show USD, CNY or tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Credits {
    /// From a gateway's total quota and its usage (already in the quota's unit).
    pub fn from_quota(total: Option<f64>, used: Option<f64>, unit: Option<String>) -> Self {
        let unlimited = total.is_some_and(|t| t >= UNLIMITED_QUOTA);
        let total = total.filter(|_| !unlimited);
        let remaining = match (total, used) {
            (Some(t), Some(u)) => Some(round(t - u)),
            _ => None,
        };
        Self {
            remaining,
            used: used.map(round),
            total: total.map(round),
            unlimited,
            unit,
        }
    }

    /// How many videos at `price` the remaining balance pays for.
    pub fn videos_affordable(&self, price: f64) -> Option<u64> {
        if self.unlimited || price <= 0.0 {
            return None;
        }
        let left = self.remaining?;
        Some((left.max(0.0) / price + 1e-9).floor() as u64)
    }
}

/// Landscape or portrait output; omitted means the agent decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Orientation {
    Landscape,
    Portrait,
}

impl Orientation {
    pub fn as_str(self) -> &'static str {
        match self {
            Orientation::Landscape => "landscape",
            Orientation::Portrait => "portrait",
        }
    }
}

/// A reference file for the agent, as the backend will fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileRef {
    /// A public http(s) URL.
    Url(String),
    /// An asset the backend already holds (an upload's id).
    Asset(String),
}

/// A validated, backend-neutral create request. `None` and empty fields are
/// left out of the upstream body: "let the agent decide".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVideo {
    pub prompt: String,
    pub avatar_id: Option<String>,
    pub voice_id: Option<String>,
    pub style_id: Option<String>,
    pub orientation: Option<Orientation>,
    /// Reference files: the caller's URLs first, then uploads.
    pub files: Vec<FileRef>,
    pub incognito_mode: Option<bool>,
}

impl NewVideo {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// The URLs among the reference files.
    pub fn file_urls(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|f| match f {
                FileRef::Url(u) => Some(u.clone()),
                FileRef::Asset(_) => None,
            })
            .collect()
    }
}

/// What any backend reports about one task, in real types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSnapshot {
    /// The id that finds the task again; may be empty when the upstream
    /// omitted it (the caller's id is then used).
    pub task_id: String,
    pub status: VideoStatus,
    /// The upstream's own status word(s).
    pub upstream_status: String,
    /// 0–100.
    pub progress: u8,
    pub created_at: Option<SystemTime>,
    /// MP4 URLs; empty until completed.
    pub video_urls: Vec<String>,
    /// When the URLs stop working, when known.
    pub links_expire_at: Option<SystemTime>,
    pub error: Option<TaskErrorView>,
    /// The upstream's render time estimate.
    pub estimated_seconds: Option<u64>,
    /// A still of the finished video.
    pub thumbnail_url: Option<String>,
    /// The finished video with burnt-in captions, when the upstream makes one.
    pub captioned_video_url: Option<String>,
    /// Length of the finished video.
    pub duration: Option<Duration>,
}

/// A balance, the price of one video when known, and the raw answers.
#[derive(Debug, Clone)]
pub struct Balance {
    pub credits: Credits,
    pub price_per_video: Option<f64>,
    pub upstream: serde_json::Value,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum VideoStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
    /// An upstream status this server does not know; treated as still running.
    #[default]
    Unknown,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Pending => "pending",
            VideoStatus::Processing => "processing",
            VideoStatus::Completed => "completed",
            VideoStatus::Failed => "failed",
            VideoStatus::Cancelled => "cancelled",
            VideoStatus::Unknown => "unknown",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            VideoStatus::Completed | VideoStatus::Failed | VideoStatus::Cancelled
        )
    }
}

/// Why a task failed, as the upstream reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)] // no "$ref" in outputSchema: some clients cannot resolve it
pub struct TaskErrorView {
    /// Upstream error code.
    pub code: Option<String>,
    /// Upstream error message.
    pub message: String,
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `2200 bytes`, `1.5 MiB`: a size for the text summary.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} bytes")
    } else if f < KIB * KIB {
        format!("{:.1} KiB, {n} bytes", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB, {n} bytes", f / (KIB * KIB))
    } else {
        format!("{:.2} GiB, {n} bytes", f / (KIB * KIB * KIB))
    }
}

/// Six decimals are plenty for a balance and keep float noise out of answers.
fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_arithmetic() {
        let c = Credits::from_quota(Some(100.0), Some(12.34), None);
        assert_eq!(c.remaining, Some(87.66));
        assert!(!c.unlimited);
        assert_eq!(c.videos_affordable(2.5), Some(35));
        let u = Credits::from_quota(Some(UNLIMITED_QUOTA), Some(5.0), None);
        assert!(u.unlimited);
        assert_eq!((u.total, u.remaining, u.used), (None, None, Some(5.0)));
        assert_eq!(u.videos_affordable(2.5), None);
        let over = Credits::from_quota(Some(1.0), Some(3.0), None);
        assert_eq!(over.remaining, Some(-2.0));
        assert_eq!(over.videos_affordable(1.0), Some(0));
        assert_eq!(Credits::from_quota(None, Some(1.0), None).remaining, None);
    }
}
