//! Helpers shared by the integration tests: an in-process simulator, the
//! built binary spawned as a child (driven by rmcp's client, or in raw mode
//! with hand-written JSON-RPC lines), stderr/stdout capture, and assertions
//! that work on the wire form of results (`serde_json::Value`).
//!
//! Every spawned server gets a fresh temporary HOME / XDG_DATA_HOME (and its
//! own ledger file and download dir), a clean environment (no inherited
//! `HEYGEN_*` or proxy variables) and `RUST_LOG=debug`, so key-leak checks see
//! as many log lines as possible.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use heygen_video_mcp::simulator::{SimConfig, Simulator};
use rmcp::{
    ServiceExt,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    },
    service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
    task::JoinHandle,
};

/// The key the test simulator accepts (and the one that must never leak).
pub const TEST_KEY: &str = "sim-test-key-0123456789";
/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
/// Overall deadline for anything a test waits for; generous for slow machines.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The protocol revisions the server must speak.
pub const LEGACY: &str = "2025-11-25";
pub const MODERN: &str = "2026-07-28";

/// The tools every build must list (more may follow; the full, reviewed set
/// is pinned by the snapshots of tool_schemas.rs).
pub const CORE_TOOLS: [&str; 2] = ["create_video", "get_video_status"];

/// Fields every `VideoTask` (the structuredContent of both tools) carries.
pub const VIDEO_TASK_FIELDS: &[&str] = &[
    "task_id",
    "status",
    "upstream_status",
    "progress",
    "created_at",
    "links_expire_at",
    "video_urls",
    "error",
    "next_step",
];

// ---------------------------------------------------------------------------
// Simulator
// ---------------------------------------------------------------------------

/// A simulator in the test process: renders in 1 s, accepts only [`TEST_KEY`].
pub async fn start_sim() -> Simulator {
    start_sim_with(SimConfig {
        render_time: Duration::from_secs(1),
        api_key: Some(TEST_KEY.into()),
        ..SimConfig::default()
    })
    .await
}

pub async fn start_sim_with(config: SimConfig) -> Simulator {
    Simulator::start(config)
        .await
        .expect("the simulator binds 127.0.0.1:0")
}

/// Total requests the simulator has seen on every endpoint.
pub fn upstream_total(sim: &Simulator) -> usize {
    sim.state.requests().len()
}

// ---------------------------------------------------------------------------
// Spawning the binary
// ---------------------------------------------------------------------------

/// How to start the server child.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// `HEYGEN_API_BASE`; `None` leaves it unset.
    pub api_base: Option<String>,
    /// `HEYGEN_API_KEY`; `None` leaves it unset.
    pub api_key: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ServerOpts {
    /// Against `sim`, with the simulator's key.
    pub fn for_sim(sim: &Simulator) -> Self {
        Self {
            api_base: Some(sim.base_url()),
            api_key: Some(TEST_KEY.into()),
            ..Self::default()
        }
    }

    pub fn without_key(mut self) -> Self {
        self.api_key = None;
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// The per-child temporary home (HOME, XDG_DATA_HOME, ledger, downloads).
#[derive(Debug)]
pub struct TestHome {
    pub dir: TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_home(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn ledger(&self) -> PathBuf {
        self.path().join("ledger.sqlite")
    }

    pub fn downloads(&self) -> PathBuf {
        self.path().join("downloads")
    }
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

/// The command that starts the binary with piped stdin/stdout/stderr and a
/// clean environment.
pub fn server_command(opts: &ServerOpts, home: &TestHome) -> Command {
    std::fs::create_dir_all(home.data_home()).expect("create data home");
    std::fs::create_dir_all(home.downloads()).expect("create download dir");
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.data_home())
        .env("HEYGEN_LEDGER", home.ledger())
        .env("HEYGEN_DOWNLOAD_DIR", home.downloads())
        .env("RUST_LOG", "debug")
        .env("RUST_BACKTRACE", "1");
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    if let Some(base) = &opts.api_base {
        cmd.env("HEYGEN_API_BASE", base);
    }
    if let Some(key) = &opts.api_key {
        cmd.env("HEYGEN_API_KEY", key);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd.args(&opts.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Lines read from one of the child's output streams, kept for scanning.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn joined(&self) -> String {
        self.snapshot().join("\n")
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.snapshot().iter().any(|l| l.contains(needle))
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    /// Reads `r` line by line into a new `Lines` until EOF; each line is also
    /// handed to `each`.
    fn capture<R>(r: R, mut each: impl FnMut(&str) + Send + 'static) -> (Self, JoinHandle<()>)
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let lines = Lines::default();
        let out = lines.clone();
        let handle = tokio::spawn(async move {
            let mut reader = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.strip_suffix('\n').unwrap_or(&line);
                        let line = line.strip_suffix('\r').unwrap_or(line).to_string();
                        each(&line);
                        out.push(line);
                    }
                }
            }
        });
        (lines, handle)
    }
}

// ---------------------------------------------------------------------------
// rmcp client over the child's stdio
// ---------------------------------------------------------------------------

/// The binary driven by rmcp's client, as real clients do.
pub struct McpChild {
    pub client: RunningService<RoleClient, ClientConfig>,
    pub stderr: Lines,
    pub home: TestHome,
    /// The child's process id.
    pub pid: Option<u32>,
}

fn client_info(version: ProtocolVersion) -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("heygen-video-mcp-tests", "0.0.0"),
    )
    .with_protocol_version(version)
}

impl McpChild {
    /// Connects with the 2025-11-25 `initialize` handshake.
    pub async fn legacy(opts: ServerOpts) -> Self {
        Self::spawn(opts, false).await
    }

    /// Connects the 2026-07-28 way: `server/discover`, then stateless
    /// requests carrying the protocol `_meta` keys.
    pub async fn modern(opts: ServerOpts) -> Self {
        Self::spawn(opts, true).await
    }

    async fn spawn(opts: ServerOpts, modern: bool) -> Self {
        let home = TestHome::new();
        let cmd = server_command(&opts, &home);
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server binary");
        let pid = transport.id();
        let (stderr, _) = Lines::capture(stderr.expect("stderr is piped"), |_| {});
        let started = if modern {
            tokio::time::timeout(
                DEADLINE,
                client_info(ProtocolVersion::V_2026_07_28).serve_with_lifecycle(
                    transport,
                    ClientLifecycleMode::Discover {
                        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                    },
                ),
            )
            .await
        } else {
            tokio::time::timeout(
                DEADLINE,
                client_info(ProtocolVersion::V_2025_11_25).serve(transport),
            )
            .await
        };
        let client = match started {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!(
                "the MCP client could not connect: {e}\n--- stderr ---\n{}",
                stderr.joined()
            ),
            Err(_) => panic!(
                "the MCP client did not connect within {DEADLINE:?}\n--- stderr ---\n{}",
                stderr.joined()
            ),
        };
        Self {
            client,
            stderr,
            home,
            pid,
        }
    }

    /// `tools/call`, returned in wire form (`content`, `structuredContent`, `isError`).
    pub async fn call(&self, name: &str, args: Value) -> Value {
        let Value::Object(args) = args else {
            panic!("tool arguments must be an object, got {args}")
        };
        let params = CallToolRequestParams::new(name.to_string()).with_arguments(args);
        match tokio::time::timeout(DEADLINE, self.client.call_tool(params)).await {
            Ok(Ok(r)) => serde_json::to_value(r).expect("CallToolResult serialises"),
            Ok(Err(e)) => panic!(
                "tools/call {name} failed at the protocol level: {e}\n--- stderr ---\n{}",
                self.stderr.joined()
            ),
            Err(_) => panic!(
                "tools/call {name} got no answer within {DEADLINE:?}\n--- stderr ---\n{}",
                self.stderr.joined()
            ),
        }
    }

    /// `tools/list` (all pages), in wire form.
    pub async fn list_tools(&self) -> Vec<Value> {
        let tools = tokio::time::timeout(DEADLINE, self.client.list_all_tools())
            .await
            .expect("tools/list answered in time")
            .expect("tools/list succeeds");
        tools
            .into_iter()
            .map(|t| serde_json::to_value(t).expect("Tool serialises"))
            .collect()
    }

    /// Polls `get_video_status` until the task is finished.
    pub async fn wait_finished(&self, task_id: &str) -> Value {
        poll_until_finished(|| self.call("get_video_status", json!({ "task_id": task_id }))).await
    }

    /// Closes stdin (the MCP stdio shutdown) and waits for the child to go.
    pub async fn shutdown(self) -> Lines {
        let _ = tokio::time::timeout(DEADLINE, self.client.cancel()).await;
        // Give the stderr reader a moment to drain after the child exited.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stderr
    }
}

// ---------------------------------------------------------------------------
// Raw mode: hand-written JSON-RPC lines on the child's stdin/stdout
// ---------------------------------------------------------------------------

/// The binary driven with hand-written JSON-RPC lines; every stdout line is
/// recorded (rmcp's reader would silently skip unparsable ones).
pub struct RawChild {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::UnboundedReceiver<Value>,
    stash: Vec<Value>,
    next_id: i64,
    pub stdout: Lines,
    stdout_task: Option<JoinHandle<()>>,
    pub stderr: Lines,
    stderr_task: Option<JoinHandle<()>>,
    pub home: TestHome,
    /// `_meta` added to every request when speaking 2026-07-28.
    modern_meta: Option<Value>,
}

/// The `_meta` a 2026-07-28 client puts on every request.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0.0.0"}
    })
}

impl RawChild {
    pub fn spawn(opts: ServerOpts) -> Self {
        let home = TestHome::new();
        let mut child = server_command(&opts, &home)
            .spawn()
            .expect("spawn the server binary");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::unbounded_channel();
        let (stdout, stdout_task) =
            Lines::capture(child.stdout.take().expect("stdout piped"), move |line| {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    let _ = tx.send(v);
                }
            });
        let (stderr, stderr_task) =
            Lines::capture(child.stderr.take().expect("stderr piped"), |_| {});
        Self {
            child,
            stdin,
            rx,
            stash: Vec::new(),
            next_id: 1,
            stdout,
            stdout_task: Some(stdout_task),
            stderr,
            stderr_task: Some(stderr_task),
            home,
            modern_meta: None,
        }
    }

    /// Spawned and initialised with the 2025-11-25 handshake; returns the
    /// `initialize` result alongside.
    pub async fn legacy(opts: ServerOpts) -> (Self, Value) {
        let mut raw = Self::spawn(opts);
        let init = raw.initialize(LEGACY).await;
        (raw, init)
    }

    /// Spawned and speaking 2026-07-28 (no handshake; `_meta` on every
    /// request); returns the `server/discover` result alongside.
    pub async fn modern(opts: ServerOpts) -> (Self, Value) {
        let mut raw = Self::spawn(opts);
        raw.modern_meta = Some(modern_meta());
        let discover = raw.request_ok("server/discover", json!({})).await;
        (raw, discover)
    }

    /// `initialize` + `notifications/initialized`; returns the result.
    pub async fn initialize(&mut self, version: &str) -> Value {
        let result = self
            .request_ok(
                "initialize",
                json!({
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0.0.0"}
                }),
            )
            .await;
        self.notify("notifications/initialized", None).await;
        result
    }

    /// Writes one line (a newline is appended).
    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the child's stdin");
        stdin.flush().await.expect("flush stdin");
    }

    pub async fn send(&mut self, msg: &Value) {
        self.send_line(&msg.to_string()).await;
    }

    pub async fn notify(&mut self, method: &str, params: Option<Value>) {
        let mut msg = json!({"jsonrpc": "2.0", "method": method});
        if let Some(p) = params {
            msg["params"] = p;
        }
        self.send(&msg).await;
    }

    /// Sends a request and returns the whole response message (result or error).
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut params = params;
        if let Some(meta) = &self.modern_meta {
            let obj = params.as_object_mut().expect("params must be an object");
            let m = obj.entry("_meta").or_insert_with(|| json!({}));
            for (k, v) in meta.as_object().expect("meta object") {
                m[k] = v.clone();
            }
        }
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(id).await
    }

    /// Sends a request and returns its `result`, panicking on a JSON-RPC error.
    pub async fn request_ok(&mut self, method: &str, params: Value) -> Value {
        let resp = self.request(method, params).await;
        match resp.get("result") {
            Some(r) => r.clone(),
            None => panic!(
                "{method} failed: {resp}\n--- stderr ---\n{}",
                self.stderr.joined()
            ),
        }
    }

    /// Waits for the response with `id`; other messages are kept aside.
    pub async fn response(&mut self, id: i64) -> Value {
        let matches = |v: &Value| {
            v.get("id") == Some(&json!(id))
                && (v.get("result").is_some() || v.get("error").is_some())
        };
        if let Some(pos) = self.stash.iter().position(matches) {
            return self.stash.remove(pos);
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) if matches(&v) => return v,
                Ok(Some(v)) => self.stash.push(v),
                Ok(None) => panic!(
                    "the server closed stdout before answering id {id}\n--- stderr ---\n{}",
                    self.stderr.joined()
                ),
                Err(_) => panic!(
                    "no answer to id {id} within {DEADLINE:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.stdout.joined(),
                    self.stderr.joined()
                ),
            }
        }
    }

    /// Messages received that were not the response being waited for
    /// (notifications, server requests).
    pub fn stashed(&self) -> &[Value] {
        &self.stash
    }

    /// `tools/list` result.
    pub async fn list_tools(&mut self) -> Value {
        self.request_ok("tools/list", json!({})).await
    }

    /// `tools/call`; returns the result (panics on a JSON-RPC error).
    pub async fn call(&mut self, name: &str, args: Value) -> Value {
        self.request_ok("tools/call", json!({"name": name, "arguments": args}))
            .await
    }

    pub async fn wait_finished(&mut self, task_id: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self
                .call("get_video_status", json!({ "task_id": task_id }))
                .await;
            if finished(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "task {task_id} did not finish within {DEADLINE:?}; last: {r}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the child at once (SIGKILL on Unix), as a crash would, and
    /// waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = tokio::time::timeout(DEADLINE, self.child.kill()).await;
    }

    /// Closes stdin and waits for the child to exit (killing it after the
    /// deadline); then every stdout and stderr line has been read.
    pub async fn close(mut self) -> (Option<ExitStatus>, Lines, Lines) {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        for task in [self.stdout_task.take(), self.stderr_task.take()]
            .into_iter()
            .flatten()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        (status, self.stdout.clone(), self.stderr.clone())
    }
}

/// Asserts `line` is one JSON-RPC 2.0 message: a request, a notification, or a
/// response (with exactly one of `result` / `error`).
pub fn assert_jsonrpc_line(line: &str) {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("stdout line is not a JSON object: {line:?}"));
    assert_eq!(
        obj.get("jsonrpc"),
        Some(&json!("2.0")),
        "stdout line lacks jsonrpc 2.0: {line:?}"
    );
    let has_method = obj.get("method").is_some_and(Value::is_string);
    let has_id = obj
        .get("id")
        .is_some_and(|id| id.is_string() || id.is_number());
    let has_result = obj.contains_key("result");
    let has_error = obj.contains_key("error");
    let ok = if has_method {
        !has_result && !has_error
    } else {
        has_id && (has_result != has_error)
    };
    assert!(ok, "stdout line is not a JSON-RPC message: {line:?}");
    if has_error {
        let e = &obj["error"];
        assert!(
            e.get("code").is_some_and(Value::is_i64)
                && e.get("message").is_some_and(Value::is_string),
            "malformed JSON-RPC error: {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Results in wire form
// ---------------------------------------------------------------------------

/// All text content of a tool result, joined by newlines.
pub fn result_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn is_error(result: &Value) -> bool {
    result.get("isError") == Some(&json!(true))
}

pub fn structured(result: &Value) -> &Value {
    result
        .get("structuredContent")
        .unwrap_or_else(|| panic!("no structuredContent in {result}"))
}

/// Asserts a successful result (not `isError`) and returns its structuredContent.
pub fn expect_ok(result: &Value) -> &Value {
    assert!(!is_error(result), "expected success, got error: {result}");
    structured(result)
}

/// Asserts an `isError` result and returns its text.
pub fn expect_tool_error(result: &Value) -> String {
    assert!(is_error(result), "expected isError: true, got {result}");
    let text = result_text(result);
    assert!(
        !text.trim().is_empty(),
        "error result without text: {result}"
    );
    text
}

/// Whether a `get_video_status` result reports a finished task.
pub fn finished(result: &Value) -> bool {
    !is_error(result)
        && matches!(
            result["structuredContent"]["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
}

/// The task id of a successful `create_video` result.
pub fn task_id_of(result: &Value) -> String {
    expect_ok(result)["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task_id in {result}"))
        .to_string()
}

/// Repeats `call` (short sleeps) until the task is finished, within [`DEADLINE`].
pub async fn poll_until_finished<F, Fut>(mut call: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = call().await;
        assert!(!is_error(&r), "get_video_status failed while polling: {r}");
        if finished(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "the task did not finish within {DEADLINE:?}; last: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts `sc` has every field of the VideoTask view, with sane types.
pub fn assert_video_task_shape(sc: &Value) {
    for f in VIDEO_TASK_FIELDS {
        assert!(sc.get(*f).is_some(), "structuredContent lacks {f}: {sc}");
    }
    assert!(sc["task_id"].is_string(), "{sc}");
    assert!(
        matches!(
            sc["status"].as_str(),
            Some("pending" | "processing" | "completed" | "failed" | "cancelled" | "unknown")
        ),
        "{sc}"
    );
    assert!(sc["upstream_status"].is_string(), "{sc}");
    let p = sc["progress"].as_u64().expect("progress is an integer");
    assert!(p <= 100, "{sc}");
    assert!(
        sc["created_at"].is_string() || sc["created_at"].is_null(),
        "{sc}"
    );
    assert!(
        sc["links_expire_at"].is_string() || sc["links_expire_at"].is_null(),
        "{sc}"
    );
    assert!(sc["video_urls"].is_array(), "{sc}");
    assert!(sc["error"].is_object() || sc["error"].is_null(), "{sc}");
    assert!(
        sc["next_step"].as_str().is_some_and(|s| !s.is_empty()),
        "{sc}"
    );
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// Every `n`-character window of `key` (and the key itself).
pub fn key_fragments(key: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut out = vec![key.to_string()];
    if chars.len() >= n {
        out.extend(chars.windows(n).map(|w| w.iter().collect::<String>()));
    }
    out
}

/// Asserts no line of `text` contains `key` or any 10-character fragment of it.
pub fn assert_no_key(what: &str, text: &str, key: &str) {
    for frag in key_fragments(key, 10) {
        if let Some(line) = text.lines().find(|l| l.contains(&frag)) {
            panic!("{what} leaks the API key (fragment {frag:?}) in: {line}");
        }
    }
}

// ---------------------------------------------------------------------------
// Plain HTTP from the test process
// ---------------------------------------------------------------------------

/// A reqwest client for loopback URLs (no proxy from the environment).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .expect("reqwest client")
}

/// Downloads `url` and returns the body (asserting HTTP 200).
pub async fn fetch_bytes(url: &str) -> Vec<u8> {
    let resp = http_client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.bytes().await.expect("body").to_vec()
}

/// Asserts `bytes` starts with an ISO-BMFF `ftyp` box.
pub fn assert_iso_bmff(bytes: &[u8]) {
    assert!(bytes.len() > 8, "file too short: {} bytes", bytes.len());
    assert_eq!(&bytes[4..8], b"ftyp", "no ftyp box at the start");
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert!(
        (8..=bytes.len()).contains(&size),
        "implausible ftyp box size {size}"
    );
}

// ---------------------------------------------------------------------------
// JSON Schema checks of structuredContent
// ---------------------------------------------------------------------------

/// The first violation of `schema` by `v` (JSON Schema 2020-12, formats
/// checked), found by a real validator; `None` when `v` conforms.
pub fn schema_violation(schema: &Value, v: &Value, at: &str) -> Option<String> {
    let validator = match jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
    {
        Ok(validator) => validator,
        Err(e) => return Some(format!("{at}: the schema does not compile: {e}")),
    };
    validator
        .iter_errors(v)
        .next()
        .map(|e| format!("{at}{}: {e}", e.instance_path()))
}

/// Asserts a tool's `structuredContent` conforms to its declared `outputSchema`.
pub fn assert_conforms(output_schema: &Value, structured_content: &Value) {
    if let Some(err) = schema_violation(output_schema, structured_content, "") {
        panic!("structuredContent does not conform to outputSchema: {err}\n{structured_content}");
    }
}

// ---------------------------------------------------------------------------
// Client capabilities (the MCP Tasks extension) and the shared ledger
// ---------------------------------------------------------------------------

/// Client capabilities that declare the MCP Tasks extension.
pub fn tasks_capabilities() -> Value {
    json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } })
}

impl RawChild {
    /// Spawned speaking 2026-07-28 with `capabilities` as the client
    /// capabilities of every request; returns the `server/discover` result.
    pub async fn modern_with_capabilities(opts: ServerOpts, capabilities: Value) -> (Self, Value) {
        let mut raw = Self::spawn(opts);
        let mut meta = modern_meta();
        meta["io.modelcontextprotocol/clientCapabilities"] = capabilities;
        raw.modern_meta = Some(meta);
        let discover = raw.request_ok("server/discover", json!({})).await;
        (raw, discover)
    }

    /// `initialize` (declaring `capabilities`) + `notifications/initialized`.
    pub async fn initialize_with_capabilities(
        &mut self,
        version: &str,
        capabilities: Value,
    ) -> Value {
        let result = self
            .request_ok(
                "initialize",
                json!({
                    "protocolVersion": version,
                    "capabilities": capabilities,
                    "clientInfo": {"name": "raw-test", "version": "0.0.0"}
                }),
            )
            .await;
        self.notify("notifications/initialized", None).await;
        result
    }
}

impl ServerOpts {
    /// Uses `path` as the ledger file (children given the same path share it).
    pub fn ledger(self, path: &Path) -> Self {
        self.env("HEYGEN_LEDGER", path.display().to_string())
    }
}
