//! The simulator's HeyGen v3 wire (`Simulator::start_heygen`), driven over
//! real HTTP as a v3 client sees it: a Video Agent session followed to a
//! downloadable MP4, create validation with its codes and params, the fault
//! markers in the v3 envelope, stop, the wallet balance, asset uploads, the
//! paginated catalogue, and a second simulator answering for a session the
//! first one created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashSet,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use heygen_video_mcp::simulator::{SAMPLE_MP4, SimConfig, Simulator};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const KEY: &str = "hg-test-key-0123456789";
const DEADLINE: Duration = Duration::from_secs(30);
/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn sim(render: Duration) -> Simulator {
    Simulator::start_heygen(SimConfig {
        render_time: render,
        api_key: Some(KEY.into()),
        ..SimConfig::heygen()
    })
    .await
    .unwrap()
}

/// A simulator that takes any key (for tests with several keys).
async fn open_sim(render: Duration) -> Simulator {
    Simulator::start_heygen(SimConfig {
        render_time: render,
        ..SimConfig::heygen()
    })
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    async fn of(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a v3 error envelope with this status and code.
    fn expect_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        let e = &self.json["error"];
        assert_eq!(e["code"], code, "{self:?}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        assert_request_id(self);
        e
    }

    fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "{self:?}");
        assert_request_id(self);
        &self.json["data"]
    }
}

fn assert_request_id(a: &Answer) {
    let id = a.header("x-request-id").unwrap_or_else(|| panic!("{a:?}"));
    assert!(id.starts_with("req_sim_") && id.len() > 8, "{id}");
}

struct Api {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(sim: &Simulator) -> Api {
        Api {
            base: sim.base_url(),
            key: Some(KEY.into()),
            http: http(),
        }
    }

    fn with_key(sim: &Simulator, key: Option<&str>) -> Api {
        Api {
            key: key.map(String::from),
            ..Api::new(sim)
        }
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => r.header("X-Api-Key", k),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let r = self.auth(self.http.get(format!("{}{path}", self.base)));
        Answer::of(r.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        let r = self.auth(self.http.post(format!("{}{path}", self.base)).json(&body));
        Answer::of(r.send().await.unwrap()).await
    }

    async fn create(&self, body: Value) -> Answer {
        self.post("/v3/video-agents", body).await
    }

    /// Creates a session and returns its id (asserting acceptance).
    async fn session(&self, prompt: &str) -> String {
        let a = self.create(json!({ "prompt": prompt })).await;
        a.data()["session_id"].as_str().unwrap().to_string()
    }

    /// Polls `path` until `done` holds for its data; returns that data.
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let a = self.get(path).await;
            if a.status == 200 && done(&a.json["data"]) {
                return a.json["data"].clone();
            }
            assert!(start.elapsed() < DEADLINE, "{path} never got there: {a:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn upload(&self, filename: &str, bytes: &[u8]) -> Answer {
        let (content_type, body) = multipart(filename, bytes);
        let r = self
            .auth(self.http.post(format!("{}/v3/assets", self.base)))
            .header("content-type", content_type)
            .body(body);
        Answer::of(r.send().await.unwrap()).await
    }
}

/// A multipart/form-data body with a text field and the `file` field.
fn multipart(filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----sim-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nvideo-agent\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn id_rules(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn a_session_goes_from_thinking_to_a_downloadable_video() {
    let sim = sim(Duration::from_secs(2)).await;
    let api = Api::new(&sim);
    let a = api
        .create(json!({"prompt": "A product tour", "mode": "generate", "orientation": "landscape"}))
        .await;
    let d = a.data();
    let session_id = d["session_id"].as_str().unwrap().to_string();
    assert!(id_rules(&session_id), "{session_id}");
    assert_eq!(d["status"], "thinking");
    assert!(d["video_id"].is_null());
    assert!(d["created_at"].as_u64().unwrap() <= now());

    // The session: thinking without a video id, then generating with one.
    let path = format!("/v3/video-agents/{session_id}");
    let mut last_progress = 0;
    let mut seen = HashSet::new();
    let video_id = loop {
        let s = api.get(&path).await.data().clone();
        let status = s["status"].as_str().unwrap().to_string();
        let progress = s["progress"].as_u64().unwrap();
        assert!(progress >= last_progress && progress <= 100, "{s}");
        last_progress = progress;
        assert_eq!(s["session_id"], session_id.as_str());
        assert!(s["title"].is_string() && s["messages"].is_array(), "{s}");
        match status.as_str() {
            "thinking" => {
                assert!(s["video_id"].is_null(), "{s}");
                assert!(progress <= 10, "{s}");
            }
            "generating" | "completed" => break s["video_id"].as_str().unwrap().to_string(),
            other => panic!("unexpected session status {other}: {s}"),
        }
        seen.insert(status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(seen.contains("thinking"), "{seen:?}");

    // The video: pending/processing with no links, then completed with them.
    let vpath = format!("/v3/videos/{video_id}");
    let video = loop {
        let v = api.get(&vpath).await.data().clone();
        assert_eq!(v["id"], video_id.as_str());
        match v["status"].as_str().unwrap() {
            "pending" | "processing" => {
                for f in [
                    "video_url",
                    "thumbnail_url",
                    "captioned_video_url",
                    "gif_url",
                ] {
                    assert!(v[f].is_null(), "{f}: {v}");
                }
            }
            "completed" => break v,
            other => panic!("unexpected video status {other}: {v}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(video["duration"].as_f64().unwrap() > 0.0);
    assert!(video["completed_at"].as_u64().unwrap() >= video["created_at"].as_u64().unwrap());
    assert!(video["failure_code"].is_null() && video["failure_message"].is_null());
    let url = video["video_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/", sim.base_url())), "{url}");
    let expires: u64 = query_param(url, "Expires").unwrap().parse().unwrap();
    assert!(query_param(url, "Signature").is_some(), "{url}");
    assert!(expires > now() + 6 * 24 * 3600, "links live 7 days: {url}");

    let file = http().get(url).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "video/mp4");
    assert!(file.headers().contains_key("x-request-id"));
    assert_eq!(file.bytes().await.unwrap(), SAMPLE_MP4);
    assert_eq!(sim.state.count("file"), 1);
    let thumb = http()
        .get(video["thumbnail_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/png");

    // The finished session, newest message first.
    let s = api.until(&path, |s| s["status"] == "completed").await;
    assert_eq!(s["progress"], 100);
    assert_eq!(s["video_id"], video_id.as_str());
    let messages = s["messages"].as_array().unwrap();
    assert!(!messages.is_empty() && messages.len() <= 40);
    assert_eq!(messages[0]["resource_ids"][0], video_id.as_str(), "{s}");
    let times: Vec<u64> = messages
        .iter()
        .map(|m| m["created_at"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert!(
        messages
            .iter()
            .any(|m| m["role"] == "user" && m["content"] == "A product tour")
    );

    // A tampered signature or a missing one is refused, S3-style.
    let bad = url.replace("Signature=", "Signature=x");
    let a = Answer::of(http().get(&bad).send().await.unwrap()).await;
    assert_eq!(a.status, 403);
    assert!(a.text.contains("SignatureDoesNotMatch"), "{}", a.text);
    let bare = url.split('?').next().unwrap();
    assert_eq!(http().get(bare).send().await.unwrap().status(), 403);

    assert_eq!(sim.state.count("create"), 1);
    assert_eq!(sim.state.task_count(), 1);
    assert!(sim.state.count("session") >= 2);
    assert!(sim.state.count("video") >= 1);
    assert_eq!(sim.state.count("file"), 3, "every fetch of the MP4 counts");
    let seen = sim.state.requests();
    let create = seen.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(create.path, "/v3/video-agents");
    assert_eq!(create.key.as_deref(), Some(KEY));
    assert_eq!(create.body.as_ref().unwrap()["prompt"], "A product tour");
}

#[tokio::test]
async fn bad_creates_are_refused_with_their_code_and_param() {
    let sim = sim(Duration::ZERO).await;
    let api = Api::new(&sim);
    let group_id = api.get("/v3/avatars?limit=1").await.data()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = |u: &str| json!({"type": "url", "url": u});
    let cases = [
        (json!({}), 400, "invalid_parameter", "prompt"),
        (json!({"prompt": ""}), 400, "invalid_parameter", "prompt"),
        (
            json!({"prompt": "x".repeat(10_001)}),
            400,
            "invalid_parameter",
            "prompt",
        ),
        (json!({"prompt": 7}), 400, "invalid_parameter", "prompt"),
        (
            json!({"prompt": "ok", "mode": "auto"}),
            400,
            "invalid_parameter",
            "mode",
        ),
        (
            json!({"prompt": "ok", "orientation": "square"}),
            400,
            "invalid_parameter",
            "orientation",
        ),
        (
            json!({"prompt": "ok", "model": "video_agent_v3"}),
            400,
            "invalid_parameter",
            "model",
        ),
        (
            json!({"prompt": "ok", "file_urls": ["https://example.com/a.png"]}),
            400,
            "invalid_parameter",
            "file_urls",
        ),
        (
            json!({"prompt": "ok", "auto_proceed": true}),
            400,
            "invalid_parameter",
            "auto_proceed",
        ),
        (
            json!({"prompt": "ok", "avatar_id": "Nobody_at_all"}),
            404,
            "avatar_not_found",
            "avatar_id",
        ),
        (
            json!({"prompt": "ok", "avatar_id": group_id}),
            404,
            "avatar_not_found",
            "avatar_id",
        ),
        (
            json!({"prompt": "ok", "voice_id": "no-such-voice"}),
            404,
            "voice_not_found",
            "voice_id",
        ),
        (
            json!({"prompt": "ok", "style_id": "no-such-style"}),
            400,
            "invalid_parameter",
            "style_id",
        ),
        (
            json!({"prompt": "ok", "avatar_id": 12}),
            400,
            "invalid_parameter",
            "avatar_id",
        ),
        (
            json!({"prompt": "ok", "files": [url("ftp://example.com/a.png")]}),
            400,
            "invalid_parameter",
            "files",
        ),
        (
            json!({"prompt": "ok", "files": vec![url("https://example.com/a.png"); 21]}),
            400,
            "invalid_parameter",
            "files",
        ),
        (
            json!({"prompt": "ok", "files": [{"type": "base64", "content_type": "image/png", "data": "iVBORw0KGgo="}]}),
            400,
            "invalid_parameter",
            "files",
        ),
        (
            json!({"prompt": "ok", "files": [{"type": "base64", "media_type": "text/html", "data": "PGh0bWw+"}]}),
            400,
            "invalid_parameter",
            "files",
        ),
        (
            json!({"prompt": "ok", "files": [{"type": "asset_id", "asset_id": "asset-123"}]}),
            400,
            "invalid_parameter",
            "files",
        ),
        (
            json!({"prompt": "ok", "files": [{"type": "file", "path": "/tmp/a.png"}]}),
            400,
            "invalid_parameter",
            "files",
        ),
        (
            json!({"prompt": "ok", "incognito_mode": "yes"}),
            400,
            "invalid_parameter",
            "incognito_mode",
        ),
    ];
    for (body, status, code, param) in cases {
        let a = api.create(body.clone()).await;
        let e = a.expect_error(status, code);
        assert_eq!(e["param"], param, "{body}: {a:?}");
    }
    let not_json = Answer::of(
        http()
            .post(format!("{}/v3/video-agents", sim.base_url()))
            .header("X-Api-Key", KEY)
            .body("prompt=hello")
            .send()
            .await
            .unwrap(),
    )
    .await;
    not_json.expect_error(400, "invalid_parameter");
    assert_eq!(sim.state.task_count(), 0, "nothing refused is created");
    let me = api.get("/v3/users/me").await;
    assert_eq!(me.data()["wallet"]["remaining_balance"], 1000.0);

    // Every field at once, each a value the catalogue knows.
    let look = api.get("/v3/avatars/looks?limit=1").await.data()[0].clone();
    let voice = api.get("/v3/voices?limit=1").await.data()[0]["voice_id"].clone();
    let style = api.get("/v3/video-agents/styles?limit=1").await.data()[0]["style_id"].clone();
    let asset = api.upload("slide.png", PNG).await.data()["asset_id"].clone();
    let a = api
        .create(json!({
            "prompt": "Everything",
            "mode": "generate",
            "avatar_id": look["id"],
            "voice_id": voice,
            "style_id": style,
            "orientation": "portrait",
            "files": [
                url("https://example.com/deck.pdf"),
                {"type": "asset_id", "asset_id": asset},
                {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            ],
            "incognito_mode": true,
            "brand_kit_id": "bk_1",
            "callback_url": "https://example.com/hook",
            "callback_id": "cb-1",
        }))
        .await;
    assert!(a.data()["session_id"].is_string(), "{a:?}");
    assert_eq!(sim.state.task_count(), 1);
}

#[tokio::test]
async fn create_markers_answer_in_the_v3_envelope() {
    let sim = sim(Duration::ZERO).await;
    let api = Api::new(&sim);
    let create = |p: &str| api.create(json!({ "prompt": p }));

    create("[401]").await.expect_error(401, "unauthorized");
    let e = create("[402]").await;
    let msg = e.expect_error(402, "insufficient_credit")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("Your account has ") && msg.contains(" credits but this video requires "),
        "{msg}"
    );
    let e = create("[422:download_failed] a video").await;
    assert_eq!(e.expect_error(400, "download_failed")["param"], "prompt");
    let e = create("[echo-key]").await;
    assert!(
        e.expect_error(400, "invalid_parameter")["message"]
            .as_str()
            .unwrap()
            .contains(KEY)
    );

    let r = create("[429]").await;
    r.expect_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = create("[429-bare]").await;
    r.expect_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), None);
    for _ in 0..2 {
        create("[429x:2] twice")
            .await
            .expect_error(429, "rate_limit_exceeded");
    }
    assert_eq!(create("[429x:2] twice").await.status, 200);

    create("[500]").await.expect_error(500, "internal_error");
    let r = create("[502]").await;
    assert_eq!(r.status, 502);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_request_id(&r);
    create("[503]").await.expect_error(503, "internal_error");
    assert_eq!(
        sim.state.task_count(),
        1,
        "only the third [429x:2] was accepted"
    );

    // Accepted, but the answer is broken: the session exists all the same.
    let r = create("[garbage]").await;
    assert_eq!(r.status, 200);
    assert!(r.json.is_null(), "{}", r.text);
    let r = create("[truncated]").await;
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "{}",
        r.text
    );
    let dropped = http()
        .post(format!("{}/v3/video-agents", sim.base_url()))
        .header("X-Api-Key", KEY)
        .json(&json!({"prompt": "[drop]"}))
        .send()
        .await;
    if let Ok(resp) = dropped {
        assert!(resp.bytes().await.is_err(), "the answer is cut off");
    }
    assert_eq!(sim.state.task_count(), 4);

    // Keys: missing or wrong is 401; a bearer token is accepted too.
    Api::with_key(&sim, None)
        .create(json!({"prompt": "hi"}))
        .await
        .expect_error(401, "unauthorized");
    Api::with_key(&sim, Some("wrong"))
        .get("/v3/users/me")
        .await
        .expect_error(401, "unauthorized");
    let bearer = http()
        .post(format!("{}/v3/video-agents", sim.base_url()))
        .bearer_auth(KEY)
        .json(&json!({"prompt": "via bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    assert_eq!(sim.state.task_count(), 5);
}

#[tokio::test]
async fn task_markers_shape_the_session_and_its_video() {
    let sim = sim(Duration::ZERO).await;
    let api = Api::new(&sim);

    // [fail]: the video exists and fails.
    let id = api.session("[fail][after:0.3]").await;
    let s = api
        .until(&format!("/v3/video-agents/{id}"), |s| {
            s["status"] == "failed"
        })
        .await;
    assert_eq!(s["messages"][0]["type"], "error", "{s}");
    let video_id = s["video_id"].as_str().unwrap();
    let v = api.get(&format!("/v3/videos/{video_id}")).await;
    let v = v.data();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["failure_code"], "rendering_failed");
    assert_eq!(v["failure_message"], "Avatar rendering timed out");
    assert!(v["video_url"].is_null());

    // [session-fail]: no video, ever.
    let id = api.session("[session-fail][after:0.2]").await;
    let s = api
        .until(&format!("/v3/video-agents/{id}"), |s| {
            s["status"] == "failed"
        })
        .await;
    assert!(s["video_id"].is_null(), "{s}");
    assert_eq!(s["messages"][0]["type"], "error");

    // [status:X]: the unknown word while the video renders.
    let id = api.session("[status:rendering][after:3]").await;
    let s = api
        .until(&format!("/v3/video-agents/{id}"), |s| {
            s["video_id"].is_string()
        })
        .await;
    let vpath = format!("/v3/videos/{}", s["video_id"].as_str().unwrap());
    let v = api.get(&vpath).await;
    if s["status"] == "generating" {
        assert_eq!(v.data()["status"], "rendering", "{v:?}");
    }
    let v = api.until(&vpath, |v| v["status"] != "rendering").await;
    assert_eq!(v["status"], "completed");

    // [link:403]: the first link is refused; the next status call's works.
    let id = api.session("[link:403][after:0]").await;
    let s = api.get(&format!("/v3/video-agents/{id}")).await;
    let vpath = format!("/v3/videos/{}", s.data()["video_id"].as_str().unwrap());
    let first = api.get(&vpath).await.data()["video_url"].clone();
    let refused = Answer::of(http().get(first.as_str().unwrap()).send().await.unwrap()).await;
    assert_eq!(refused.status, 403);
    assert!(refused.text.contains("AccessDenied"), "{}", refused.text);
    let second = api.get(&vpath).await.data()["video_url"].clone();
    assert_ne!(first, second);
    let ok = http().get(second.as_str().unwrap()).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap(), SAMPLE_MP4);

    // [get:500:2]: the first two lookups (session and video together) fail.
    let id = api.session("[get:500:2][after:0]").await;
    let spath = format!("/v3/video-agents/{id}");
    api.get(&spath).await.expect_error(500, "internal_error");
    api.get(&spath).await.expect_error(500, "internal_error");
    let vid = api.get(&spath).await.data()["video_id"].clone();
    assert_eq!(
        api.get(&format!("/v3/videos/{}", vid.as_str().unwrap()))
            .await
            .data()["status"],
        "completed"
    );
    let id = api.session("[get:429:1][after:0]").await;
    let r = api.get(&format!("/v3/video-agents/{id}")).await;
    r.expect_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("1"));

    // [file:…]: the file misbehaves.
    let id = api.session("[file:html][after:0]").await;
    let vid = api.get(&format!("/v3/video-agents/{id}")).await.data()["video_id"].clone();
    let url = api
        .get(&format!("/v3/videos/{}", vid.as_str().unwrap()))
        .await
        .data()["video_url"]
        .clone();
    let f = http().get(url.as_str().unwrap()).send().await.unwrap();
    assert_eq!(f.status(), 200);
    assert!(
        f.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn chat_mode_waits_for_input() {
    let sim = sim(Duration::ZERO).await;
    let api = Api::new(&sim);
    let a = api
        .create(json!({"prompt": "Let's talk [after:0.2]", "mode": "chat"}))
        .await;
    let id = a.data()["session_id"].as_str().unwrap().to_string();
    let s = api
        .until(&format!("/v3/video-agents/{id}"), |s| {
            s["status"] == "waiting_for_input"
        })
        .await;
    assert!(s["video_id"].is_null());
}

#[tokio::test]
async fn expired_links_are_refused_and_refreshed_on_every_status_call() {
    let sim = Simulator::start_heygen(SimConfig {
        render_time: Duration::ZERO,
        link_ttl: Duration::ZERO,
        ..SimConfig::heygen()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let id = api.session("short-lived links").await;
    let s = api.get(&format!("/v3/video-agents/{id}")).await;
    let vpath = format!("/v3/videos/{}", s.data()["video_id"].as_str().unwrap());
    let url = api.get(&vpath).await.data()["video_url"].clone();
    let a = Answer::of(http().get(url.as_str().unwrap()).send().await.unwrap()).await;
    assert_eq!(a.status, 403);
    assert!(a.text.contains("Request has expired"), "{}", a.text);
    assert_eq!(
        SimConfig::default().link_ttl,
        Duration::from_secs(24 * 3600),
        "the gateway's default is unchanged"
    );
    assert_eq!(
        SimConfig::heygen().link_ttl,
        Duration::from_secs(7 * 24 * 3600)
    );
}

#[tokio::test]
async fn stop_fails_a_running_session() {
    let sim = sim(Duration::from_secs(600)).await;
    let api = Api::new(&sim);
    let id = api.session("A long one").await;
    let a = api
        .post(&format!("/v3/video-agents/{id}/stop"), json!({}))
        .await;
    assert_eq!(a.data()["session_id"], id.as_str());
    let s = api.get(&format!("/v3/video-agents/{id}")).await;
    let s = s.data();
    assert_eq!(s["status"], "failed");
    assert!(s["video_id"].is_null());
    assert_eq!(s["messages"][0]["type"], "error");
    assert_eq!(s["messages"][0]["content"], "Stopped by user");

    // A finished session stays as it ended.
    let done = api.session("Quick [after:0]").await;
    api.post(&format!("/v3/video-agents/{done}/stop"), json!({}))
        .await
        .data();
    let s = api.get(&format!("/v3/video-agents/{done}")).await;
    assert_eq!(s.data()["status"], "completed");

    api.post("/v3/video-agents/sess-sim-nope-nope/stop", json!({}))
        .await
        .expect_error(404, "not_found");
    assert_eq!(sim.state.count("stop"), 3);
}

#[tokio::test]
async fn the_wallet_balance_drops_per_create_and_per_key() {
    let sim = Simulator::start_heygen(SimConfig {
        render_time: Duration::ZERO,
        start_balance: 12,
        api_key: None,
        ..SimConfig::heygen()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let me = api.get("/v3/users/me").await;
    let d = me.data();
    assert_eq!(d["billing_type"], "wallet");
    assert_eq!(d["wallet"]["currency"], "usd");
    assert_eq!(d["wallet"]["remaining_balance"], 12.0);
    assert_eq!(d["wallet"]["auto_reload"]["enabled"], false);
    for f in ["username", "email", "first_name", "last_name"] {
        assert!(d[f].is_string(), "{f}");
    }
    api.session("one").await;
    api.session("two").await;
    assert_eq!(
        api.get("/v3/users/me").await.data()["wallet"]["remaining_balance"],
        2.0
    );
    let e = api.create(json!({"prompt": "three"})).await;
    let msg = e.expect_error(402, "insufficient_credit")["message"].clone();
    assert_eq!(msg, "Your account has 2 credits but this video requires 5");
    let other = Api::with_key(&sim, Some("another-key"));
    assert_eq!(
        other.get("/v3/users/me").await.data()["wallet"]["remaining_balance"],
        12.0
    );
    assert_eq!(sim.state.count("me"), 3);
    assert_eq!(sim.state.task_count(), 2);
}

#[tokio::test]
async fn assets_upload_by_content_and_feed_creates() {
    let sim = open_sim(Duration::ZERO).await;
    let api = Api::new(&sim);
    let a = api.upload("picture.bin", PNG).await;
    let d = a.data().clone();
    assert_eq!(d["mime_type"], "image/png");
    assert_eq!(d["size_bytes"], PNG.len());
    let back = http().get(d["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(back.bytes().await.unwrap(), PNG);
    let mp4 = api.upload("clip", SAMPLE_MP4).await;
    assert_eq!(mp4.data()["mime_type"], "video/mp4");

    let e = api.upload("notes.png", b"just some text").await;
    assert_eq!(e.expect_error(400, "invalid_parameter")["param"], "file");
    let mut big = PNG.to_vec();
    big.resize(32 * 1024 * 1024 + 1, 0);
    api.upload("huge.png", &big)
        .await
        .expect_error(413, "payload_too_large");
    let not_multipart = Answer::of(
        http()
            .post(format!("{}/v3/assets", sim.base_url()))
            .header("X-Api-Key", KEY)
            .json(&json!({"file": "iVBORw0KGgo="}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        not_multipart.expect_error(400, "invalid_parameter")["param"],
        "file"
    );

    let a = api
        .create(json!({"prompt": "With a slide", "files": [{"type": "asset_id", "asset_id": d["asset_id"]}]}))
        .await;
    assert!(a.data()["session_id"].is_string());
    // Another key's asset is unknown.
    let other = Api::with_key(&sim, Some("someone-else"));
    let e = other
        .create(json!({"prompt": "Not mine", "files": [{"type": "asset_id", "asset_id": d["asset_id"]}]}))
        .await;
    assert_eq!(e.expect_error(400, "invalid_parameter")["param"], "files");
    assert_eq!(sim.state.count("asset"), 5);
    let logged = sim
        .state
        .requests()
        .into_iter()
        .find(|r| r.path == "/v3/assets")
        .unwrap();
    assert_eq!(logged.body.unwrap()["filename"], "picture.bin");
}

/// Every item of a list, page by page; asserts no page repeats an item.
async fn walk(api: &Api, path: &str, limit: usize, id_field: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut ids = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("{path}{sep}limit={limit}&token={t}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let a = api.get(&url).await;
        let page = a.data().as_array().unwrap().clone();
        assert!(page.len() <= limit, "{url}");
        for item in &page {
            assert!(
                ids.insert(item[id_field].as_str().unwrap().to_string()),
                "{item}"
            );
        }
        items.extend(page);
        match (&a.json["has_more"], &a.json["next_token"]) {
            (Value::Bool(true), Value::String(t)) => token = Some(t.clone()),
            (Value::Bool(false), Value::Null) => return items,
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_catalogue_pages_and_filters() {
    let sim = sim(Duration::ZERO).await;
    let api = Api::new(&sim);

    let groups = walk(&api, "/v3/avatars", 5, "id").await;
    assert_eq!(groups.len(), 14);
    assert_eq!(
        walk(&api, "/v3/avatars?ownership=public", 50, "id")
            .await
            .len(),
        12
    );
    assert_eq!(
        walk(&api, "/v3/avatars?ownership=private", 1, "id")
            .await
            .len(),
        2
    );
    let first = api.get("/v3/avatars").await;
    assert_eq!(
        first.data().as_array().unwrap().len(),
        14,
        "default limit 20"
    );
    assert_eq!(first.json["has_more"], false);

    let looks = walk(&api, "/v3/avatars/looks", 7, "id").await;
    let total: u64 = groups
        .iter()
        .map(|g| g["looks_count"].as_u64().unwrap())
        .sum();
    assert_eq!(looks.len() as u64, total);
    for g in &groups {
        let of_group = walk(
            &api,
            &format!("/v3/avatars/looks?group_id={}", g["id"].as_str().unwrap()),
            50,
            "id",
        )
        .await;
        assert_eq!(of_group.len() as u64, g["looks_count"].as_u64().unwrap());
        assert!((2..=5).contains(&of_group.len()));
        assert!(of_group.iter().all(|l| l["group_id"] == g["id"]));
    }
    for kind in ["studio_avatar", "digital_twin", "photo_avatar"] {
        let some = walk(
            &api,
            &format!("/v3/avatars/looks?avatar_type={kind}"),
            50,
            "id",
        )
        .await;
        assert!(
            !some.is_empty() && some.iter().all(|l| l["avatar_type"] == kind),
            "{kind}"
        );
    }
    let e = api.get("/v3/avatars/looks?group_id=nope").await;
    assert_eq!(e.expect_error(404, "not_found")["param"], "group_id");
    let one = api
        .get(&format!(
            "/v3/avatars/looks/{}",
            looks[3]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one.data(), &looks[3]);
    api.get("/v3/avatars/looks/nope")
        .await
        .expect_error(404, "avatar_not_found");

    let voices = walk(&api, "/v3/voices", 7, "voice_id").await;
    assert_eq!(voices.len(), 30);
    assert!(voices.iter().all(|v| v["type"] == "public"));
    let languages: HashSet<&str> = voices
        .iter()
        .map(|v| v["language"].as_str().unwrap())
        .collect();
    assert!(languages.len() >= 5, "{languages:?}");
    assert_eq!(
        walk(&api, "/v3/voices?type=private", 10, "voice_id")
            .await
            .len(),
        2
    );
    let english = walk(&api, "/v3/voices?language=english", 3, "voice_id").await;
    assert!(!english.is_empty() && english.iter().all(|v| v["language"] == "English"));
    let female = walk(
        &api,
        "/v3/voices?gender=FEMALE&language=English",
        3,
        "voice_id",
    )
    .await;
    assert!(!female.is_empty() && female.len() < english.len());
    assert!(female.iter().all(|v| v["gender"] == "female"));
    let preview = voices
        .iter()
        .find_map(|v| v["preview_audio_url"].as_str())
        .unwrap();
    let p = http().get(preview).send().await.unwrap();
    assert_eq!(p.status(), 200);
    assert_eq!(p.headers()["content-type"], "audio/wav");

    let styles = walk(&api, "/v3/video-agents/styles", 4, "style_id").await;
    assert!(styles.len() >= 15);
    let cinematic = walk(
        &api,
        "/v3/video-agents/styles?tag=cinematic",
        100,
        "style_id",
    )
    .await;
    assert!(!cinematic.is_empty() && cinematic.len() < styles.len());
    assert!(
        cinematic
            .iter()
            .all(|s| s["tags"].as_array().unwrap().contains(&json!("cinematic")))
    );
    let e = api.get("/v3/video-agents/styles?tag=bogus").await;
    assert_eq!(e.expect_error(400, "invalid_parameter")["param"], "tag");

    for bad in [
        "/v3/avatars?limit=0",
        "/v3/avatars?limit=51",
        "/v3/avatars/looks?limit=abc",
        "/v3/voices?limit=101",
        "/v3/video-agents/styles?limit=-1",
    ] {
        let e = api.get(bad).await;
        assert_eq!(
            e.expect_error(400, "invalid_parameter")["param"],
            "limit",
            "{bad}"
        );
    }
    assert_eq!(api.get("/v3/voices?limit=100").await.status, 200);
    let token = api.get("/v3/voices?limit=2").await.json["next_token"]
        .as_str()
        .unwrap()
        .to_string();
    for bad in [
        "/v3/voices?token=not-a-token".to_string(),
        format!("/v3/video-agents/styles?token={token}"),
        format!("/v3/voices?language=French&token={token}"),
    ] {
        let e = api.get(&bad).await;
        assert_eq!(
            e.expect_error(400, "invalid_parameter")["param"],
            "token",
            "{bad}"
        );
    }
    assert_eq!(
        api.get(&format!("/v3/voices?token={token}")).await.status,
        200
    );
    assert!(sim.state.count("avatars") >= 4);
    assert!(sim.state.count("looks") >= 10);
    assert!(sim.state.count("voices") >= 8);
    assert!(sim.state.count("styles") >= 3);
}

#[tokio::test]
async fn another_simulator_answers_for_a_session_the_first_created() {
    let first = open_sim(Duration::ZERO).await;
    let id = Api::new(&first)
        .session("Made by the first [after:0.5]")
        .await;
    drop(first);

    // The second renders slowly itself: the session keeps its own render time.
    let second = open_sim(Duration::from_secs(600)).await;
    let api = Api::new(&second);
    let s = api
        .until(&format!("/v3/video-agents/{id}"), |s| {
            s["status"] == "completed"
        })
        .await;
    let v = api
        .get(&format!("/v3/videos/{}", s["video_id"].as_str().unwrap()))
        .await;
    let url = v.data()["video_url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&second.base_url()), "{url}");
    let f = http().get(&url).send().await.unwrap();
    assert_eq!(f.bytes().await.unwrap(), SAMPLE_MP4);
    assert_eq!(second.state.task_count(), 0);

    // Another key's session, an altered id, a gateway task id: all unknown.
    Api::with_key(&second, Some("other-key"))
        .get(&format!("/v3/video-agents/{id}"))
        .await
        .expect_error(404, "not_found");
    let mut altered = id.clone();
    let at = altered.len() - 3;
    let c = if &altered[at..=at] == "a" { "b" } else { "a" };
    altered.replace_range(at..=at, c);
    api.get(&format!("/v3/video-agents/{altered}"))
        .await
        .expect_error(404, "not_found");
    let gateway = Simulator::start(SimConfig::default()).await.unwrap();
    let task = http()
        .post(format!("{}/v1/videos/generations", gateway.base_url()))
        .bearer_auth(KEY)
        .json(&json!({"model": heygen_video_mcp::gateway::types::MODEL, "prompt": "gateway task"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let task_id = task["id"].as_str().unwrap_or_else(|| panic!("{task}"));
    api.get(&format!("/v3/video-agents/{task_id}"))
        .await
        .expect_error(404, "not_found");
    api.get(&format!("/v3/videos/{task_id}"))
        .await
        .expect_error(404, "video_not_found");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    let sim = sim(Duration::ZERO).await;
    let api = Api::new(&sim);
    api.get("/v3/nothing-here")
        .await
        .expect_error(404, "not_found");
    api.get("/v1/videos/generations")
        .await
        .expect_error(404, "not_found");
    api.get("/v3/video-agents/not-a-session")
        .await
        .expect_error(404, "not_found");
    api.get("/v3/videos/not-a-video")
        .await
        .expect_error(404, "video_not_found");
    api.post("/v3/users/me", json!({}))
        .await
        .expect_error(405, "method_not_allowed");
    assert_eq!(sim.state.count("unknown"), 2);
}
