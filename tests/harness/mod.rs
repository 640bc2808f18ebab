//! Harness for the "proof under fire" checks (fault matrix, fuzzing, load) and
//! the benchmark: the built binary in its own process, driven over stdio by a
//! concurrent raw JSON-RPC client that records every stdout line, or serving
//! Streamable HTTP on an OS-chosen loopback port; plus readings of the child's
//! memory, CPU time and open file handles from `/proc`.
//!
//! Self-contained (no `tests/common`), so `benches/perf.rs` can include it too.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
};

/// Longest line kept when recording a child's output (longer lines are cut).
const KEEP_LINE: usize = 256 * 1024;
/// Most lines kept per stream (older ones are dropped first).
const KEEP_LINES: usize = 200_000;

/// How to start one server process.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub bin: PathBuf,
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `RUST_LOG` of the child.
    pub log: String,
}

impl Spawn {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            api_base: None,
            api_key: None,
            args: Vec::new(),
            env: Vec::new(),
            log: "info".into(),
        }
    }

    pub fn upstream(mut self, base: impl Into<String>, key: impl Into<String>) -> Self {
        self.api_base = Some(base.into());
        self.api_key = Some(key.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn log(mut self, filter: impl Into<String>) -> Self {
        self.log = filter.into();
        self
    }

    /// The command: clean environment, its own temporary HOME, ledger file and
    /// download folder, all three standard streams piped.
    pub fn command(&self, home: &Path) -> Command {
        let data = home.join("data");
        let downloads = home.join("downloads");
        std::fs::create_dir_all(&data).expect("create data home");
        std::fs::create_dir_all(&downloads).expect("create download dir");
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("HOME", home)
            .env("XDG_DATA_HOME", &data)
            .env("HEYGEN_LEDGER", home.join("ledger.sqlite"))
            .env("HEYGEN_DOWNLOAD_DIR", &downloads)
            .env("RUST_LOG", &self.log);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(base) = &self.api_base {
            cmd.env("HEYGEN_API_BASE", base);
        }
        if let Some(key) = &self.api_key {
            cmd.env("HEYGEN_API_KEY", key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

// ---------------------------------------------------------------------------
// Captured output
// ---------------------------------------------------------------------------

/// Lines read from one of the child's output streams.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn joined(&self) -> String {
        self.snapshot().join("\n")
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let all = self.snapshot();
        all[all.len().saturating_sub(n)..].join("\n")
    }

    pub fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| f(l))
    }

    fn push(&self, mut line: String) {
        if line.len() > KEEP_LINE {
            let mut cut = KEEP_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …[cut]");
        }
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= KEEP_LINES {
            v.drain(..KEEP_LINES / 10);
        }
        v.push(line);
    }
}

/// Reads `r` line by line into `lines` until EOF, handing each to `each`.
fn capture<R>(r: R, lines: Lines, mut each: impl FnMut(&str) + Send + 'static)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
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
                    lines.push(line);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------
// /proc readings (Linux)
// ---------------------------------------------------------------------------

/// A `kB` field of `/proc/<pid>/status` (e.g. `VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// User plus system CPU time of a process (all threads), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

// ---------------------------------------------------------------------------
// The binary over stdio, driven with raw JSON-RPC lines
// ---------------------------------------------------------------------------

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

/// The server on stdio; requests may be in flight concurrently. Every stdout
/// line is recorded (rmcp's own reader would skip unparsable ones).
pub struct StdioServer {
    child: Mutex<Child>,
    pub pid: u32,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicI64,
    pub stdout: Lines,
    /// Length of the longest stdout line, in bytes.
    pub longest_stdout_line: Arc<AtomicUsize>,
    /// Stdout lines that were not JSON, checked whole as they arrived
    /// (`stdout` keeps at most 256 KiB of each line).
    pub non_json_stdout: Lines,
    pub stderr: Lines,
    /// `_meta` put on every request when speaking 2026-07-28.
    meta: Mutex<Option<Value>>,
    _home: TempDir,
}

/// The `_meta` a 2026-07-28 client puts on every request.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "harness", "version": "0.0.0"}
    })
}

impl StdioServer {
    pub fn spawn(spec: &Spawn) -> Self {
        let home = tempfile::tempdir().expect("temporary home");
        let mut child = spec.command(home.path()).spawn().expect("spawn the server");
        let pid = child.id().expect("child pid");
        let mut stdin = child.stdin.take().expect("stdin piped");
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let stdout = Lines::default();
        let p = pending.clone();
        let longest = Arc::new(AtomicUsize::new(0));
        let l = longest.clone();
        let non_json = Lines::default();
        let nj = non_json.clone();
        capture(
            child.stdout.take().expect("stdout piped"),
            stdout.clone(),
            move |line| {
                l.fetch_max(line.len(), Ordering::Relaxed);
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    nj.push(line.to_string());
                    return;
                };
                let is_response = v.get("result").is_some() || v.get("error").is_some();
                if let (true, Some(id)) = (is_response, v.get("id").and_then(Value::as_i64))
                    && let Some(waiter) = p.lock().unwrap_or_else(|e| e.into_inner()).remove(&id)
                {
                    let _ = waiter.send(v);
                }
            },
        );
        let stderr = Lines::default();
        capture(
            child.stderr.take().expect("stderr piped"),
            stderr.clone(),
            |_| {},
        );
        Self {
            child: Mutex::new(child),
            pid,
            tx,
            pending,
            next_id: AtomicI64::new(1),
            stdout,
            longest_stdout_line: longest,
            non_json_stdout: non_json,
            stderr,
            meta: Mutex::new(None),
            _home: home,
        }
    }

    /// Spawned and initialised with the 2025-11-25 handshake.
    pub async fn legacy(spec: &Spawn) -> Self {
        let s = Self::spawn(spec);
        s.initialize().await;
        s
    }

    /// Spawned and speaking 2026-07-28 (`server/discover`, `_meta` on every request).
    pub async fn modern(spec: &Spawn) -> Self {
        let s = Self::spawn(spec);
        *s.meta.lock().unwrap_or_else(|e| e.into_inner()) = Some(modern_meta());
        let r = s
            .request("server/discover", json!({}), Duration::from_secs(30))
            .await
            .expect("server/discover answered");
        assert!(r.get("result").is_some(), "server/discover failed: {r}");
        s
    }

    pub async fn initialize(&self) {
        let r = self
            .request(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "harness", "version": "0.0.0"}}),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|e| panic!("initialize: {e}\n{}", self.stderr.tail(30)));
        assert!(r.get("result").is_some(), "initialize failed: {r}");
        self.send_raw(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
                .to_string()
                .into_bytes(),
            true,
        );
    }

    /// Writes bytes to the child's stdin, with a newline appended if asked.
    pub fn send_raw(&self, mut bytes: Vec<u8>, newline: bool) {
        if newline {
            bytes.push(b'\n');
        }
        let _ = self.tx.send(bytes);
    }

    /// Sends a request and waits for its response message (result or error).
    pub async fn request(
        &self,
        method: &str,
        mut params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(meta) = self.meta.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && let Some(obj) = params.as_object_mut()
        {
            let m = obj.entry("_meta").or_insert_with(|| json!({}));
            for (k, v) in meta.as_object().into_iter().flatten() {
                m[k] = v.clone();
            }
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(msg.to_string().into_bytes(), true);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(format!("{method}: the server closed stdout")),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                Err(format!("{method}: no answer within {timeout:?}"))
            }
        }
    }

    /// `tools/call`; the result in wire form, or the JSON-RPC error as `Err`.
    pub async fn call(&self, tool: &str, args: Value, timeout: Duration) -> Result<Value, String> {
        let r = self
            .request(
                "tools/call",
                json!({"name": tool, "arguments": args}),
                timeout,
            )
            .await?;
        match r.get("result") {
            Some(res) => Ok(res.clone()),
            None => Err(format!("tools/call {tool}: JSON-RPC error {r}")),
        }
    }

    /// Whether the process is still running.
    pub fn alive(&self) -> bool {
        matches!(
            self.child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait(),
            Ok(None)
        )
    }

    /// Closes stdin (by dropping the writer) and waits for the exit.
    pub async fn close(self) -> Option<std::process::ExitStatus> {
        drop(self.tx);
        let mut child = self.child.into_inner().unwrap_or_else(|e| e.into_inner());
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The binary serving Streamable HTTP
// ---------------------------------------------------------------------------

pub struct HttpServer {
    child: Mutex<Child>,
    pub pid: u32,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub stderr: Lines,
    _home: TempDir,
}

impl HttpServer {
    /// Starts the binary with `--http 127.0.0.1:0` and waits for its
    /// "listening on" line.
    pub async fn spawn(spec: &Spawn) -> Self {
        let home = tempfile::tempdir().expect("temporary home");
        let mut spec = spec.clone();
        spec.args.extend(["--http".into(), "127.0.0.1:0".into()]);
        let mut child = spec.command(home.path()).spawn().expect("spawn the server");
        let pid = child.id().expect("child pid");
        let stderr = Lines::default();
        let (url_tx, url_rx) = oneshot::channel::<String>();
        let mut url_tx = Some(url_tx);
        capture(
            child.stderr.take().expect("stderr piped"),
            stderr.clone(),
            move |line| {
                if let Some(rest) = line.strip_prefix("listening on ")
                    && let Some(tx) = url_tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            },
        );
        // Nothing is written to stdout over HTTP; drain it anyway.
        capture(
            child.stdout.take().expect("stdout piped"),
            Lines::default(),
            |_| {},
        );
        let url = match tokio::time::timeout(Duration::from_secs(30), url_rx).await {
            Ok(Ok(u)) => u,
            _ => panic!(
                "the HTTP server did not report its address\n{}",
                stderr.joined()
            ),
        };
        Self {
            child: Mutex::new(child),
            pid,
            url,
            stderr,
            _home: home,
        }
    }

    pub fn base(&self) -> String {
        self.url.trim_end_matches("/mcp").to_string()
    }

    /// `GET /healthz` as JSON.
    pub async fn health(&self) -> Value {
        let r = loopback_client()
            .get(format!("{}/healthz", self.base()))
            .send()
            .await
            .expect("GET /healthz");
        r.json().await.expect("/healthz answers JSON")
    }

    pub fn alive(&self) -> bool {
        matches!(
            self.child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait(),
            Ok(None)
        )
    }

    /// SIGTERM, then wait (kill after 15 s).
    pub async fn stop(self) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let mut child = self.child.into_inner().unwrap_or_else(|e| e.into_inner());
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }
}

/// A reqwest client for loopback URLs (no proxy from the environment).
pub fn loopback_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

// ---------------------------------------------------------------------------
// rmcp's Streamable HTTP client, both revisions
// ---------------------------------------------------------------------------

pub type HttpClient = rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>;

fn http_transport(
    url: &str,
    caller_key: Option<&str>,
) -> rmcp::transport::StreamableHttpClientTransport<reqwest::Client> {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client");
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(key) = caller_key {
        config = config.custom_headers(HashMap::from([(
            http::HeaderName::from_static("x-heygen-api-key"),
            http::HeaderValue::from_str(key).expect("header value"),
        )]));
    }
    rmcp::transport::StreamableHttpClientTransport::with_client(client, config)
}

/// A 2026-07-28 client (`server/discover`, stateless requests).
pub async fn modern_client(url: &str) -> Result<HttpClient, String> {
    modern_client_with_key(url, None).await
}

/// A 2025-11-25 client (initialize handshake, a session on the server).
pub async fn legacy_client(url: &str) -> Result<HttpClient, String> {
    legacy_client_with_key(url, None).await
}

/// A 2026-07-28 client sending its own upstream key (`X-HeyGen-Api-Key`).
pub async fn modern_client_with_key(url: &str, key: Option<&str>) -> Result<HttpClient, String> {
    use rmcp::ClientServiceExt as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    rmcp::model::ClientConfig::default()
        .serve_with_lifecycle(
            http_transport(url, key),
            rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .map_err(|e| format!("2026-07-28 client: {e}"))
}

/// A 2025-11-25 client sending its own upstream key (`X-HeyGen-Api-Key`).
pub async fn legacy_client_with_key(url: &str, key: Option<&str>) -> Result<HttpClient, String> {
    use rmcp::ServiceExt as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    rmcp::model::ClientConfig::default()
        .with_protocol_version(rmcp::model::ProtocolVersion::V_2025_11_25)
        .serve(http_transport(url, key))
        .await
        .map_err(|e| format!("2025-11-25 client: {e}"))
}

/// `tools/call` through an rmcp client; the result in wire form.
pub async fn http_call(
    client: &HttpClient,
    tool: &str,
    args: Value,
    timeout: Duration,
) -> Result<Value, String> {
    let Value::Object(args) = args else {
        return Err(format!("arguments must be an object: {args}"));
    };
    let params = rmcp::model::CallToolRequestParams::new(tool.to_string()).with_arguments(args);
    match tokio::time::timeout(timeout, client.call_tool(params)).await {
        Ok(Ok(r)) => serde_json::to_value(r).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(format!("tools/call {tool}: {e}")),
        Err(_) => Err(format!("tools/call {tool}: no answer within {timeout:?}")),
    }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// All text content of a tool result.
pub fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn is_error(result: &Value) -> bool {
    result.get("isError") == Some(&Value::Bool(true))
}

/// Percentile of sorted durations (`q` in 0..=1).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A short random suffix so prompts differ between runs and tests (the
/// ledger's dedupe must never answer a check from an earlier create).
pub fn nonce() -> String {
    format!("{:08x}", rand::random::<u32>())
}
