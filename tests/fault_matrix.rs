//! The fault matrix: every upstream fault of UPSTREAM.md (the gateway) and of
//! HEYGEN_V3.md (`--backend heygen`) × every tool it can affect, over stdio
//! (the binary driven with raw JSON-RPC lines, every stdout line recorded)
//! and over Streamable HTTP (the binary with `--http 127.0.0.1:0`, rmcp's
//! client on both protocol revisions). One table of cases serves both
//! backends; where the wire differs (advice wording, status words, the
//! two-layer v3 lookup) a case names what each backend must show, and a few
//! cases exist on one backend only (the gateway's 422 codes, HeyGen's own
//! error codes, a session that fails before its video exists).
//!
//! For each case: the result is `isError` with the advice of the backend's
//! error table (or the correct non-error where the fault is tolerable), the
//! money rule is stated exactly when a create may have reached the upstream,
//! create is sent exactly once where the documents say so (429 and nothing
//! else may be resent), idempotent lookups are retried as documented (on v3
//! a status lookup is the session, then its video: both are counted), and
//! afterwards the server is still up and a good request succeeds. Over the
//! whole run, the API key appears in no result, no stdout line and no stderr
//! line (the child logs at `debug`). On the v3 backend no error speaks of the
//! gateway.
//!
//! The faults come from the simulators' prompt markers (create and status
//! lookups) and, for `get_credits`, whose request carries no prompt, from a
//! small stand-in upstream below that picks the fault from its path prefix
//! and answers in either backend's envelope. Every case runs concurrently
//! with the others on its transport; timeouts are short (`--request-timeout
//! 1`, `--retry-max-delay 1`), so each matrix takes well under a minute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::future::join_all;
use harness::{
    HttpClient, HttpServer, Spawn, StdioServer, http_call, is_error, legacy_client,
    loopback_client, modern_client, nonce, text_of,
};
use heygen_video_mcp::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

/// The only key the simulator accepts; it must never appear in any output.
const KEY: &str = "fm-key-5d2a9c71e0b84f36aa";
/// A key the simulator refuses (401); it must never appear either.
const WRONG_KEY: &str = "fm-wrong-key-77e1c0a9d4b2cc";
const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
/// Short timeouts so slow and retried faults finish fast. With
/// `--max-retries 3` an idempotent lookup makes at most 4 attempts.
const SERVER_ARGS: &[&str] = &[
    "--request-timeout",
    "1",
    "--retry-max-delay",
    "1",
    "--max-retries",
    "3",
    "--poll-interval",
    "0.2",
    "--download-deadline",
    "10",
];
const ATTEMPTS: u64 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(40);
const MONEY: &str = "may already have been created";

// ---------------------------------------------------------------------------
// The backends
// ---------------------------------------------------------------------------

/// Which upstream API the server under test speaks (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The task API of UPSTREAM.md, the default.
    Gateway,
    /// HeyGen's own v3 API (HEYGEN_V3.md).
    Heygen,
}

impl Backend {
    /// `gateway` on the gateway, `heygen` on HeyGen's API.
    fn pick<T>(self, gateway: T, heygen: T) -> T {
        match self {
            Backend::Gateway => gateway,
            Backend::Heygen => heygen,
        }
    }

    fn name(self) -> &'static str {
        self.pick("gateway", "heygen")
    }

    /// The simulator of this backend's wire (renders take 1 s).
    async fn simulator(self) -> Simulator {
        let config = SimConfig {
            render_time: Duration::from_secs(1),
            api_key: Some(KEY.into()),
            ..self.pick(SimConfig::default(), SimConfig::heygen())
        };
        match self {
            Backend::Gateway => Simulator::start(config).await,
            Backend::Heygen => Simulator::start_heygen(config).await,
        }
        .expect("the simulator binds 127.0.0.1:0")
    }

    fn spawn_for(self, base: &str, key: &str) -> Spawn {
        Spawn::new(BIN)
            .upstream(base, key)
            .args(SERVER_ARGS.iter().copied())
            .args(["--backend", self.name()])
            .log("debug")
    }

    /// Create requests with this prompt that reached the simulator.
    fn creates_of(self, sim: &Simulator, prompt: &str) -> u64 {
        sim.state
            .requests()
            .iter()
            .filter(|r| {
                r.method == "POST"
                    && (self == Backend::Gateway || r.path == "/v3/video-agents")
                    && r.body.as_ref().and_then(|b| b["prompt"].as_str()) == Some(prompt)
            })
            .count() as u64
    }

    /// Status lookups of a task that reached the simulator: on the gateway
    /// `GET /v1/tasks/{id}`; on v3 the session lookups plus the lookups of
    /// the video the session names.
    async fn gets_of(self, sim: &Simulator, task_id: &str) -> u64 {
        let seen = sim.state.requests();
        let count = |path: &str| {
            seen.iter()
                .filter(|r| r.method == "GET" && r.path == path)
                .count() as u64
        };
        match self {
            Backend::Gateway => count(&format!("/v1/tasks/{task_id}")),
            Backend::Heygen => {
                let sessions = count(&format!("/v3/video-agents/{task_id}"));
                let videos = match video_of_session(task_id).await {
                    Some(video_id) => count(&format!("/v3/videos/{video_id}")),
                    None => 0,
                };
                sessions + videos
            }
        }
    }

    /// The part of a result link's path that names the simulator's file host.
    fn files_path(self) -> &'static str {
        self.pick("/files/", "/v3-files/")
    }

    /// The error code a `[fail]` render ends with.
    fn render_failure(self) -> &'static str {
        self.pick("render_failed", "rendering_failed")
    }

    /// A status word the backend's client does not know (`[status:X]`).
    fn odd_status(self) -> &'static str {
        self.pick("rendering", "upscaling")
    }
}

/// The video id a v3 session names; `None` while it names none, or while a
/// `[get:…]` fault refuses every lookup (then the server never learned it
/// either). Asked of a fresh second simulator: session ids are signed and
/// self-describing, so it answers for them, and its lookup counts are its
/// own: the first simulator's `[get:…]` windows stay untouched, and on the
/// twin a `[get:…:afterK]` window lets the first lookup through and a
/// `[get:…:N]` one (N < 3) the third.
async fn video_of_session(session_id: &str) -> Option<String> {
    let twin = Backend::Heygen.simulator().await;
    let url = format!("{}/v3/video-agents/{session_id}", twin.base_url());
    for _ in 0..3 {
        let answer = loopback_client()
            .get(&url)
            .header("x-api-key", KEY)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let Ok(answer) = answer else { continue };
        if let Ok(v) = answer.json::<Value>().await
            && v.get("data").is_some()
        {
            return v["data"]["video_id"].as_str().map(String::from);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Tool {
    /// `create_video` with the markers in its prompt.
    Create,
    /// A good create with the markers, then `get_video_status`.
    Status,
    /// The same with `wait_seconds`.
    Wait(u32),
    /// `get_video_status` of an id that does not exist.
    StatusUnknownId,
    /// A good create with the markers, then `download_video`.
    Download,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `isError: true`, text containing every phrase; `money`: whether the
    /// money rule ("may already have been created") must (or must not) be there.
    Error {
        says: &'static [&'static str],
        money: bool,
    },
    /// A normal result; `status` one of these when given; text containing every phrase.
    Ok {
        status: &'static [&'static str],
        says: &'static [&'static str],
    },
}

/// How many requests of a kind the upstream must have seen for the case.
#[derive(Debug, Clone, Copy)]
enum Count {
    Exactly(u64),
    Any,
}

type Extra = fn(Backend, &Value) -> Result<(), String>;

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    tool: Tool,
    markers: &'static str,
    /// Pause between the create and the checked call (lets a short render finish).
    settle_ms: u64,
    expect: Expect,
    /// Create requests with this case's prompt.
    creates: Count,
    /// Status lookups of this case's task (on v3: session plus video lookups).
    gets: Count,
    extra: Option<Extra>,
    /// The one backend whose wire has this fault, if only one has it.
    only: Option<Backend>,
}

const fn err(says: &'static [&'static str], money: bool) -> Expect {
    Expect::Error { says, money }
}

const fn ok(status: &'static [&'static str], says: &'static [&'static str]) -> Expect {
    Expect::Ok { status, says }
}

const fn case(name: &'static str, tool: Tool, markers: &'static str, expect: Expect) -> Case {
    Case {
        name,
        tool,
        markers,
        settle_ms: 0,
        expect,
        creates: Count::Exactly(1),
        gets: Count::Any,
        extra: None,
        only: None,
    }
}

impl Case {
    const fn creates(mut self, c: Count) -> Self {
        self.creates = c;
        self
    }
    const fn gets(mut self, n: u64) -> Self {
        self.gets = Count::Exactly(n);
        self
    }
    const fn settle(mut self, ms: u64) -> Self {
        self.settle_ms = ms;
        self
    }
    const fn extra(mut self, f: Extra) -> Self {
        self.extra = Some(f);
        self
    }
    const fn only(mut self, b: Backend) -> Self {
        self.only = Some(b);
        self
    }
}

const RUNNING: &[&str] = &["pending", "processing"];
const TIMEOUT: &[&str] = &["did not answer within 1 s"];
const UNREADABLE: &[&str] = &["could not be read"];
const BROKE: &[&str] = &["connection to the upstream broke"];

/// The wording each backend's error table gives for one fault.
struct Advice {
    key: &'static [&'static str],
    not_found: &'static [&'static str],
    unavailable: &'static [&'static str],
    rate_limited: &'static [&'static str],
}

fn advice(b: Backend) -> Advice {
    match b {
        Backend::Gateway => Advice {
            key: &["HTTP 401", "HEYGEN_API_KEY"],
            not_found: &[
                "HTTP 404",
                "task_id is wrong, or the task belongs to another",
            ],
            unavailable: &["temporarily unavailable"],
            rate_limited: &["HTTP 429", "Rate limited"],
        },
        Backend::Heygen => Advice {
            key: &["HTTP 401", "HeyGen rejected the API key", "HEYGEN_API_KEY"],
            not_found: &[
                "HTTP 404",
                "No such task: the task_id is wrong, or it belongs to another HeyGen API key",
            ],
            unavailable: &["HeyGen is temporarily unavailable"],
            rate_limited: &["HTTP 429", "HeyGen's limit is reached"],
        },
    }
}

fn upstream_status_is_odd(b: Backend, sc: &Value) -> Result<(), String> {
    // The gateway passes its word on; v3 shows "session/video".
    let want = b.pick(
        b.odd_status().to_string(),
        format!("generating/{}", b.odd_status()),
    );
    (sc["structuredContent"]["upstream_status"] == want.as_str())
        .then_some(())
        .ok_or_else(|| format!("upstream_status is not the raw {want:?}"))
}

fn has_video_url(b: Backend, sc: &Value) -> Result<(), String> {
    sc["structuredContent"]["video_urls"][0]
        .as_str()
        .filter(|u| u.contains(b.files_path()))
        .map(|_| ())
        .ok_or_else(|| "no video URL".into())
}

fn has_failure(b: Backend, sc: &Value) -> Result<(), String> {
    (sc["structuredContent"]["error"]["code"] == b.render_failure())
        .then_some(())
        .ok_or_else(|| "the failure's error object is missing".into())
}

fn has_session_failure(_: Backend, sc: &Value) -> Result<(), String> {
    sc["structuredContent"]["error"]["message"]
        .as_str()
        .filter(|m| m.contains("could not plan a video"))
        .map(|_| ())
        .ok_or_else(|| "the session's error message is missing".into())
}

/// The cases of one backend.
fn cases(b: Backend) -> Vec<Case> {
    use Backend::{Gateway, Heygen};
    use Tool::*;
    let a = advice(b);
    let files: &'static [&'static str] = b.pick(&["/files/"], &["/v3-files/"]);
    let all = vec![
        // ---- create_video: refused before anything was created (never resent) ----
        case("create 401", Create, "[401]", err(a.key, false)),
        case(
            "create 402",
            Create,
            "[402]",
            err(
                b.pick(
                    &["HTTP 402", "top up credits"],
                    &[
                        "HTTP 402",
                        "insufficient_credit",
                        "top up at app.heygen.com",
                    ],
                ),
                false,
            ),
        ),
        case(
            "create 422 model_not_found",
            Create,
            "[422:model_not_found]",
            err(
                &[
                    "HTTP 422",
                    "model_not_found",
                    "does not offer the heygen-video-agent",
                ],
                false,
            ),
        )
        .only(Gateway),
        case(
            "create 422 no_compatible_channel",
            Create,
            "[422:no_compatible_channel]",
            err(
                &[
                    "HTTP 422",
                    "no_compatible_channel",
                    "no capacity",
                    "try again",
                ],
                false,
            ),
        )
        .only(Gateway),
        case(
            "create 422 invalid_file_type",
            Create,
            "[422:invalid_file_type]",
            err(&["HTTP 422", "invalid_file_type", "file type"], false),
        )
        .only(Gateway),
        case(
            "create 422 invalid_image_url",
            Create,
            "[422:invalid_image_url]",
            err(
                &["HTTP 422", "invalid_image_url", "could not be fetched"],
                false,
            ),
        )
        .only(Gateway),
        case(
            "create 422 other code",
            Create,
            "[422:invalid_parameter]",
            err(
                b.pick(
                    &["HTTP 422", "invalid_parameter", "fix the field"],
                    &[
                        "HTTP 400",
                        "invalid_parameter",
                        "HeyGen rejected the field prompt",
                    ],
                ),
                false,
            ),
        ),
        case(
            "create 422 echoing the key",
            Create,
            "[echo-key]",
            err(
                b.pick(&["HTTP 422", "[redacted]"], &["HTTP 400", "[redacted]"]),
                false,
            ),
        ),
        // ---- create_video: HeyGen's own refusals (400 with its code) ----
        case(
            "create 400 validation_error",
            Create,
            "[422:validation_error]",
            err(
                &[
                    "HTTP 400",
                    "validation_error",
                    "HeyGen rejected the field prompt",
                ],
                false,
            ),
        )
        .only(Heygen),
        case(
            "create 400 avatar_not_found",
            Create,
            "[422:avatar_not_found]",
            err(&["HTTP 400", "avatar_not_found", "list_avatars"], false),
        )
        .only(Heygen),
        case(
            "create 400 voice_not_found",
            Create,
            "[422:voice_not_found]",
            err(&["HTTP 400", "voice_not_found", "list_voices"], false),
        )
        .only(Heygen),
        case(
            "create 400 voice_not_usable",
            Create,
            "[422:voice_not_usable]",
            err(
                &[
                    "HTTP 400",
                    "voice_not_usable",
                    "choose another from list_voices",
                ],
                false,
            ),
        )
        .only(Heygen),
        case(
            "create 400 download_failed",
            Create,
            "[422:download_failed]",
            err(
                &[
                    "HTTP 400",
                    "download_failed",
                    "could not fetch one of file_urls",
                ],
                false,
            ),
        )
        .only(Heygen),
        case(
            "create 400 payload_too_large",
            Create,
            "[422:payload_too_large]",
            err(&["HTTP 400", "payload_too_large", "at most 32 MB"], false),
        )
        .only(Heygen),
        case(
            "create 400 request_in_progress",
            Create,
            "[422:request_in_progress]",
            err(
                &["HTTP 400", "request_in_progress", "check with list_videos"],
                false,
            ),
        )
        .only(Heygen),
        case(
            "create 400 forbidden",
            Create,
            "[422:forbidden]",
            err(&["HTTP 400", "forbidden", "not allowed to do this"], false),
        )
        .only(Heygen),
        case(
            "create 400 quota_exceeded (not resent)",
            Create,
            "[422:quota_exceeded]",
            err(
                &["HTTP 400", "quota_exceeded", "HeyGen's limit is reached"],
                false,
            ),
        )
        .only(Heygen),
        case(
            "create 400 insufficient_credit",
            Create,
            "[422:insufficient_credit]",
            err(&["HTTP 400", "insufficient_credit", "top up"], false),
        )
        .only(Heygen),
        case(
            "create 400 unknown code",
            Create,
            "[422:brand_new_code]",
            err(
                &[
                    "HTTP 400",
                    "brand_new_code",
                    "fix the field named in the message",
                ],
                false,
            ),
        )
        .only(Heygen),
        // ---- create_video: 429 is the one refusal that may be resent ----
        case(
            "create 429 with Retry-After",
            Create,
            "[429]",
            err(&["HTTP 429", "wait 1 s (Retry-After)"], false),
        )
        .creates(Count::Exactly(ATTEMPTS)),
        case(
            "create 429 without Retry-After",
            Create,
            "[429-bare]",
            err(
                b.pick(
                    &["HTTP 429", "about 30 s"],
                    &["HTTP 429", "HeyGen's limit is reached", "wait a minute"],
                ),
                false,
            ),
        )
        .creates(Count::Exactly(ATTEMPTS)),
        case(
            "create 429 once, then accepted",
            Create,
            "[429x:1]",
            ok(RUNNING, &["Video task created"]),
        )
        .creates(Count::Exactly(2)),
        // ---- create_video: may have reached the upstream → exactly once + money rule ----
        case(
            "create 500",
            Create,
            "[500]",
            err(
                b.pick(
                    &["HTTP 500", "temporarily unavailable"],
                    &["HTTP 500", "HeyGen is temporarily unavailable"],
                ),
                true,
            ),
        ),
        case(
            "create 502 (HTML body)",
            Create,
            "[502]",
            err(
                b.pick(
                    &["HTTP 502", "502 Bad Gateway", "temporarily unavailable"],
                    &[
                        "HTTP 502",
                        "502 Bad Gateway",
                        "HeyGen is temporarily unavailable",
                    ],
                ),
                true,
            ),
        ),
        case(
            "create 503",
            Create,
            "[503]",
            err(
                b.pick(
                    &["HTTP 503", "temporarily unavailable"],
                    &["HTTP 503", "HeyGen is temporarily unavailable"],
                ),
                true,
            ),
        ),
        case(
            "create slower than the timeout",
            Create,
            "[slow:3]",
            err(TIMEOUT, true),
        ),
        case(
            "create non-JSON body",
            Create,
            "[garbage]",
            err(UNREADABLE, true),
        ),
        case(
            "create dropped connection",
            Create,
            "[drop]",
            err(BROKE, true),
        ),
        case(
            "create truncated JSON",
            Create,
            "[truncated]",
            err(UNREADABLE, true),
        ),
        case(
            "create answer without optional fields",
            Create,
            "[minimal]",
            ok(RUNNING, &["Video task created"]),
        ),
        case(
            "create good",
            Create,
            "",
            ok(RUNNING, &["Video task created"]),
        ),
        // ---- get_video_status (on v3: [after:30] keeps the session thinking, without a video) ----
        case(
            "status of an unknown id",
            StatusUnknownId,
            "",
            err(a.not_found, false),
        )
        .creates(Count::Any),
        case("status 404", Status, "[get:404]", err(a.not_found, false)).gets(1),
        case("status 401", Status, "[get:401]", err(a.key, false)).gets(1),
        case(
            "status 429 with Retry-After",
            Status,
            "[get:429]",
            err(a.rate_limited, false),
        )
        .gets(ATTEMPTS),
        case(
            "status 429 once (retried)",
            Status,
            "[get:429:1][after:30]",
            ok(RUNNING, &[]),
        )
        .gets(2),
        case(
            "status 500",
            Status,
            "[get:500]",
            err(
                b.pick(
                    &["HTTP 500", "temporarily unavailable"],
                    &["HTTP 500", "HeyGen is temporarily unavailable"],
                ),
                false,
            ),
        )
        .gets(ATTEMPTS),
        case(
            "status 502 (HTML body)",
            Status,
            "[get:502]",
            err(
                b.pick(
                    &["HTTP 502", "502 Bad Gateway", "temporarily unavailable"],
                    &[
                        "HTTP 502",
                        "502 Bad Gateway",
                        "HeyGen is temporarily unavailable",
                    ],
                ),
                false,
            ),
        )
        .gets(ATTEMPTS),
        case(
            "status 503",
            Status,
            "[get:503]",
            err(
                b.pick(
                    &["HTTP 503", "temporarily unavailable"],
                    &["HTTP 503", "HeyGen is temporarily unavailable"],
                ),
                false,
            ),
        )
        .gets(ATTEMPTS),
        case(
            "status 500 twice (retried)",
            Status,
            "[get:500:2][after:30]",
            ok(RUNNING, &[]),
        )
        .gets(3),
        case(
            "status slower than the timeout",
            Status,
            "[get:slow=3]",
            err(TIMEOUT, false),
        )
        .gets(ATTEMPTS),
        case(
            "status slow once (retried)",
            Status,
            "[get:slow=3:1][after:30]",
            ok(RUNNING, &[]),
        )
        .gets(2),
        case(
            "status non-JSON body",
            Status,
            "[get:garbage]",
            err(UNREADABLE, false),
        )
        .gets(1),
        case(
            "status truncated JSON",
            Status,
            "[get:truncated]",
            err(UNREADABLE, false),
        )
        .gets(1),
        case(
            "status dropped connection",
            Status,
            "[get:drop]",
            err(BROKE, false),
        )
        .gets(ATTEMPTS),
        case(
            "status dropped once (retried)",
            Status,
            "[get:drop:1][after:30]",
            ok(RUNNING, &[]),
        )
        .gets(2),
        // On v3 the odd word is the video's, so the video must exist (after 20% of the render).
        case(
            "status unknown value",
            Status,
            b.pick(
                "[status:rendering][after:30]",
                "[status:upscaling][after:5]",
            ),
            ok(&["unknown"], b.pick(&["rendering"], &["upscaling"])),
        )
        .settle(b.pick(400, 1500))
        .extra(upstream_status_is_odd),
        case(
            "status without optional fields",
            Status,
            "[minimal][after:30]",
            ok(RUNNING, &[]),
        ),
        case(
            "status result under output",
            Status,
            "[output][after:0.2]",
            ok(&["completed"], files),
        )
        .settle(700)
        .extra(has_video_url),
        case(
            "status failed task (not a tool error)",
            Status,
            "[fail][after:0.2]",
            ok(
                &["failed"],
                b.pick(
                    &["render_failed"],
                    &["rendering_failed", "Avatar rendering timed out"],
                ),
            ),
        )
        .settle(700)
        .extra(has_failure),
        // ---- get_video_status: the v3 video layer (the session answers, its video does not) ----
        case(
            "status: the video lookup fails (retried)",
            Status,
            "[get:500:after1][after:5]",
            err(&["HTTP 500", "HeyGen is temporarily unavailable"], false),
        )
        .settle(1500)
        .gets(1 + ATTEMPTS)
        .only(Heygen),
        case(
            "status: the video lookup is unreadable",
            Status,
            "[get:garbage:after1][after:5]",
            err(UNREADABLE, false),
        )
        .settle(1500)
        .gets(2)
        .only(Heygen),
        // The session names its video before the video can be looked up:
        // still rendering, not "no such task".
        case(
            "status: the video lookup answers 404",
            Status,
            "[get:404:after1][after:5]",
            ok(&["processing", "pending"], &["Still rendering"]),
        )
        .settle(1500)
        .gets(2)
        .only(Heygen),
        case(
            "status of a session that failed before its video",
            Status,
            "[session-fail][after:1]",
            ok(&["failed"], &["could not plan a video"]),
        )
        .settle(700)
        .extra(has_session_failure)
        .only(Heygen),
        // ---- get_video_status with wait_seconds ----
        case("wait 404", Wait(5), "[get:404]", err(a.not_found, false)).gets(1),
        case("wait 500", Wait(5), "[get:500]", err(a.unavailable, false)).gets(ATTEMPTS),
        case(
            "wait non-JSON body",
            Wait(5),
            "[get:garbage]",
            err(UNREADABLE, false),
        )
        .gets(1),
        case(
            "wait through 500s",
            Wait(20),
            "[get:500:2][after:1]",
            ok(&["completed"], files),
        ),
        case(
            "wait through a slow answer",
            Wait(20),
            "[get:slow=3:1][after:1]",
            ok(&["completed"], files),
        ),
        case(
            "wait through dropped connections",
            Wait(20),
            "[get:drop:2][after:1]",
            ok(&["completed"], files),
        ),
        case(
            "wait through an unknown status",
            Wait(20),
            b.pick(
                "[status:rendering][after:1.5]",
                "[status:upscaling][after:1.5]",
            ),
            ok(&["completed"], files),
        ),
        case(
            "wait on a task without optional fields",
            Wait(20),
            "[minimal][after:1]",
            ok(&["completed"], &[]),
        ),
        case(
            "wait ends in failure",
            Wait(20),
            "[fail][after:0.5]",
            ok(&["failed"], &[]),
        )
        .extra(has_failure),
        case(
            "wait ends in a failed session",
            Wait(20),
            "[session-fail][after:1]",
            ok(&["failed"], &["could not plan a video"]),
        )
        .extra(has_session_failure)
        .only(Heygen),
        case(
            "wait that runs out (not an error)",
            Wait(1),
            "[after:30]",
            ok(RUNNING, &["Still rendering", "this is normal"]),
        ),
        // ---- download_video ----
        case(
            "download 404",
            Download,
            "[get:404]",
            err(a.not_found, false),
        ),
        case(
            "download 500",
            Download,
            "[get:500]",
            err(a.unavailable, false),
        ),
        case(
            "download non-JSON status",
            Download,
            "[get:garbage]",
            err(UNREADABLE, false),
        ),
        case(
            "download of a web page",
            Download,
            "[after:0.2][file:html]",
            err(&["web page instead of the video"], false),
        )
        .settle(800),
        case(
            "download cut short",
            Download,
            "[after:0.2][file:truncate]",
            err(&[], false),
        )
        .settle(800),
        case(
            "download with an expired signed link",
            Download,
            "[after:0.2][link:403]",
            ok(&["completed"], &["Saved the video to"]),
        )
        .settle(800),
        case(
            "download good",
            Download,
            "[after:0.2]",
            ok(&["completed"], &["Saved the video to"]),
        )
        .settle(800),
    ];
    all.into_iter()
        .filter(|c| c.only.is_none_or(|o| o == b))
        .collect()
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// One way of talking to a server.
enum Conn<'a> {
    Stdio(&'a StdioServer),
    Http(&'a HttpClient),
}

impl Conn<'_> {
    async fn call(&self, tool: &str, args: Value) -> Result<Value, String> {
        match self {
            Conn::Stdio(s) => s.call(tool, args, CALL_TIMEOUT).await,
            Conn::Http(c) => http_call(c, tool, args, CALL_TIMEOUT).await,
        }
    }

    async fn list_tools(&self) -> Result<usize, String> {
        match self {
            Conn::Stdio(s) => {
                let r = s.request("tools/list", json!({}), CALL_TIMEOUT).await?;
                r["result"]["tools"]
                    .as_array()
                    .map(Vec::len)
                    .ok_or_else(|| format!("tools/list failed: {r}"))
            }
            Conn::Http(c) => c
                .list_all_tools()
                .await
                .map(|t| t.len())
                .map_err(|e| format!("tools/list failed: {e}")),
        }
    }
}

fn check_count(what: &str, want: Count, got: u64) -> Result<(), String> {
    match want {
        Count::Exactly(n) if n != got => {
            Err(format!("{what}: expected {n}, the upstream saw {got}"))
        }
        _ => Ok(()),
    }
}

/// Sentences of the gateway's error table that name the gateway or its task
/// API alone.
const GATEWAY_ADVICE: &[&str] = &[
    "The gateway",
    "This gateway",
    "gateway does not offer",
    "points at the task API.",
    "key for the task API",
    "The API key was rejected",
    "top up credits",
    "Rate limited:",
];

/// On the v3 backend an error never gives the gateway's advice.
fn check_no_gateway_wording(b: Backend, text: &str) -> Result<(), String> {
    if b == Backend::Heygen
        && let Some(w) = GATEWAY_ADVICE.iter().find(|w| text.contains(**w))
    {
        return Err(format!(
            "a v3 error gives the gateway's advice ({w:?}): {text}"
        ));
    }
    Ok(())
}

fn check_expect(b: Backend, case: &Case, r: &Value) -> Result<(), String> {
    let text = text_of(r);
    match case.expect {
        Expect::Error { says, money } => {
            if !is_error(r) {
                return Err(format!("expected isError, got {r}"));
            }
            if r.get("structuredContent").is_some_and(|v| !v.is_null()) {
                return Err("an error result carries structuredContent".into());
            }
            for s in says {
                if !text.contains(s) {
                    return Err(format!("error text lacks {s:?}: {text}"));
                }
            }
            if text.contains(MONEY) != money {
                return Err(format!(
                    "the money rule is {} but should {}: {text}",
                    if money { "missing" } else { "stated" },
                    if money { "be" } else { "not be" }
                ));
            }
            check_no_gateway_wording(b, &text)?;
        }
        Expect::Ok { status, says } => {
            if is_error(r) {
                return Err(format!("expected success, got error: {text}"));
            }
            let got = r["structuredContent"]["status"]
                .as_str()
                .unwrap_or("<none>");
            if !status.is_empty() && !status.contains(&got) {
                return Err(format!(
                    "status {got:?}, expected one of {status:?}: {text}"
                ));
            }
            if r["structuredContent"]["next_step"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                return Err(format!("no next_step: {r}"));
            }
            for s in says {
                if !text.contains(s) {
                    return Err(format!("text lacks {s:?}: {text}"));
                }
            }
        }
    }
    if let Some(extra) = case.extra {
        extra(b, r)?;
    }
    Ok(())
}

/// Runs one case; returns every result seen (for the key scan).
async fn run_case(
    conn: &Conn<'_>,
    b: Backend,
    sim: &Simulator,
    case: &Case,
    tag: &str,
) -> Result<Vec<Value>, String> {
    let prompt = format!(
        "fault matrix {tag}: {} {} {}",
        case.name,
        nonce(),
        case.markers
    );
    let mut seen = Vec::new();
    let (task_id, r) = match case.tool {
        Tool::Create => {
            let r = conn.call("create_video", json!({"prompt": prompt})).await?;
            let id = r["structuredContent"]["task_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (id, r)
        }
        Tool::StatusUnknownId => {
            let id = format!("task-unified-0-nosuch{}", nonce());
            let r = conn
                .call("get_video_status", json!({"task_id": id}))
                .await?;
            (id, r)
        }
        Tool::Status | Tool::Wait(_) | Tool::Download => {
            let created = conn.call("create_video", json!({"prompt": prompt})).await?;
            if is_error(&created) {
                return Err(format!("setup create failed: {created}"));
            }
            let id = created["structuredContent"]["task_id"]
                .as_str()
                .ok_or("no task_id")?
                .to_string();
            seen.push(created);
            tokio::time::sleep(Duration::from_millis(case.settle_ms)).await;
            let r = match case.tool {
                Tool::Status => {
                    conn.call("get_video_status", json!({"task_id": id}))
                        .await?
                }
                Tool::Wait(s) => {
                    conn.call(
                        "get_video_status",
                        json!({"task_id": id, "wait_seconds": s}),
                    )
                    .await?
                }
                _ => conn.call("download_video", json!({"task_id": id})).await?,
            };
            (id, r)
        }
    };
    seen.push(r.clone());
    check_expect(b, case, &r)?;
    if !matches!(case.tool, Tool::StatusUnknownId) {
        check_count("create requests", case.creates, b.creates_of(sim, &prompt))?;
    }
    if !task_id.is_empty() && matches!(case.gets, Count::Exactly(_)) {
        check_count("status lookups", case.gets, b.gets_of(sim, &task_id).await)?;
    }
    Ok(seen)
}

/// Runs every case of the backend concurrently on `conns` (round-robin)
/// and returns all results; panics with the list of failed cases.
async fn run_matrix(
    conns: &[Conn<'_>],
    b: Backend,
    sim: &Simulator,
    transport: &str,
) -> Vec<Value> {
    let table = cases(b);
    let runs = table.iter().enumerate().map(|(i, case)| {
        let conn = &conns[i % conns.len()];
        async move {
            let tag = format!("{}/{transport}#{}", b.name(), i % conns.len());
            (case.name, run_case(conn, b, sim, case, &tag).await)
        }
    });
    let outcomes = join_all(runs).await;
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(values) => seen.extend(values),
            Err(e) => failures.push(format!("  [{} {transport}] {name}: {e}", b.name())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fault cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    seen
}

/// The server still answers, and a good create → status → credits works.
async fn still_good(conn: &Conn<'_>, tag: &str) {
    assert!(
        conn.list_tools()
            .await
            .expect("tools/list after the faults")
            >= 4
    );
    let r = conn
        .call(
            "create_video",
            json!({"prompt": format!("after the storm {tag} {}", nonce())}),
        )
        .await
        .expect("create after the faults");
    assert!(!is_error(&r), "good create after the faults failed: {r}");
    let id = r["structuredContent"]["task_id"].as_str().unwrap();
    let s = conn
        .call("get_video_status", json!({"task_id": id}))
        .await
        .unwrap();
    assert!(!is_error(&s), "good status after the faults failed: {s}");
    let c = conn.call("get_credits", json!({})).await.unwrap();
    assert!(!is_error(&c), "good credits after the faults failed: {c}");
}

/// Every 10-character window of `key` (and the key itself).
fn fragments(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut out = vec![key.to_string()];
    out.extend(chars.windows(10).map(|w| w.iter().collect::<String>()));
    out
}

fn assert_no_key(what: &str, lines: &[String], key: &str) {
    let frags = fragments(key);
    for line in lines {
        if let Some(f) = frags.iter().find(|f| line.contains(f.as_str())) {
            panic!("{what} leaks the API key (fragment {f:?}): {line}");
        }
    }
}

fn results_as_lines(values: &[Value]) -> Vec<String> {
    values.iter().map(Value::to_string).collect()
}

fn assert_stdout_is_jsonrpc(lines: &[String]) {
    for line in lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert_eq!(v["jsonrpc"], "2.0", "stdout line is not JSON-RPC: {line:?}");
    }
}

// ---------------------------------------------------------------------------
// get_credits: a stand-in upstream whose faults are picked by path prefix
// ---------------------------------------------------------------------------

/// `/{fault}/{n}/dashboard/billing/subscription` (the gateway) and
/// `/{fault}/{n}/v3/users/me` (v3): the first `n` requests get `fault`, later
/// ones a normal balance of 42, each in its backend's envelope. Counts
/// requests per prefix.
#[derive(Clone, Default)]
struct CreditsStandIn {
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

impl CreditsStandIn {
    fn count(&self, prefix: &str) -> u64 {
        self.seen.lock().unwrap().get(prefix).copied().unwrap_or(0)
    }
}

/// The backend's error envelope; the request id `standin-42` rides in the
/// message on the gateway and in `X-Request-Id` on v3.
fn json_error(b: Backend, status: StatusCode, code: &str, msg: &str) -> Response {
    let body = match b {
        Backend::Gateway => json!({"error": {
            "message": format!("{msg} (request_id: standin-42)"), "type": "x", "code": code
        }}),
        Backend::Heygen => json!({"error": {"code": code, "message": msg}}),
    };
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if b == Backend::Heygen {
        r.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("standin-42"));
    }
    r
}

async fn standin_credits(
    b: Backend,
    State(s): State<CreditsStandIn>,
    Path((fault, n)): Path<(String, u64)>,
) -> Response {
    let seen = {
        let mut m = s.seen.lock().unwrap();
        let c = m.entry(format!("{fault}/{n}")).or_default();
        *c += 1;
        *c
    };
    let body = match b {
        Backend::Gateway => json!({"hard_limit_usd": 42}),
        Backend::Heygen => json!({"data": {
            "billing_type": "wallet",
            "wallet": {"currency": "usd", "remaining_balance": 42}
        }}),
    }
    .to_string();
    if seen > n {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    match fault.as_str() {
        "429" => {
            let mut r = json_error(
                b,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "slow down",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        "429-bare" => json_error(
            b,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "slow down",
        ),
        "500" => json_error(
            b,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "boom",
        ),
        "502" => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        )
            .into_response(),
        "503" => json_error(
            b,
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "busy",
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        "garbage" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>OK</html>",
        )
            .into_response(),
        "truncated" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body[..body.len() / 2].to_string(),
        )
            .into_response(),
        "drop" => {
            let stream = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("simulated drop"))
            });
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::from_stream(stream))
                .unwrap()
        }
        _ => json_error(b, StatusCode::INTERNAL_SERVER_ERROR, "unknown_fault", "?"),
    }
}

async fn start_standin() -> (String, CreditsStandIn, tokio::task::JoinHandle<()>) {
    let state = CreditsStandIn::default();
    let app = Router::new()
        .route(
            "/{fault}/{n}/dashboard/billing/subscription",
            get(|s, p| standin_credits(Backend::Gateway, s, p)),
        )
        .route(
            "/{fault}/{n}/dashboard/billing/usage",
            get(|| async { axum::Json(json!({"total_usage": 0})) }),
        )
        .route(
            "/{fault}/{n}/v3/users/me",
            get(|s, p| standin_credits(Backend::Heygen, s, p)),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), state, handle)
}

/// (fault, requests the first call makes, advice) of a backend.
fn credit_faults(b: Backend) -> Vec<(&'static str, u64, &'static [&'static str])> {
    vec![
        (
            "429",
            ATTEMPTS,
            b.pick(
                &["HTTP 429", "wait 1 s (Retry-After)"],
                &[
                    "HTTP 429",
                    "HeyGen's limit is reached",
                    "wait 1 s (Retry-After)",
                ],
            ),
        ),
        (
            "429-bare",
            ATTEMPTS,
            b.pick(
                &["HTTP 429", "about 30 s"],
                &["HTTP 429", "HeyGen's limit is reached", "wait a minute"],
            ),
        ),
        (
            "500",
            ATTEMPTS,
            b.pick(
                &["HTTP 500", "temporarily unavailable", "standin-42"],
                &[
                    "HTTP 500",
                    "HeyGen is temporarily unavailable",
                    "standin-42",
                ],
            ),
        ),
        (
            "502",
            ATTEMPTS,
            b.pick(
                &["HTTP 502", "502 Bad Gateway", "temporarily unavailable"],
                &[
                    "HTTP 502",
                    "502 Bad Gateway",
                    "HeyGen is temporarily unavailable",
                ],
            ),
        ),
        (
            "503",
            ATTEMPTS,
            b.pick(
                &["HTTP 503", "temporarily unavailable"],
                &[
                    "HTTP 503",
                    "HeyGen is temporarily unavailable",
                    "standin-42",
                ],
            ),
        ),
        ("slow", ATTEMPTS, TIMEOUT),
        ("drop", ATTEMPTS, BROKE),
        ("garbage", 1, UNREADABLE),
        ("truncated", 1, UNREADABLE),
    ]
}

/// One server (of the given transport and backend) per credits fault, plus
/// one with a wrong key (401 on every tool) and one with a wrong base path
/// (404).
async fn per_server_faults(http: bool, b: Backend, sim: &Simulator) {
    let (standin, counts, _h) = start_standin().await;
    let transport = if http { "http" } else { "stdio" };
    let a = advice(b);

    let faults = credit_faults(b);
    let credit_runs = faults.iter().map(|&(fault, n, says)| {
        let base = format!("{standin}/{fault}/{n}");
        let counts = counts.clone();
        async move {
            let spec = b.spawn_for(&base, KEY);
            let check = async move |conn: Conn<'_>| {
                let first = conn.call("get_credits", json!({})).await?;
                let text = text_of(&first);
                if !is_error(&first) {
                    return Err(format!("expected isError, got {first}"));
                }
                for s in says {
                    if !text.contains(s) {
                        return Err(format!("text lacks {s:?}: {text}"));
                    }
                }
                check_no_gateway_wording(b, &text)?;
                let attempts = counts.count(&format!("{fault}/{n}"));
                if attempts != n {
                    return Err(format!(
                        "expected {n} attempts, the upstream saw {attempts}"
                    ));
                }
                let again = conn.call("get_credits", json!({})).await?;
                if is_error(&again) || again["structuredContent"]["credits"]["remaining"] != 42.0 {
                    return Err(format!("the next get_credits did not succeed: {again}"));
                }
                Ok(vec![first, again])
            };
            let (outcome, logs) = with_server(http, &spec, check).await;
            (format!("get_credits {fault}"), outcome, logs)
        }
    });

    let wrong_key = async {
        let spec = b.spawn_for(&sim.base_url(), WRONG_KEY);
        let prompt = format!("wrong key {} {transport} {}", b.name(), nonce());
        let check = {
            let prompt = prompt.clone();
            async move |conn: Conn<'_>| {
                let mut seen = Vec::new();
                for (tool, args) in [
                    ("create_video", json!({"prompt": prompt})),
                    ("get_video_status", json!({"task_id": "task-unified-1-abc"})),
                    (
                        "get_video_status",
                        json!({"task_id": "task-unified-1-abc", "wait_seconds": 3}),
                    ),
                    ("get_credits", json!({})),
                    ("download_video", json!({"task_id": "task-unified-1-abc"})),
                ] {
                    let r = conn.call(tool, args).await?;
                    let text = text_of(&r);
                    if !is_error(&r) || !a.key.iter().all(|s| text.contains(s)) {
                        return Err(format!("{tool}: expected the 401 advice, got {r}"));
                    }
                    if text.contains(MONEY) {
                        return Err(format!("{tool}: a 401 states the money rule: {text}"));
                    }
                    check_no_gateway_wording(b, &text)?;
                    seen.push(r);
                }
                Ok(seen)
            }
        };
        let (outcome, logs) = with_server(http, &spec, check).await;
        let sent = b.creates_of(sim, &prompt);
        let outcome = outcome.and_then(|v| {
            (sent == 1)
                .then_some(v)
                .ok_or_else(|| format!("create with a rejected key sent {sent} times"))
        });
        ("wrong key (401 everywhere)".to_string(), outcome, logs)
    };

    let wrong_base = async {
        let spec = b.spawn_for(&format!("{}/nope", sim.base_url()), KEY);
        let check = async move |conn: Conn<'_>| {
            let mut seen = Vec::new();
            for (tool, args) in [
                (
                    "create_video",
                    json!({"prompt": format!("wrong base {}", nonce())}),
                ),
                ("get_credits", json!({})),
            ] {
                let r = conn.call(tool, args).await?;
                let text = text_of(&r);
                if !is_error(&r) || !text.contains("HTTP 404") || !text.contains("HEYGEN_API_BASE")
                {
                    return Err(format!("{tool}: expected the 404 endpoint advice, got {r}"));
                }
                check_no_gateway_wording(b, &text)?;
                seen.push(r);
            }
            Ok(seen)
        };
        let (outcome, logs) = with_server(http, &spec, check).await;
        ("wrong base URL (404)".to_string(), outcome, logs)
    };

    // list_videos: re-checks that fail upstream leave a normal answer with
    // the last known state, and a create that may have happened is listed as
    // unconfirmed (its own server, so no other case's tasks are listed).
    let list = async {
        let spec = b.spawn_for(&sim.base_url(), KEY);
        let check = async move |conn: Conn<'_>| {
            let mut seen = Vec::new();
            let created = conn
                .call(
                    "create_video",
                    json!({"prompt": format!("list {} [get:500][after:30]", nonce())}),
                )
                .await?;
            let id = created["structuredContent"]["task_id"]
                .as_str()
                .ok_or_else(|| format!("create failed: {created}"))?
                .to_string();
            let maybe = conn
                .call(
                    "create_video",
                    json!({"prompt": format!("list {} [503]", nonce())}),
                )
                .await?;
            if !text_of(&maybe).contains(MONEY) {
                return Err(format!("no money rule on a 503 create: {maybe}"));
            }
            let listed = conn.call("list_videos", json!({"refresh": true})).await?;
            let text = text_of(&listed);
            let sc = &listed["structuredContent"];
            if is_error(&listed)
                || !text.contains("re-checking failed")
                || !text.contains(&id)
                || sc["videos"].as_array().map(Vec::len) != Some(1)
                || sc["unconfirmed"].as_array().map(Vec::len) != Some(1)
            {
                return Err(format!(
                    "list_videos should list the video with its last known state, note the \
                     failed re-check and the unconfirmed create: {listed}"
                ));
            }
            seen.extend([created, maybe, listed]);
            Ok(seen)
        };
        let (outcome, logs) = with_server(http, &spec, check).await;
        (
            "list_videos with failing re-checks".to_string(),
            outcome,
            logs,
        )
    };

    let (credit, wk, wb, ls) = tokio::join!(join_all(credit_runs), wrong_key, wrong_base, list);
    let mut failures = Vec::new();
    for (name, outcome, logs) in credit.into_iter().chain([wk, wb, ls]) {
        match outcome {
            Ok(values) => {
                for key in [KEY, WRONG_KEY] {
                    assert_no_key(
                        &format!("[{} {transport}] {name}: a result", b.name()),
                        &results_as_lines(&values),
                        key,
                    );
                    assert_no_key(
                        &format!("[{} {transport}] {name}: the server's output", b.name()),
                        &logs,
                        key,
                    );
                }
            }
            Err(e) => failures.push(format!("  [{} {transport}] {name}: {e}", b.name())),
        }
    }
    assert!(
        failures.is_empty(),
        "per-server fault cases failed:\n{}",
        failures.join("\n")
    );
}

/// Starts a server (stdio or HTTP with a 2026-07-28 client), runs `check`,
/// checks the server is still alive and answers `tools/list`, and returns
/// the outcome with every stdout/stderr line of the server.
async fn with_server<F>(
    http: bool,
    spec: &Spawn,
    check: F,
) -> (Result<Vec<Value>, String>, Vec<String>)
where
    F: AsyncFnOnce(Conn<'_>) -> Result<Vec<Value>, String>,
{
    if http {
        let server = HttpServer::spawn(spec).await;
        let client = modern_client(&server.url).await.expect("client connects");
        let mut outcome = check(Conn::Http(&client)).await;
        if outcome.is_ok() {
            if let Err(e) = Conn::Http(&client).list_tools().await {
                outcome = Err(format!("after the fault: {e}"));
            }
            if !server.alive() {
                outcome = Err("the server died".into());
            }
        }
        let _ = client.cancel().await;
        let logs = server.stderr.snapshot();
        server.stop().await;
        (outcome, logs)
    } else {
        let server = StdioServer::legacy(spec).await;
        let mut outcome = check(Conn::Stdio(&server)).await;
        if outcome.is_ok() {
            if let Err(e) = Conn::Stdio(&server).list_tools().await {
                outcome = Err(format!("after the fault: {e}"));
            }
            if !server.alive() {
                outcome = Err("the server died".into());
            }
        }
        let mut logs = server.stderr.snapshot();
        let stdout = server.stdout.snapshot();
        assert_stdout_is_jsonrpc(&stdout);
        logs.extend(stdout);
        server.close().await;
        (outcome, logs)
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The matrix of one backend over stdio: two clients, one per protocol
/// revision, share it.
async fn over_stdio(b: Backend) {
    let sim = b.simulator().await;
    let spec = b.spawn_for(&sim.base_url(), KEY);
    let legacy = StdioServer::legacy(&spec).await;
    let modern = StdioServer::modern(&spec).await;
    let conns = [Conn::Stdio(&legacy), Conn::Stdio(&modern)];
    let seen = tokio::join!(
        run_matrix(&conns, b, &sim, "stdio"),
        per_server_faults(false, b, &sim)
    )
    .0;
    for c in &conns {
        still_good(c, "stdio").await;
    }
    for server in [&legacy, &modern] {
        assert!(server.alive(), "the stdio server died");
    }
    assert_no_key("a tool result", &results_as_lines(&seen), KEY);
    for server in [legacy, modern] {
        let stdout = server.stdout.snapshot();
        let stderr = server.stderr.snapshot();
        assert_stdout_is_jsonrpc(&stdout);
        assert_no_key("stdout", &stdout, KEY);
        assert_no_key("stderr", &stderr, KEY);
        // The scan means something only if the debug log was captured.
        assert!(
            stderr.len() > 50,
            "too little stderr captured: {}",
            stderr.len()
        );
        assert!(
            !stderr.iter().any(|l| l.contains("panicked")),
            "the server panicked:\n{}",
            stderr.join("\n")
        );
        server.close().await;
    }
}

/// The matrix of one backend over Streamable HTTP: one server, a
/// 2026-07-28 and a 2025-11-25 client.
async fn over_http(b: Backend) {
    let sim = b.simulator().await;
    let spec = b.spawn_for(&sim.base_url(), KEY);
    let server = HttpServer::spawn(&spec).await;
    let modern = modern_client(&server.url).await.unwrap();
    let legacy = legacy_client(&server.url).await.unwrap();
    let conns = [Conn::Http(&modern), Conn::Http(&legacy)];
    let seen = tokio::join!(
        run_matrix(&conns, b, &sim, "http"),
        per_server_faults(true, b, &sim)
    )
    .0;
    for c in &conns {
        still_good(c, "http").await;
    }
    assert!(server.alive(), "the HTTP server died");
    assert_no_key("a tool result", &results_as_lines(&seen), KEY);
    let _ = legacy.cancel().await;
    let _ = modern.cancel().await;
    let stderr = server.stderr.snapshot();
    assert_no_key("stderr", &stderr, KEY);
    assert!(
        stderr.len() > 50,
        "too little stderr captured: {}",
        stderr.len()
    );
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "the server panicked:\n{}",
        stderr.join("\n")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_over_stdio() {
    over_stdio(Backend::Gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_over_http() {
    over_http(Backend::Gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heygen_fault_matrix_over_stdio() {
    over_stdio(Backend::Heygen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heygen_fault_matrix_over_http() {
    over_http(Backend::Heygen).await;
}
