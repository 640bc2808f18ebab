//! `UpstreamError` and the one place where every failure of an upstream video API
//! becomes the sentence a user (or the model acting for them) can act on.
//! Every row of the error tables in `shared/UPSTREAM.md` (the gateway) and
//! `shared/HEYGEN_V3.md` §1 (HeyGen's own API) is mapped here.

use std::time::Duration;

use super::BackendKind;

/// Which upstream operation failed: the advice differs (the money rule applies
/// to create only; a 404 means something else for a task lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    GetTask,
    Credits,
    Download,
    Upload,
    Cancel,
    Catalog,
}

/// Why a redirect from the upstream was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectRefusal {
    /// A create is never re-sent, wherever the redirect points.
    NotFollowed,
    /// The target is another origin: the key is not sent there.
    OtherOrigin,
    /// More same-origin redirects than a lookup follows.
    TooMany,
    /// The answer says "redirect" but names no usable target.
    NoTarget,
}

/// Which API answered: the same status means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upstream {
    #[default]
    Gateway,
    Heygen,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No upstream key is configured for this caller.
    #[error("no HeyGen API key is configured")]
    MissingKey {
        /// Over HTTP the caller may send its own key in a header.
        header_hint: bool,
        /// Whose key is missing: the advice names it.
        backend: BackendKind,
    },
    /// Over HTTP the operator requires each caller to send its own key, and
    /// this caller sent none (or one that is not usable).
    #[error("this server requires the caller's own HeyGen API key")]
    CallerKeyRequired {
        /// A header was sent but could not be used (blank, not ASCII).
        unusable: bool,
        /// Whose key the header must carry: the advice names it.
        backend: BackendKind,
    },
    /// A task id that does not match the allowlist; never sent upstream.
    #[error("invalid task id: {reason}")]
    InvalidTaskId { reason: String },
    /// The upstream answered with a non-2xx status.
    #[error("upstream answered HTTP {status}")]
    Api {
        upstream: Upstream,
        status: u16,
        code: Option<String>,
        /// The request field the upstream names as wrong.
        param: Option<String>,
        message: String,
        request_id: Option<String>,
        retry_after: Option<Duration>,
    },
    /// The upstream answered with a redirect (3xx) that was not followed. A
    /// redirect means the request was not processed where it was sent.
    #[error("the upstream answered HTTP {status} (a redirect)")]
    Redirect {
        status: u16,
        /// Where it pointed, without userinfo, query or fragment.
        target: Option<String>,
        /// The `HEYGEN_API_BASE` the target suggests, when it is the same
        /// endpoint under another origin or prefix.
        suggested_base: Option<String>,
        refusal: RedirectRefusal,
    },
    /// The request could not be delivered: nothing reached the upstream.
    #[error("could not connect to the upstream: {detail}")]
    Connect { detail: String },
    /// No complete answer within the timeout; the request may have been received.
    #[error("the upstream did not answer within {timeout:?}")]
    Timeout { timeout: Duration },
    /// The connection broke after the request may have been sent.
    #[error("the connection to the upstream broke: {detail}")]
    Transport { detail: String },
    /// A 2xx answer we could not understand.
    #[error("the upstream sent an answer that could not be read: {detail}")]
    Decode { status: u16, detail: String },
}

impl UpstreamError {
    /// True when the request provably never reached the upstream.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::MissingKey { .. }
                | UpstreamError::CallerKeyRequired { .. }
                | UpstreamError::InvalidTaskId { .. }
                | UpstreamError::Connect { .. }
        )
    }

    /// True when a create that failed this way may nevertheless have created
    /// (and billed) a video upstream.
    pub fn create_may_have_happened(&self) -> bool {
        match self {
            UpstreamError::Timeout { .. }
            | UpstreamError::Transport { .. }
            | UpstreamError::Decode { .. } => true,
            UpstreamError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Api { status, .. }
            | UpstreamError::Decode { status, .. }
            | UpstreamError::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The upstream does not know the task (or it belongs to another key).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Api { status: 404, .. })
    }

    /// Whether a retry of an idempotent request could help.
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Api { status, .. } => *status == 429 || *status >= 500,
            UpstreamError::Connect { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::Transport { .. } => true,
            _ => false,
        }
    }

    /// The user-facing message: what happened, the upstream's own details
    /// (status, code, request id) and one sentence of advice.
    pub fn user_message(&self, op: Operation) -> String {
        let what = match op {
            Operation::Create => "Creating the video failed",
            Operation::GetTask => "Looking up the video task failed",
            Operation::Credits => "Reading the credit balance failed",
            Operation::Download => "Downloading the video failed",
            Operation::Upload => "The upload failed",
            Operation::Cancel => "Stopping the video failed",
            Operation::Catalog => "Looking up the catalogue failed",
        };
        let mut msg = match self {
            UpstreamError::MissingKey {
                header_hint,
                backend,
            } => {
                let key = match backend {
                    BackendKind::Gateway => "task-API key",
                    BackendKind::Heygen => "HeyGen API key (from app.heygen.com/settings/api)",
                };
                let mut m = format!(
                    "{what}: no HeyGen API key is configured. Set the environment variable \
                     HEYGEN_API_KEY to your {key} in the \"env\" block of this MCP server's \
                     entry in your client's configuration (e.g. claude_desktop_config.json or \
                     .mcp.json), then restart the client. To try the server without a key, start \
                     it with --simulate."
                );
                if *header_hint {
                    m.push_str(
                        " Over HTTP you can instead send your own key in the X-HeyGen-Api-Key header.",
                    );
                }
                return m;
            }
            UpstreamError::CallerKeyRequired { unusable, backend } => {
                let key = match backend {
                    BackendKind::Gateway => "task-API key",
                    BackendKind::Heygen => "HeyGen API key",
                };
                let why = if *unusable {
                    "the X-HeyGen-Api-Key header this request sent is blank or not plain ASCII"
                } else {
                    "this server spends each caller's own credits, and this request sent no key"
                };
                return format!(
                    "{what}: {why}. Add the header X-HeyGen-Api-Key: <your {key}> to this \
                     server's entry in your MCP client's configuration (the \"headers\" block \
                     next to its URL), then reconnect."
                );
            }
            UpstreamError::InvalidTaskId { reason } => {
                return format!(
                    "Invalid task_id: {reason}. Use the task_id exactly as create_video returned it \
                     (letters, digits and . _ : - only, at most 128 characters)."
                );
            }
            UpstreamError::Api {
                upstream,
                status,
                code,
                param,
                message,
                request_id,
                retry_after,
            } => {
                let mut m = format!("{what}: the upstream answered HTTP {status}");
                if let Some(code) = code {
                    m.push_str(&format!(" ({code})"));
                }
                if let Some(param) = param
                    && !message.contains(param.as_str())
                {
                    m.push_str(&format!(" about the field {param}"));
                }
                if !message.is_empty() {
                    m.push_str(&format!(": {message}"));
                }
                if let Some(id) = request_id
                    && !message.contains(id.as_str())
                {
                    m.push_str(&format!(" [request_id: {id}]"));
                }
                m.push_str(". ");
                let advice = match upstream {
                    Upstream::Heygen => {
                        heygen_advice(op, *status, code.as_deref(), param.as_deref(), *retry_after)
                    }
                    Upstream::Gateway => None,
                };
                m.push_str(
                    &advice
                        .unwrap_or_else(|| api_advice(op, *status, code.as_deref(), *retry_after)),
                );
                m
            }
            UpstreamError::Redirect {
                status,
                target,
                suggested_base,
                refusal,
            } => redirect_message(
                what,
                op,
                *status,
                target.as_deref(),
                suggested_base.as_deref(),
                *refusal,
            ),
            UpstreamError::Connect { detail } => format!(
                "{what}: could not reach the upstream ({detail}). Nothing was sent. Check the \
                 network connection and the HEYGEN_API_BASE setting, then try again."
            ),
            UpstreamError::Timeout { timeout } => format!(
                "{what}: the upstream did not answer within {} s. It may be overloaded; try again \
                 in a minute (HEYGEN_REQUEST_TIMEOUT raises the limit).",
                timeout.as_secs_f64().round()
            ),
            UpstreamError::Transport { detail } => format!(
                "{what}: the connection to the upstream broke ({detail}). This is usually \
                 temporary; try again in a minute."
            ),
            UpstreamError::Decode { status, detail } => format!(
                "{what}: the upstream answered HTTP {status} but the answer could not be read \
                 ({detail}). Check that HEYGEN_API_BASE points at the API that --backend \
                 names (the task API for gateway, https://api.heygen.com for heygen)."
            ),
        };
        if op == Operation::Create && self.create_may_have_happened() {
            msg.push_str(MONEY_RULE);
        }
        msg
    }
}

/// The money rule in words (DESIGN.md §8).
pub const MONEY_RULE: &str = " IMPORTANT: the request may have reached the upstream, so the video \
may already have been created and billed. Do NOT call create_video again blindly: first check \
with list_videos (or ask the user for the task id and use get_video_status), or wait a few \
minutes and ask the user before trying again.";

fn redirect_message(
    what: &str,
    op: Operation,
    status: u16,
    target: Option<&str>,
    suggested_base: Option<&str>,
    refusal: RedirectRefusal,
) -> String {
    let to = match target {
        Some(t) => format!("a redirect to {t}"),
        None => "a redirect without a usable target".to_string(),
    };
    let mut m = format!("{what}: the upstream answered HTTP {status}, {to}. ");
    m.push_str(match (op, refusal) {
        (Operation::Create, _) => {
            "A redirect means the request was not processed there: nothing was created and \
             nothing was billed. This server never re-sends a paid create to another address. "
        }
        (_, RedirectRefusal::OtherOrigin) => {
            "That is another host (or scheme or port) than HEYGEN_API_BASE, and this server \
             does not send the API key anywhere else, so the redirect was not followed. "
        }
        (_, RedirectRefusal::TooMany) => {
            "It kept redirecting (more than 3 times), so this server stopped following. "
        }
        _ => "The redirect was not followed. ",
    });
    m.push_str("Fix the HEYGEN_API_BASE setting: it must name the task API itself");
    if let Some(base) = suggested_base {
        m.push_str(&format!(
            " (the redirect suggests setting it to {base} if you trust that address)"
        ));
    }
    m.push_str(", then restart the client and try again.");
    m
}

/// HeyGen's own codes (HEYGEN_V3.md §1), compared case-insensitively; `None`
/// leaves the advice to the status-based table.
fn heygen_advice(
    op: Operation,
    status: u16,
    code: Option<&str>,
    param: Option<&str>,
    retry_after: Option<Duration>,
) -> Option<String> {
    let code = code.map(str::to_ascii_lowercase);
    let advice = match (status, code.as_deref()) {
        (_, Some("insufficient_credit")) => "The HeyGen account has too few credits for this \
             video: top up at app.heygen.com (or choose a shorter video), then try again."
            .to_string(),
        (_, Some("avatar_not_found")) => "No such avatar: pass an avatar_id exactly as \
             list_avatars returns it (a look's id), or omit avatar_id to let the agent choose."
            .to_string(),
        (_, Some("voice_not_found")) => "No such voice: pass a voice_id exactly as list_voices \
             returns it, or omit voice_id to let the agent choose."
            .to_string(),
        (_, Some("voice_not_usable")) => "This voice cannot be used with this account or \
             avatar: choose another from list_voices, or omit voice_id."
            .to_string(),
        (_, Some("video_not_found" | "resource_not_found" | "not_found"))
            if op == Operation::GetTask =>
        {
            "No such task: the task_id is wrong, or it belongs to another HeyGen API key. Use \
             the id exactly as create_video returned it."
                .to_string()
        }
        (_, Some("download_failed")) => "HeyGen could not fetch one of file_urls: use a \
             public, direct https link, or pass the file in file_paths so it is uploaded."
            .to_string(),
        (_, Some("invalid_parameter" | "validation_error")) => match param {
            Some(p) => {
                format!("HeyGen rejected the field {p}: fix it as the message says and try again.")
            }
            None => "HeyGen rejected an argument: fix the field named in the message and try \
                     again."
                .to_string(),
        },
        (_, Some("payload_too_large")) => "The file or request is too large for HeyGen \
             (uploads take at most 32 MB): use a smaller file."
            .to_string(),
        (_, Some("request_in_progress")) => "The same request is still being processed by \
             HeyGen: wait a minute, then check with list_videos before trying again."
            .to_string(),
        (_, Some("ai_vendor_access_restricted" | "resource_access_denied" | "forbidden")) => {
            "The HeyGen plan or key is not allowed to do this (signing in again will not help): \
             check the plan and the key's permissions at app.heygen.com."
                .to_string()
        }
        (_, Some("quota_exceeded")) | (429, _) => match retry_after {
            Some(d) => format!(
                "HeyGen's limit is reached (at most 10 videos render at once on pay-as-you-go): \
                 wait {} s (Retry-After) before trying again.",
                d.as_secs().max(1)
            ),
            None => "HeyGen's limit is reached (at most 10 videos render at once on \
                     pay-as-you-go): wait a minute before trying again."
                .to_string(),
        },
        (401, _) => "HeyGen rejected the API key: check the HEYGEN_API_KEY setting (a current \
             key from app.heygen.com/settings/api) and restart the client."
            .to_string(),
        (402, _) => "The HeyGen account has too few credits: top up, then try again.".to_string(),
        (404, _) if op == Operation::GetTask => "No such task: the task_id is wrong, or it \
             belongs to another HeyGen API key."
            .to_string(),
        (404, _) => "The endpoint was not found: check that HEYGEN_API_BASE points at HeyGen's \
             API (https://api.heygen.com) when --backend heygen is used."
            .to_string(),
        (500..=599, _) => {
            "HeyGen is temporarily unavailable: try again in a few minutes.".to_string()
        }
        _ => return None,
    };
    Some(advice)
}

fn api_advice(
    op: Operation,
    status: u16,
    code: Option<&str>,
    retry_after: Option<Duration>,
) -> String {
    match (status, code) {
        (401, _) => "The API key was rejected: check the HEYGEN_API_KEY setting (a current, \
                     complete key for the task API) and restart the client."
            .into(),
        (402, _) => "The account's balance is too low: top up credits, then try again.".into(),
        (403, _) => "The key is not allowed to do this: check the key's permissions with the \
                     provider."
            .into(),
        (404, _) if op == Operation::GetTask => "No such task: the task_id is wrong, or the \
                     task belongs to another API key. Use the id exactly as create_video \
                     returned it."
            .into(),
        (404, _) if op == Operation::Credits => "This gateway answers none of the balance \
                     endpoints (/dashboard/billing/subscription, /v1/account/credits): check \
                     that HEYGEN_API_BASE points at the gateway (without a trailing /v1); its \
                     web dashboard also shows the balance."
            .into(),
        (404, _) => "The endpoint was not found: check that HEYGEN_API_BASE points at the task \
                     API (without a trailing /v1)."
            .into(),
        (422, Some("no_compatible_channel")) => "The gateway has no capacity for the video \
                     model right now (not a problem with the request): try again in a few \
                     minutes."
            .into(),
        (422, Some("model_not_found")) => "The gateway does not offer the heygen-video-agent \
                     model: check that HEYGEN_API_BASE points at a gateway that serves it."
            .into(),
        (422, Some("invalid_file_type")) => "One of file_urls points at a file type the agent \
                     cannot use: pass images, videos, audio or PDFs only."
            .into(),
        (422, Some("invalid_image_url")) => "One of file_urls could not be fetched as an \
                     image: use a public, direct https link to the file."
            .into(),
        (400 | 422, _) => "The upstream rejected an argument: fix the field named in the \
                     message and try again."
            .into(),
        (429, _) => match retry_after {
            Some(d) => format!(
                "Rate limited: wait {} s (Retry-After) before trying again.",
                d.as_secs().max(1)
            ),
            None => "Rate limited: wait a little (about 30 s) before trying again.".into(),
        },
        (500..=599, _) => "The gateway or its video channel is temporarily unavailable: try \
                     again in a few minutes."
            .into(),
        _ => "Unexpected answer from the upstream: try again later.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> UpstreamError {
        UpstreamError::Api {
            upstream: Upstream::Gateway,
            status,
            code: code.map(String::from),
            param: None,
            message: "upstream says so (request_id: req-123)".into(),
            request_id: Some("req-123".into()),
            retry_after: None,
        }
    }

    #[test]
    fn every_upstream_row_has_its_advice() {
        let cases: &[(u16, Option<&str>, Operation, &str)] = &[
            (401, None, Operation::GetTask, "check the HEYGEN_API_KEY"),
            (402, None, Operation::Create, "top up credits"),
            (
                404,
                None,
                Operation::GetTask,
                "task_id is wrong, or the task belongs to another API key",
            ),
            (
                422,
                Some("model_not_found"),
                Operation::Create,
                "does not offer the heygen-video-agent model",
            ),
            (
                422,
                Some("no_compatible_channel"),
                Operation::Create,
                "no capacity",
            ),
            (
                422,
                Some("invalid_file_type"),
                Operation::Create,
                "file type",
            ),
            (
                422,
                Some("invalid_image_url"),
                Operation::Create,
                "could not be fetched",
            ),
            (422, Some("other"), Operation::Create, "fix the field"),
            (429, None, Operation::GetTask, "Rate limited"),
            (500, None, Operation::GetTask, "temporarily unavailable"),
            (503, None, Operation::GetTask, "temporarily unavailable"),
        ];
        for (status, code, op, advice) in cases {
            let m = api(*status, *code).user_message(*op);
            assert!(m.contains(advice), "{status} {code:?}: {m}");
            assert!(m.contains(&format!("HTTP {status}")), "{m}");
            assert!(m.contains("req-123"), "request id kept: {m}");
            if let Some(c) = code {
                assert!(m.contains(c), "{m}");
            }
        }
    }

    #[test]
    fn heygen_codes_have_their_own_advice() {
        let v3 = |status: u16, code: &str, param: Option<&str>| UpstreamError::Api {
            upstream: Upstream::Heygen,
            status,
            code: Some(code.into()),
            param: param.map(String::from),
            message: "Your account has 5 credits but this video requires 10".into(),
            request_id: Some("req_1".into()),
            retry_after: None,
        };
        let cases: &[(u16, &str, Option<&str>, Operation, &str)] = &[
            (
                402,
                "insufficient_credit",
                None,
                Operation::Create,
                "top up",
            ),
            (
                404,
                "AVATAR_NOT_FOUND",
                None,
                Operation::Create,
                "list_avatars",
            ),
            (
                404,
                "voice_not_found",
                None,
                Operation::Create,
                "list_voices",
            ),
            (
                400,
                "invalid_parameter",
                Some("style_id"),
                Operation::Create,
                "field style_id",
            ),
            (404, "not_found", None, Operation::GetTask, "No such task"),
            (
                429,
                "rate_limit_exceeded",
                None,
                Operation::Create,
                "wait a minute",
            ),
            (
                500,
                "internal_error",
                None,
                Operation::GetTask,
                "HeyGen is temporarily",
            ),
        ];
        for (status, code, param, op, advice) in cases {
            let m = v3(*status, code, *param).user_message(*op);
            assert!(m.contains(advice), "{status} {code}: {m}");
            assert!(m.contains("req_1"), "{m}");
        }
        let gw = api(500, None).user_message(Operation::GetTask);
        assert!(gw.contains("gateway"), "{gw}");
    }

    #[test]
    fn an_unreadable_answer_names_the_base_of_either_backend() {
        let m = UpstreamError::Decode {
            status: 200,
            detail: "not JSON".into(),
        }
        .user_message(Operation::Credits);
        assert!(
            m.contains("HEYGEN_API_BASE") && m.contains("--backend"),
            "{m}"
        );
        assert!(m.contains("task API for gateway"), "{m}");
        assert!(m.contains("https://api.heygen.com for heygen"), "{m}");
    }

    #[test]
    fn retry_after_is_reported() {
        let e = UpstreamError::Api {
            upstream: Upstream::Gateway,
            status: 429,
            code: None,
            param: None,
            message: String::new(),
            request_id: None,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(e.user_message(Operation::Create).contains("wait 7 s"));
    }

    #[test]
    fn money_rule_only_when_create_may_have_happened() {
        let maybe = [
            api(500, None),
            UpstreamError::Timeout {
                timeout: Duration::from_secs(30),
            },
            UpstreamError::Transport {
                detail: "reset".into(),
            },
        ];
        for e in maybe {
            let m = e.user_message(Operation::Create);
            assert!(m.contains("may already have been created"), "{m}");
            assert!(m.contains("Do NOT call create_video again"), "{m}");
            assert!(!e.user_message(Operation::GetTask).contains("may already"));
        }
        let definitely_not = [
            api(401, None),
            api(402, None),
            api(422, Some("no_compatible_channel")),
            api(429, None),
            UpstreamError::Connect {
                detail: "refused".into(),
            },
        ];
        for e in definitely_not {
            assert!(
                !e.user_message(Operation::Create).contains("may already"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_required_caller_key_is_asked_for_as_a_header_not_an_env_var() {
        for unusable in [false, true] {
            for (backend, key) in [
                (BackendKind::Gateway, "<your task-API key>"),
                (BackendKind::Heygen, "<your HeyGen API key>"),
            ] {
                let m = UpstreamError::CallerKeyRequired { unusable, backend }
                    .user_message(Operation::Create);
                assert!(
                    m.contains("X-HeyGen-Api-Key") && m.contains("headers"),
                    "{m}"
                );
                assert!(m.contains(key), "{m}");
                assert!(!m.contains("HEYGEN_API_KEY"), "{m}");
            }
        }
    }

    #[test]
    fn missing_key_says_how_to_set_it() {
        let missing = |header_hint, backend| {
            UpstreamError::MissingKey {
                header_hint,
                backend,
            }
            .user_message(Operation::Create)
        };
        let m = missing(false, BackendKind::Gateway);
        assert!(m.contains("HEYGEN_API_KEY") && m.contains("env"), "{m}");
        assert!(m.contains("task-API key"), "{m}");
        assert!(!m.contains("X-HeyGen-Api-Key"));
        let h = missing(true, BackendKind::Gateway);
        assert!(h.contains("X-HeyGen-Api-Key"));
        let v3 = missing(false, BackendKind::Heygen);
        assert!(
            v3.contains("HEYGEN_API_KEY to your HeyGen API key (from app.heygen.com/settings/api)"),
            "{v3}"
        );
        assert!(!v3.contains("task-API"), "{v3}");
    }
}
