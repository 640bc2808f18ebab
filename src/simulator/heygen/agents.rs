//! `POST /v3/video-agents`, `GET /v3/video-agents/{session_id}` and
//! `POST /v3/video-agents/{session_id}/stop`, and the timeline both the
//! session and its video follow.
//!
//! Over the render time R (from [`SimConfig::render_time`] or `[after:S]`):
//! the session is `thinking` (progress 0–9, no `video_id`) for the first 20%
//! of R; then `generating` with its `video_id` (progress 10–99), the video
//! `pending` until 30% of R and `processing` after; at R both are
//! `completed` (progress 100), or `failed` with `[fail]`. `[session-fail]`
//! fails the session at 20% of R with no video ever; `mode: "chat"` stops at
//! `waiting_for_input` (progress 10, no video) at 20% of R. A stop before the
//! end fails the session ("Stopped by user") and, when it exists, the video.
//!
//! [`SimConfig::render_time`]: crate::simulator::SimConfig::render_time

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::{
    super::{
        CREDIT_COST,
        faults::{Faults, LookupFault, Refusal, TaskFaults, markers},
        ids::{self, TaskRecord},
        tasks::answer_create,
    },
    KEEP_PROMPT, SimState, assets, authorize, catalog, data, error, insufficient_credit, invalid,
    lookup_answer, rate_limited, read_body, record,
    sign::{self, Session},
    status_fault, unauthorized, unix,
};

const FIELDS: &[&str] = &[
    "prompt",
    "mode",
    "avatar_id",
    "voice_id",
    "style_id",
    "orientation",
    "files",
    "brand_kit_id",
    "callback_url",
    "callback_id",
    "incognito_mode",
];
const MAX_PROMPT: usize = 10_000;
const MAX_FILES: usize = 20;
/// Largest create body (inline base64 files included).
const MAX_CREATE_BODY: usize = 32 * 1024 * 1024;
/// Longest string kept per field in the request log.
const LOG_STRING: usize = 4096;
/// Most messages a session answer carries.
const MAX_MESSAGES: usize = 40;

pub(super) const RENDER_FAILURE: (&str, &str) = ("rendering_failed", "Avatar rendering timed out");
pub(super) const STOP_FAILURE: (&str, &str) = ("stopped_by_user", "Stopped by user");
const PLAN_FAILURE: &str =
    "The agent could not plan a video for this prompt. Rephrase it or add more detail.";

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Completed,
    /// `[fail]`: the render failed (the video exists and fails too).
    RenderFailed,
    /// `[session-fail]`: the agent gave up before any video existed.
    SessionFailed,
    /// `POST …/stop` before the end.
    Stopped,
}

/// Everything the timeline depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    pub render: Duration,
    pub fail: bool,
    pub session_fail: bool,
    pub chat: bool,
    /// When (after creation) a stop reached the running session.
    pub stopped: Option<Duration>,
}

/// The session (and its video) at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub session: &'static str,
    pub progress: u8,
    /// The video's status; `None` while (or when) there is no video.
    pub video: Option<&'static str>,
    /// The outcome and when it happened, once the session has ended.
    pub end: Option<(Outcome, Duration)>,
}

impl Plan {
    pub(super) fn of(s: &Session, stopped: Option<SystemTime>) -> Plan {
        Plan {
            render: s.task.render,
            fail: s.task.faults.fail,
            session_fail: s.session_fail,
            chat: s.chat,
            stopped: stopped.map(|t| t.duration_since(s.task.created).unwrap_or_default()),
        }
    }

    /// When the video comes into being (and the session starts generating).
    pub(super) fn video_start(&self) -> Duration {
        self.render.mul_f64(0.2)
    }

    fn processing_start(&self) -> Duration {
        self.render.mul_f64(0.3)
    }

    /// How the session ends by itself; `None` for one that waits for input.
    fn natural_end(&self) -> Option<(Outcome, Duration)> {
        if self.session_fail {
            Some((Outcome::SessionFailed, self.video_start()))
        } else if self.chat {
            None
        } else if self.fail {
            Some((Outcome::RenderFailed, self.render))
        } else {
            Some((Outcome::Completed, self.render))
        }
    }

    fn end(&self) -> Option<(Outcome, Duration)> {
        match (self.natural_end(), self.stopped) {
            (Some((_, t)), Some(s)) if s < t => Some((Outcome::Stopped, s)),
            (None, Some(s)) => Some((Outcome::Stopped, s)),
            (natural, _) => natural,
        }
    }

    /// Whether the session has a video at `at` after creation.
    fn has_video(&self, at: Duration) -> bool {
        !self.session_fail && !self.chat && at >= self.video_start()
    }

    fn progress(&self, at: Duration) -> u8 {
        let start = self.video_start();
        if at < start {
            return (10.0 * at.as_secs_f64() / start.as_secs_f64()).clamp(0.0, 9.0) as u8;
        }
        if self.chat || self.session_fail {
            return 10;
        }
        let span = self.render.saturating_sub(start).as_secs_f64();
        if span <= 0.0 {
            return 99;
        }
        let done = (at - start).as_secs_f64() / span;
        (10.0 + 89.0 * done).clamp(10.0, 99.0) as u8
    }

    pub(super) fn at(&self, elapsed: Duration) -> Snapshot {
        if let Some((outcome, t)) = self.end().filter(|(_, t)| *t <= elapsed) {
            let (session, progress) = match outcome {
                Outcome::Completed => ("completed", 100),
                _ => ("failed", self.progress(t)),
            };
            return Snapshot {
                session,
                progress,
                video: self.has_video(t).then_some(session),
                end: Some((outcome, t)),
            };
        }
        let (session, video) = if elapsed < self.video_start() {
            ("thinking", None)
        } else if self.chat {
            ("waiting_for_input", None)
        } else if elapsed < self.processing_start() {
            ("generating", Some("pending"))
        } else {
            ("generating", Some("processing"))
        };
        Snapshot {
            session,
            progress: self.progress(elapsed),
            video,
            end: None,
        }
    }
}

/// The session's video title (the same in every process).
pub(super) fn title(s: &Session) -> String {
    let n = s.task.nonce;
    format!("Simulated video {:02x}{:02x}{:02x}", n[0], n[1], n[2])
}

/// `POST /v3/video-agents`.
pub(super) async fn create(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(body, &headers, MAX_CREATE_BODY).await {
        Ok(b) => b,
        Err(r) => {
            record(&state, "create", "POST", &uri, &headers, None);
            return r;
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    record(
        &state,
        "create",
        "POST",
        &uri,
        &headers,
        parsed.as_ref().map(loggable),
    );
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(Value::Object(req)) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "The request body must be a JSON object",
            None,
        );
    };
    let (prompt, chat) = match validate(&req, &key) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let faults = Faults::parse(&prompt);
    if let Some(refused) = refuse(&state, &key, &prompt, &faults) {
        return refused;
    }

    // Accepted: the session exists (and is billed) from here on, whatever the answer.
    let session = Session {
        task: TaskRecord {
            created: SystemTime::now(),
            render: faults.render.unwrap_or(state.config.render_time),
            owner: ids::owner_tag(&key),
            nonce: rand::random(),
            faults: faults.task.clone(),
        },
        session_fail: markers(&prompt).iter().any(|m| m == "session-fail"),
        chat,
    };
    let id = sign::session_id(&session);
    {
        let mut inner = state.lock();
        inner.tasks_created += 1;
        inner.heygen.run(&id).prompt = Some(prompt.chars().take(KEEP_PROMPT).collect());
    }
    tracing::debug!(session_id = %id, "simulator: video agent session created");
    let answer = json!({"data": {
        "session_id": id,
        "status": "thinking",
        "video_id": null,
        "created_at": session.task.created_unix(),
    }});
    answer_create(&faults, answer).await
}

/// The request as logged: long strings (inline file data) are cut.
fn loggable(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > LOG_STRING => {
            Value::String(format!("<{} characters>", s.chars().count()))
        }
        Value::Array(a) => Value::Array(a.iter().map(loggable).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), loggable(v))).collect())
        }
        other => other.clone(),
    }
}

/// The prompt and whether the mode is chat, of a well-formed create.
#[allow(clippy::result_large_err)]
fn validate(req: &Map<String, Value>, key: &str) -> Result<(String, bool), Response> {
    if let Some(field) = req.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            field,
            &format!(
                "Unknown parameter '{field}'; accepted: {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let prompt = match req.get("prompt") {
        None | Some(Value::Null) => return Err(invalid("prompt", "prompt is required")),
        Some(Value::String(p)) if (1..=MAX_PROMPT).contains(&p.chars().count()) => p.clone(),
        Some(Value::String(_)) => {
            return Err(invalid(
                "prompt",
                "prompt must be 1 to 10,000 characters long",
            ));
        }
        Some(_) => return Err(invalid("prompt", "prompt must be a string")),
    };
    let chat = match req.get("mode") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) if m == "generate" => false,
        Some(Value::String(m)) if m == "chat" => true,
        Some(_) => return Err(invalid("mode", "mode must be 'generate' or 'chat'")),
    };
    match req.get("orientation") {
        None | Some(Value::Null) => {}
        Some(Value::String(o)) if o == "landscape" || o == "portrait" => {}
        Some(_) => {
            return Err(invalid(
                "orientation",
                "orientation must be 'landscape', 'portrait' or null",
            ));
        }
    }
    for field in [
        "avatar_id",
        "voice_id",
        "style_id",
        "brand_kit_id",
        "callback_url",
        "callback_id",
    ] {
        if let Some(v) = req.get(field)
            && !(v.is_string() || v.is_null())
        {
            return Err(invalid(field, &format!("{field} must be a string or null")));
        }
    }
    if let Some(v) = req.get("incognito_mode")
        && !(v.is_boolean() || v.is_null())
    {
        return Err(invalid(
            "incognito_mode",
            "incognito_mode must be a boolean",
        ));
    }
    if let Some(files) = req.get("files") {
        validate_files(files, key)?;
    }
    let given = |field: &str| req.get(field).and_then(Value::as_str);
    if let Some(id) = given("avatar_id")
        && catalog::look_by_id(id).is_none()
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            "avatar_not_found",
            &format!("Avatar look '{id}' not found; use a look id from GET /v3/avatars/looks"),
            Some("avatar_id"),
        ));
    }
    if let Some(id) = given("voice_id")
        && catalog::voice_by_id(id).is_none()
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            "voice_not_found",
            &format!("Voice '{id}' not found; use a voice_id from GET /v3/voices"),
            Some("voice_id"),
        ));
    }
    if let Some(id) = given("style_id")
        && catalog::style_by_id(id).is_none()
    {
        return Err(invalid(
            "style_id",
            &format!("Style '{id}' not found; use a style_id from GET /v3/video-agents/styles"),
        ));
    }
    Ok((prompt, chat))
}

/// `files`: at most 20 AssetInputs (`url`, `asset_id` or `base64`).
#[allow(clippy::result_large_err)]
fn validate_files(files: &Value, key: &str) -> Result<(), Response> {
    let bad = |message: String| Err(invalid("files", &message));
    let list = match files {
        Value::Null => return Ok(()),
        Value::Array(list) => list,
        _ => return bad("files must be an array of asset inputs".into()),
    };
    if list.len() > MAX_FILES {
        return bad(format!("at most {MAX_FILES} files, got {}", list.len()));
    }
    let owner = ids::owner_tag(key);
    for (i, item) in list.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            return bad(format!("files[{i}] must be an object with a 'type'"));
        };
        let text = |field: &str| obj.get(field).and_then(Value::as_str);
        let allowed: &[&str] = match text("type") {
            Some("url") => {
                let ok = text("url").is_some_and(|u| {
                    url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
                });
                if !ok {
                    return bad(format!("files[{i}].url must be an http(s) URL"));
                }
                &["type", "url"]
            }
            Some("asset_id") => {
                let known = text("asset_id")
                    .and_then(sign::open_asset)
                    .is_some_and(|a| a.owner == owner);
                if !known {
                    return bad(format!(
                        "files[{i}].asset_id is not an asset of this account; upload with POST /v3/assets"
                    ));
                }
                &["type", "asset_id"]
            }
            Some("base64") => {
                let Some(media_type) = text("media_type") else {
                    return bad(format!("files[{i}].media_type is required"));
                };
                if !assets::is_accepted(media_type) {
                    return bad(format!(
                        "files[{i}].media_type '{media_type}' is not supported; use one of {}",
                        assets::accepted_list()
                    ));
                }
                let decoded = text("data").and_then(|d| {
                    base64::engine::general_purpose::STANDARD
                        .decode(d.trim())
                        .ok()
                });
                if decoded.is_none_or(|d| d.is_empty()) {
                    return bad(format!("files[{i}].data must be non-empty base64"));
                }
                &["type", "media_type", "data"]
            }
            _ => {
                return bad(format!(
                    "files[{i}].type must be 'url', 'asset_id' or 'base64'"
                ));
            }
        };
        if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return bad(format!("files[{i}] has an unknown field '{extra}'"));
        }
    }
    Ok(())
}

/// The answer when the API does not accept this create (nothing is created
/// or billed); `None` when it does, after billing the key.
fn refuse(state: &SimState, key: &str, prompt: &str, faults: &Faults) -> Option<Response> {
    if let Some(refusal) = &faults.refusal {
        return Some(match refusal {
            Refusal::Unauthorized => unauthorized("Invalid API key"),
            Refusal::PaymentRequired => {
                let has = state.balance(key);
                insufficient_credit(has, has + CREDIT_COST)
            }
            Refusal::Validation(code) => error(
                StatusCode::BAD_REQUEST,
                code,
                &format!("Validation failed: {code}"),
                Some("prompt"),
            ),
            Refusal::EchoKey => invalid("prompt", &format!("Invalid request for API key {key}")),
            Refusal::RateLimited => status_fault(429),
            Refusal::RateLimitedBare => rate_limited(),
            Refusal::Status(code) => status_fault(*code),
        });
    }
    let mut inner = state.lock();
    if let Some(limit) = faults.rate_limited_times {
        let seen = inner.prompt_429.entry(prompt.to_string()).or_default();
        if *seen < limit {
            *seen += 1;
            return Some(status_fault(429));
        }
    }
    let balance = inner
        .balances
        .entry(key.to_string())
        .or_insert(state.config.start_balance);
    if *balance < CREDIT_COST {
        return Some(insufficient_credit(*balance, CREDIT_COST));
    }
    *balance -= CREDIT_COST;
    None
}

/// The session of a lookup: signed by a simulator and owned by this key.
pub(super) fn owned_session(id: &str, key: &str) -> Option<Session> {
    sign::open_session(id).filter(|s| s.task.owner == ids::owner_tag(key))
}

fn session_not_found(id: &str) -> Response {
    super::not_found(
        "not_found",
        &format!("Video Agent session '{id}' not found"),
    )
}

/// Counts one status lookup of a session; the `[get:…]` fault it hits, the
/// stop time and the run as this process knows it.
pub(super) fn lookup(
    state: &SimState,
    session_id: &str,
    faults: &TaskFaults,
) -> (Option<LookupFault>, super::Run) {
    let run = {
        let mut inner = state.lock();
        let run = inner.heygen.run(session_id);
        run.lookups += 1;
        run.clone()
    };
    let fault = faults
        .lookup
        .and_then(|(fault, window)| window.hits(run.lookups).then_some(fault));
    (fault, run)
}

/// `GET /v3/video-agents/{session_id}`.
pub(super) async fn session(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "session", "GET", &uri, &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(s) = owned_session(&id, &key) else {
        return session_not_found(&id);
    };
    let (fault, run) = lookup(&state, &id, &s.task.faults);
    let plan = Plan::of(&s, run.stopped);
    let elapsed = SystemTime::now()
        .duration_since(s.task.created)
        .unwrap_or_default();
    let snap = plan.at(elapsed);
    let video_id = snap.video.map(|_| sign::video_id(&s));
    let answer = json!({"data": {
        "session_id": id,
        "status": snap.session,
        "progress": snap.progress,
        "title": title(&s),
        "video_id": video_id,
        "created_at": s.task.created_unix(),
        "messages": messages(&plan, &s, elapsed, run.prompt.as_deref()),
    }});
    lookup_answer(fault, answer).await
}

/// The session's messages at `elapsed`, newest first, at most 40.
fn messages(plan: &Plan, s: &Session, elapsed: Duration, prompt: Option<&str>) -> Vec<Value> {
    let at = |offset: Duration| unix(s.task.created + offset);
    let video = sign::video_id(s);
    let msg = |role: &str, kind: &str, content: &str, offset: Duration, resources: &[&str]| {
        json!({
            "role": role,
            "type": kind,
            "content": content,
            "created_at": at(offset),
            "resource_ids": resources,
        })
    };
    let mut out = Vec::new();
    if let Some(p) = prompt {
        out.push(msg("user", "text", p, Duration::ZERO, &[]));
    }
    out.push(msg(
        "model",
        "text",
        "Planning your video: writing the script and choosing an avatar, voice and style.",
        Duration::ZERO,
        &[],
    ));
    let end = plan.end().filter(|(_, t)| *t <= elapsed);
    let start = plan.video_start();
    let reached = |t: Duration| elapsed >= t && end.is_none_or(|(_, e)| t <= e);
    if plan.chat && reached(start) {
        out.push(msg(
            "model",
            "text",
            "Here is the storyboard. Reply to go on, or tell me what to change.",
            start,
            &[],
        ));
    } else if plan.has_video(start) && reached(start) {
        out.push(msg(
            "model",
            "resource",
            "The script is ready; rendering the video now.",
            start,
            &[&video],
        ));
    }
    if let Some((outcome, t)) = end {
        let failed = |text: &str| msg("model", "error", text, t, &[]);
        out.push(match outcome {
            Outcome::Completed => msg("model", "resource", "Your video is ready.", t, &[&video]),
            Outcome::RenderFailed => {
                failed(&format!("Video rendering failed: {}", RENDER_FAILURE.1))
            }
            Outcome::SessionFailed => failed(PLAN_FAILURE),
            Outcome::Stopped => failed(STOP_FAILURE.1),
        });
    }
    out.reverse();
    out.truncate(MAX_MESSAGES);
    out
}

/// `POST /v3/video-agents/{session_id}/stop` with `{}`.
pub(super) async fn stop(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed: Option<Value> = if bytes.iter().all(u8::is_ascii_whitespace) {
        Some(json!({}))
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    record(&state, "stop", "POST", &uri, &headers, parsed.clone());
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if !parsed.as_ref().is_some_and(Value::is_object) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "The request body must be a JSON object ({})",
            None,
        );
    }
    let Some(s) = owned_session(&id, &key) else {
        return session_not_found(&id);
    };
    let now = SystemTime::now();
    let elapsed = now.duration_since(s.task.created).unwrap_or_default();
    {
        let mut inner = state.lock();
        let run = inner.heygen.run(&id);
        // A session that already ended stays as it ended.
        if run.stopped.is_none() && Plan::of(&s, None).at(elapsed).end.is_none() {
            run.stopped = Some(now);
        }
    }
    data(json!({ "session_id": id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(render: u64) -> Plan {
        Plan {
            render: Duration::from_secs(render),
            fail: false,
            session_fail: false,
            chat: false,
            stopped: None,
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_session_thinks_then_generates_then_completes() {
        let p = plan(10);
        let s = p.at(secs(0.0));
        assert_eq!((s.session, s.progress, s.video), ("thinking", 0, None));
        let s = p.at(secs(1.9));
        assert_eq!((s.session, s.video), ("thinking", None));
        assert!(s.progress <= 10);
        let s = p.at(secs(2.0));
        assert_eq!((s.session, s.video), ("generating", Some("pending")));
        assert_eq!(s.progress, 10);
        let s = p.at(secs(5.0));
        assert_eq!((s.session, s.video), ("generating", Some("processing")));
        assert!((10..100).contains(&s.progress), "{}", s.progress);
        let s = p.at(secs(9.99));
        assert!(s.progress < 100 && s.end.is_none());
        let s = p.at(secs(10.0));
        assert_eq!(
            (s.session, s.progress, s.video),
            ("completed", 100, Some("completed"))
        );
        assert_eq!(s.end, Some((Outcome::Completed, secs(10.0))));
    }

    #[test]
    fn progress_never_goes_back() {
        let p = plan(7);
        let mut last = 0;
        for i in 0..=80 {
            let now = p.at(secs(f64::from(i) * 0.1)).progress;
            assert!(now >= last, "at {i}: {now} < {last}");
            last = now;
        }
        assert_eq!(last, 100);
    }

    #[test]
    fn a_zero_render_time_is_complete_at_once() {
        let s = plan(0).at(Duration::ZERO);
        assert_eq!((s.session, s.video), ("completed", Some("completed")));
    }

    #[test]
    fn failures_end_as_their_marker_says() {
        let p = Plan {
            fail: true,
            ..plan(10)
        };
        let s = p.at(secs(10.0));
        assert_eq!((s.session, s.video), ("failed", Some("failed")));
        assert_eq!(s.end.map(|e| e.0), Some(Outcome::RenderFailed));

        let p = Plan {
            session_fail: true,
            ..plan(10)
        };
        assert_eq!(p.at(secs(1.0)).session, "thinking");
        let s = p.at(secs(2.0));
        assert_eq!((s.session, s.video), ("failed", None));
        assert_eq!(p.at(secs(60.0)).video, None, "never a video");

        let p = Plan {
            chat: true,
            ..plan(10)
        };
        let s = p.at(secs(60.0));
        assert_eq!(
            (s.session, s.video, s.end),
            ("waiting_for_input", None, None)
        );
    }

    #[test]
    fn a_stop_ends_the_session_when_it_comes() {
        let early = Plan {
            stopped: Some(secs(1.0)),
            ..plan(10)
        };
        let s = early.at(secs(5.0));
        assert_eq!((s.session, s.video), ("failed", None));
        assert_eq!(s.end, Some((Outcome::Stopped, secs(1.0))));
        assert_eq!(early.at(secs(0.5)).session, "thinking");

        let late = Plan {
            stopped: Some(secs(5.0)),
            ..plan(10)
        };
        let s = late.at(secs(6.0));
        assert_eq!((s.session, s.video), ("failed", Some("failed")));

        let after_end = Plan {
            stopped: Some(secs(11.0)),
            ..plan(10)
        };
        assert_eq!(after_end.at(secs(12.0)).session, "completed");
    }
}
