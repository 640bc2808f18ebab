//! The seam between the tools and an upstream video API. A backend turns the
//! backend-neutral requests of [`crate::video`] into its own wire calls and
//! its answers into [`TaskSnapshot`]s, maps its own error envelope into an
//! [`UpstreamError`], and states what it can do in [`Capabilities`] (how long
//! links live, how long renders take, how large an upload may be); whether it
//! can stop a video is the answer of [`VideoBackend::cancel`]. The gateway (`crate::gateway`, UPSTREAM.md) and HeyGen's own
//! v3 API (`crate::heygen`, HEYGEN_V3.md) are the two implementations; the
//! HTTP exchange both use (retries, redirects, capped bodies) is [`http`].

pub mod catalog;
pub mod error;
pub mod http;
pub mod lenient;
pub mod secret;

use std::{fmt, time::Duration};

use futures::future::BoxFuture;

pub use catalog::{
    Avatar, AvatarQuery, Catalog, CatalogPage, Look, LookQuery, Ownership, Style, StyleQuery,
    Voice, VoiceQuery,
};
pub use error::{MONEY_RULE, Operation, RedirectRefusal, Upstream, UpstreamError};
pub use secret::ApiKey;

use crate::video::{Balance, FileRef, NewVideo, TaskSnapshot};

/// Which upstream API a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The gateway's task API (UPSTREAM.md), the default.
    #[default]
    Gateway,
    /// HeyGen's own v3 API (HEYGEN_V3.md).
    Heygen,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Gateway => "gateway",
            BackendKind::Heygen => "heygen",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "gateway" => Some(BackendKind::Gateway),
            "heygen" | "v3" => Some(BackendKind::Heygen),
            _ => None,
        }
    }
}

/// How long a finished video's links work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLifetime {
    /// A fixed time after the task was created (the gateway: 24 h).
    AfterCreation(Duration),
    /// Each status lookup hands out a fresh link that lives about this long
    /// (HeyGen: about 7 days); the expiry is read from the link itself.
    Renewed(Duration),
}

impl LinkLifetime {
    /// "24 h after creation", "about 7 days after the latest status check":
    /// reads naturally after "links expire" or "links live".
    pub fn describe(self) -> String {
        match self {
            LinkLifetime::AfterCreation(d) => format!("{} after creation", span(d)),
            LinkLifetime::Renewed(d) => format!("about {} after the latest status check", span(d)),
        }
    }
}

/// `24 h`, `7 days`, `90 min`.
pub fn span(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 2 * 86_400 && secs.is_multiple_of(86_400) {
        format!("{} days", secs / 86_400)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else {
        format!("{} min", secs.div_ceil(60).max(1))
    }
}

/// What a backend can do; the tools word their advice from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    pub kind: BackendKind,
    pub links: LinkLifetime,
    /// How long a render usually takes, in words ("a few minutes").
    pub typical_render: &'static str,
    /// A sensible first pause before checking a new task, and between checks.
    pub poll_after: Duration,
    /// The shortest poll interval announced to MCP Tasks clients.
    pub min_task_poll: Duration,
    /// Largest local file the upload endpoint takes.
    pub max_upload_bytes: u64,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The upstream accepted the stop; a stopped run may still be billed.
    Requested,
    /// The backend has no way to stop a video.
    Unsupported,
}

/// One upstream video API. Every call takes the caller's key; a call never
/// retries a create unless nothing can have been sent (see [`http`]).
pub trait VideoBackend: Send + Sync + fmt::Debug {
    fn capabilities(&self) -> &Capabilities;

    /// The HTTP settings the backend runs with.
    fn http_config(&self) -> &http::HttpConfig;

    /// `HEYGEN_API_BASE` as configured (origin plus optional prefix).
    fn base_url(&self) -> &str {
        &self.http_config().base_url
    }

    /// How long one create may take at most, retries included: the time
    /// after which a claim without an outcome counts as abandoned.
    fn create_deadline(&self) -> Duration {
        let c = self.http_config();
        c.timeout + c.retry.create_budget
    }

    /// Starts one video. Sent once; see the money rule in UPSTREAM.md.
    fn create<'a>(
        &'a self,
        key: &'a ApiKey,
        video: &'a NewVideo,
    ) -> BoxFuture<'a, Result<TaskSnapshot, UpstreamError>>;

    /// Where the task stands now, with fresh links when it is finished.
    fn status<'a>(
        &'a self,
        key: &'a ApiKey,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskSnapshot, UpstreamError>>;

    /// The key's balance.
    fn balance<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<Balance, UpstreamError>>;

    /// Uploads one local file as reference material (sent once).
    fn upload<'a>(
        &'a self,
        key: &'a ApiKey,
        file_name: &'a str,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<FileRef, UpstreamError>>;

    /// Asks the upstream to stop a running video.
    fn cancel<'a>(
        &'a self,
        _key: &'a ApiKey,
        _task_id: &'a str,
    ) -> BoxFuture<'a, Result<Cancelled, UpstreamError>> {
        Box::pin(async { Ok(Cancelled::Unsupported) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_lifetimes_read_naturally() {
        assert_eq!(span(Duration::from_secs(24 * 3600)), "24 h");
        assert_eq!(span(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(span(Duration::from_secs(90 * 60)), "90 min");
        assert_eq!(
            LinkLifetime::AfterCreation(Duration::from_secs(86_400)).describe(),
            "24 h after creation"
        );
        assert!(
            LinkLifetime::Renewed(Duration::from_secs(7 * 86_400))
                .describe()
                .contains("7 days")
        );
        assert_eq!(BackendKind::parse(" HeyGen "), Some(BackendKind::Heygen));
        assert_eq!(BackendKind::parse("other"), None);
    }
}
