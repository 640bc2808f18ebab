//! Bad input from clients: a seeded, bounded random-input loop (`cargo fuzz`
//! needs a nightly toolchain, which this machine cannot have) against the
//! built binary on stdio, against the in-process simulator.
//!
//! Two streams of input, each in its own server process:
//! - raw lines on stdin: binary garbage, invalid UTF-8, malformed and
//!   truncated JSON, wrong types in the JSON-RPC envelope, deep nesting
//!   (10,000 levels), huge strings (MBs, one line past rmcp's 16 MiB cap),
//!   partial lines, bursts, blank lines;
//! - `tools/call` with random arguments for every listed tool: random shapes,
//!   types, unknown fields, huge and odd strings, real and made-up task ids.
//!
//! After EVERY input the server must answer a `ping` within a per-input
//! timeout (no hang), the process must be alive (no crash), its resident
//! memory must stay under a bound, stderr must show no panic, stdout must
//! carry only JSON-RPC, tool results must be well formed (success conforms to
//! the declared outputSchema; errors are text only), and no create reaches the
//! upstream that the client did not see succeed.
//!
//! Budget (fixed and documented in the README): `FUZZ_CASES` inputs per
//! stream, default 600 (about 10–20 s in CI); `FUZZ_SEED` picks the seed
//! (default fixed, so CI is reproducible; a failure prints the seed and case
//! to replay). Longer by hand, e.g.
//! `FUZZ_CASES=50000 FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod harness;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use harness::{Spawn, StdioServer, is_error, rss_kib, text_of};
use heygen_video_mcp::simulator::{SimConfig, Simulator};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
const KEY: &str = "fuzz-key-6b1f0e9a3c7d5b2e";
/// Per-input deadline: a ping (or the fuzzed call) must be answered by then.
const PER_INPUT: Duration = Duration::from_secs(15);
/// Resident memory the server may never exceed, whatever it is fed.
const RSS_BOUND_KIB: u64 = 256 * 1024;
const DEFAULT_CASES: u64 = 600;
const DEFAULT_SEED: u64 = 0x5eed_2026;

fn budget() -> (u64, u64) {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    (cases, seed)
}

async fn setup() -> (Simulator, StdioServer) {
    let sim = Simulator::start(SimConfig {
        render_time: Duration::from_millis(300),
        api_key: Some(KEY.into()),
        // Enough credits that a long run keeps exercising valid creates.
        start_balance: i64::MAX / 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let spec = Spawn::new(BIN)
        .upstream(sim.base_url(), KEY)
        .args([
            "--request-timeout",
            "5",
            "--download-deadline",
            "5",
            "--poll-interval",
            "0.05",
            "--retry-max-delay",
            "0.1",
        ])
        .log("info");
    let server = StdioServer::legacy(&spec).await;
    (sim, server)
}

/// What every case is checked against.
struct Watch {
    seed: u64,
    max_rss_kib: u64,
    started: Instant,
    /// The slowest input (ping included) and its kind.
    slowest: (Duration, &'static str),
    last: Instant,
    kinds: BTreeMap<&'static str, u64>,
}

impl Watch {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            max_rss_kib: 0,
            started: Instant::now(),
            slowest: (Duration::ZERO, ""),
            last: Instant::now(),
            kinds: BTreeMap::new(),
        }
    }

    /// After one input: the server answers a ping in time, is alive, and
    /// stays under the memory bound.
    async fn after(&mut self, server: &StdioServer, case: u64, kind: &'static str) {
        *self.kinds.entry(kind).or_default() += 1;
        let ping = server.request("ping", json!({}), PER_INPUT).await;
        let ctx = || {
            format!(
                "seed {} case {case} ({kind})\n--- stderr (tail) ---\n{}",
                self.seed,
                server.stderr.tail(20)
            )
        };
        match ping {
            Ok(v) if v.get("result").is_some() => {}
            Ok(v) => panic!("ping answered with an error {v}: {}", ctx()),
            Err(e) => panic!(
                "no answer to a good request after a bad input: {e}: {}",
                ctx()
            ),
        }
        assert!(server.alive(), "the server exited: {}", ctx());
        let rss = rss_kib(server.pid).unwrap_or(0);
        self.max_rss_kib = self.max_rss_kib.max(rss);
        assert!(
            rss < RSS_BOUND_KIB,
            "resident memory {rss} KiB over the bound {RSS_BOUND_KIB} KiB: {}",
            ctx()
        );
        let took = self.last.elapsed();
        if took > Duration::from_millis(200) {
            *self.kinds.entry("(inputs over 200 ms)").or_default() += 1;
        }
        if took > self.slowest.0 {
            self.slowest = (took, kind);
        }
        self.last = Instant::now();
    }

    fn report(&self, what: &str, cases: u64, server: &StdioServer) {
        eprintln!(
            "fuzz {what}: longest answer {} bytes",
            server
                .longest_stdout_line
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        eprintln!(
            "fuzz {what}: {cases} inputs, seed {}, {:.1} s, peak RSS {:.1} MiB, slowest input \
             {:.0} ms ({}), by kind {:?}",
            self.seed,
            self.started.elapsed().as_secs_f64(),
            self.max_rss_kib as f64 / 1024.0,
            self.slowest.0.as_secs_f64() * 1000.0,
            self.slowest.1,
            self.kinds
        );
    }
}

/// The end of a run: no panic on stderr, stdout only JSON-RPC, no key.
fn final_checks(server: &StdioServer) {
    let stderr = server.stderr.snapshot();
    if let Some(l) = stderr.iter().find(|l| l.contains("panicked")) {
        panic!("the server panicked: {l}\n{}", stderr.join("\n"));
    }
    let non_json = server.non_json_stdout.snapshot();
    assert!(
        non_json.is_empty(),
        "stdout lines that are not JSON: {non_json:?}"
    );
    // Lines kept whole (the harness cuts lines over 256 KiB) must be JSON-RPC.
    for line in server.stdout.snapshot() {
        if !line.ends_with("[cut]") {
            assert_jsonrpc_line(&line);
        }
        common::assert_no_key("stdout", &line, KEY);
    }
    common::assert_no_key("stderr", &stderr.join("\n"), KEY);
}

/// Every stdout line is one JSON-RPC message. An error answering input whose
/// id could not be read carries no `id` (rmcp's behaviour; the MCP schema
/// makes `id` optional on error responses, JSON-RPC 2.0 would want `null`).
fn assert_jsonrpc_line(line: &str) {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
    assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line:?}");
    let has = |k: &str| v.get(k).is_some();
    let ok = if has("method") {
        !has("result") && !has("error")
    } else if has("error") {
        !has("result") && v["error"]["code"].is_i64() && v["error"]["message"].is_string()
    } else {
        has("result") && has("id")
    };
    assert!(ok, "stdout line is not a JSON-RPC message: {line:?}");
}

// ---------------------------------------------------------------------------
// Random JSON
// ---------------------------------------------------------------------------

const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{7f}\u{1b}[31m",
    "..",
    ".",
    "../account/credits",
    "%2e%2e",
    "a/b",
    "a?b",
    "a#b",
    "task-unified-1-abc",
    "CON",
    "nul.mp4",
    "video.mp4",
    ".hidden",
    "😀🎬",
    "e\u{301}",
    "\u{202e}gpj.exe",
    "https://example.com/x.png",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "landscape",
    "portrait",
    "LANDSCAPE",
    "auto",
    "null",
    "true",
    "-1",
    "1e400",
    "NaN",
    "{\"a\":1}",
    "[get:500]",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=3 => (*ODD_STRINGS.choose(rng).unwrap()).to_string(),
        4..=6 => {
            let n = rng.random_range(0..40);
            (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => rng.random_range(b'a'..=b'z') as char,
                    1 => rng.random_range(0x20u8..0x7f) as char,
                    2 => char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('\u{fffd}'),
                    _ => rng.random_range(0u8..0x20) as char,
                })
                .collect()
        }
        7 => "x".repeat(rng.random_range(9_990..10_010)),
        8 => "日".repeat(rng.random_range(9_995..10_005)),
        _ => "a".repeat(rng.random_range(100..200_000)),
    }
}

fn random_number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..8) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(rng.random::<i64>()),
        3 => json!(u64::MAX),
        4 => json!(rng.random_range(0.0..100.0)),
        5 => json!(1e308),
        6 => json!(-0.5),
        _ => json!(rng.random_range(0..200)),
    }
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let leaf = depth >= 4 || rng.random_bool(0.6);
    match rng.random_range(0..if leaf { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => random_number(rng),
        3 => Value::String(random_string(rng)),
        4 => Value::Array(
            (0..rng.random_range(0..25))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.random_range(0..6) {
                m.insert(random_string(rng), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A JSON-RPC id that can never collide with the harness's own (small
/// positive integers).
fn foreign_id(rng: &mut StdRng) -> Value {
    match rng.random_range(0..6) {
        0 => json!(format!("fz-{}", rng.random::<u32>())),
        1 => json!(-(rng.random_range(1..1_000_000i64))),
        2 => json!(1.5),
        3 => Value::Null,
        4 => json!({"id": 1}),
        _ => json!([1]),
    }
}

fn nested(depth: usize, open: &str, close: &str, core: &str) -> String {
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + core.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(core);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

fn good_call(rng: &mut StdRng) -> Value {
    json!({"jsonrpc": "2.0", "id": foreign_id(rng), "method": "tools/call",
           "params": {"name": "get_video_status", "arguments": {"task_id": "task-unified-1-abc"}}})
}

// ---------------------------------------------------------------------------
// Raw lines
// ---------------------------------------------------------------------------

/// One bad input: bytes to write, and whether they end the line themselves.
fn raw_input(rng: &mut StdRng, case: u64) -> (&'static str, Vec<u8>, bool) {
    // The first cases walk through every kind once; then they are random,
    // with the expensive (multi-MB) kinds rarer.
    let pick = if case < 16 {
        case as u32
    } else {
        match rng.random_range(0..100) {
            0 => 14,
            1 => 15,
            r => 1 + r % 13,
        }
    };
    match pick {
        0 => (
            "over 16 MiB line",
            {
                let mut v = br#"{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"create_video","arguments":{"prompt":""#.to_vec();
                v.extend(std::iter::repeat_n(b'a', 17 * 1024 * 1024));
                v.extend_from_slice(br#""}}}"#);
                v
            },
            false,
        ),
        1 => (
            "binary garbage",
            {
                let mut v = vec![0u8; rng.random_range(1..4096)];
                rng.fill_bytes(&mut v);
                v
            },
            false,
        ),
        2 => (
            "invalid UTF-8 in a string",
            {
                let mut v = br#"{"jsonrpc":"2.0","id":"u8","method":"tools/call","params":{"name":"create_video","arguments":{"prompt":"abc"#.to_vec();
                v.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80]);
                v.extend_from_slice(br#""}}}"#);
                v
            },
            false,
        ),
        3 => (
            "truncated request",
            {
                let full = good_call(rng).to_string();
                let cut = rng.random_range(0..full.len());
                full.as_bytes()[..cut].to_vec()
            },
            false,
        ),
        4 => (
            "mutated request",
            {
                let mut b = good_call(rng).to_string().into_bytes();
                for _ in 0..rng.random_range(1..6) {
                    let i = rng.random_range(0..b.len());
                    match rng.random_range(0..3) {
                        0 => b[i] = rng.random(),
                        1 => {
                            b.remove(i);
                        }
                        _ => b.insert(i, *b"{}[]\",:\\".choose(rng).unwrap()),
                    }
                }
                b.retain(|c| *c != b'\n');
                b
            },
            false,
        ),
        5 => (
            "wrong envelope types",
            {
                let v = match rng.random_range(0..8) {
                    0 => json!({"jsonrpc": 2, "id": "w", "method": "ping"}),
                    1 => json!({"jsonrpc": "2.0", "id": "w", "method": 5}),
                    2 => {
                        json!({"jsonrpc": "2.0", "id": "w", "method": "tools/call", "params": "x"})
                    }
                    3 => {
                        json!({"jsonrpc": "2.0", "id": "w", "method": "tools/call", "params": {"name": 7}})
                    }
                    4 => {
                        json!({"jsonrpc": "2.0", "id": "w", "method": "tools/call", "params": {"name": "create_video", "arguments": [1, 2]}})
                    }
                    5 => json!({"jsonrpc": "1.0", "id": "w", "method": "tools/list"}),
                    6 => json!({"jsonrpc": "2.0", "id": foreign_id(rng), "result": {}}),
                    _ => {
                        json!({"jsonrpc": "2.0", "id": foreign_id(rng), "method": random_string(rng), "params": random_value(rng, 0)})
                    }
                };
                v.to_string().into_bytes()
            },
            false,
        ),
        6 => (
            "deep nesting (10,000 levels)",
            {
                let depth = 10_000;
                let s = match rng.random_range(0..3) {
                    0 => nested(depth, "[", "]", "1"),
                    1 => nested(depth, "{\"a\":", "}", "1"),
                    _ => format!(
                        r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{{"name":"create_video","arguments":{{"prompt":"x","file_urls":{}}}}}}}"#,
                        nested(depth, "[", "]", "\"https://a.example/x\"")
                    ),
                };
                s.into_bytes()
            },
            false,
        ),
        7 => (
            "partial line",
            {
                let full = good_call(rng).to_string();
                let cut = rng.random_range(1..full.len());
                full.as_bytes()[..cut].to_vec()
            },
            true,
        ),
        8 => (
            "random JSON value",
            random_value(rng, 0).to_string().into_bytes(),
            false,
        ),
        9 => (
            "burst of garbage lines",
            {
                let mut v = Vec::new();
                for _ in 0..rng.random_range(10..200) {
                    let mut g = vec![0u8; rng.random_range(0..64)];
                    rng.fill_bytes(&mut g);
                    g.retain(|c| *c != b'\n');
                    v.extend(g);
                    v.push(b'\n');
                }
                v.pop();
                v
            },
            false,
        ),
        10 => (
            "blank and odd framing",
            match rng.random_range(0..5) {
                0 => Vec::new(),
                1 => b"\r".to_vec(),
                2 => b"   \t ".to_vec(),
                3 => b"\xef\xbb\xbf".to_vec(),
                _ => {
                    b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":\"bom\",\"method\":\"ping\"}".to_vec()
                }
            },
            false,
        ),
        11 => (
            "unknown method or tool",
            {
                let v = if rng.random_bool(0.5) {
                    json!({"jsonrpc": "2.0", "id": foreign_id(rng), "method": format!("x/{}", random_string(rng))})
                } else {
                    json!({"jsonrpc": "2.0", "id": foreign_id(rng), "method": "tools/call", "params": {"name": random_string(rng), "arguments": {}}})
                };
                v.to_string().into_bytes()
            },
            false,
        ),
        12 => (
            "odd notification",
            {
                let method = [
                    "notifications/cancelled",
                    "notifications/progress",
                    "notifications/initialized",
                    "notifications/roots/list_changed",
                    "notifications/x",
                ]
                .choose(rng)
                .unwrap();
                json!({"jsonrpc": "2.0", "method": method, "params": random_value(rng, 0)})
                    .to_string()
                    .into_bytes()
            },
            false,
        ),
        13 | 15 => (
            "huge string (MBs)",
            {
                let mb = rng.random_range(1..=6);
                let field = *["prompt", "task_id", "avatar_id", "file_name"]
                    .choose(rng)
                    .unwrap();
                let tool = if field == "task_id" || field == "file_name" {
                    "download_video"
                } else {
                    "create_video"
                };
                let v = json!({"jsonrpc": "2.0", "id": foreign_id(rng), "method": "tools/call",
                "params": {"name": tool, "arguments": {field: "é".repeat(mb * 512 * 1024)}}});
                v.to_string().into_bytes()
            },
            false,
        ),
        _ => (
            "huge array",
            {
                let n = rng.random_range(100_000..400_000);
                let mut s = String::from(
                    r#"{"jsonrpc":"2.0","id":"arr","method":"tools/call","params":{"name":"create_video","arguments":{"prompt":"p","file_urls":["#,
                );
                for i in 0..n {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str("\"https://a.example/x\"");
                }
                s.push_str("]}}}");
                s.into_bytes()
            },
            false,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_lines_never_break_the_stdio_server() {
    let (cases, seed) = budget();
    let (_sim, server) = setup().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut watch = Watch::new(seed);
    for case in 0..cases {
        let (kind, bytes, partial) = raw_input(&mut rng, case);
        server.send_raw(bytes, !partial);
        if partial {
            // Let the server read the partial line, then end it.
            tokio::time::sleep(Duration::from_millis(2)).await;
            server.send_raw(Vec::new(), true);
        }
        watch.after(&server, case, kind).await;
    }
    watch.report("raw lines", cases, &server);
    final_checks(&server);
    server.close().await;
}

// ---------------------------------------------------------------------------
// Tool arguments
// ---------------------------------------------------------------------------

struct ToolInfo {
    name: String,
    /// The name, for the per-kind counts.
    label: &'static str,
    props: Vec<String>,
    output_schema: Option<Value>,
}

/// A plausible (mostly valid) value for a known argument name.
fn plausible(rng: &mut StdRng, prop: &str, real_ids: &[String]) -> Value {
    match prop {
        "prompt" => json!(format!(
            "fuzz video {} about {}",
            rng.random::<u64>(),
            random_string(rng).chars().take(50).collect::<String>()
        )),
        "avatar_id" | "voice_id" | "style_id" => {
            json!(
                [
                    "auto",
                    "Anna_public_3_20240108",
                    "en-US-Studio-O",
                    "modern_vlog_01",
                    ""
                ]
                .choose(rng)
                .unwrap()
            )
        }
        "orientation" => json!(
            ["landscape", "portrait", "", "Portrait"]
                .choose(rng)
                .unwrap()
        ),
        "file_urls" => json!(
            (0..rng.random_range(0..22))
                .map(|i| format!("https://files.example/{i}.png"))
                .collect::<Vec<_>>()
        ),
        "task_id" if !real_ids.is_empty() && rng.random_bool(0.7) => {
            json!(real_ids.choose(rng).unwrap())
        }
        "task_id" => json!(format!("task-unified-1-{}", rng.random::<u32>())),
        "wait_seconds" => json!(rng.random_range(0..2)),
        "file_name" => json!(
            ["clip.mp4", "my video", "", "../x.mp4", "a/b.mp4", "ok-name"]
                .choose(rng)
                .unwrap()
        ),
        "limit" | "max" | "count" => json!(rng.random_range(0..60)),
        _ => match rng.random_range(0..3) {
            0 => json!(rng.random::<bool>()),
            1 => json!(format!("k-{}", rng.random::<u32>())),
            _ => json!(rng.random_range(0..100)),
        },
    }
}

fn random_args(rng: &mut StdRng, tool: &ToolInfo, real_ids: &[String]) -> Value {
    if rng.random_bool(0.05) {
        return random_value(rng, 1);
    }
    // Half the calls are plausible throughout, so valid paths are exercised too.
    let wild = if rng.random_bool(0.5) { 0.0 } else { 0.5 };
    let mut m = Map::new();
    for p in &tool.props {
        let required = p == "prompt" || p == "task_id";
        if required || rng.random_bool(0.5) {
            let v = if rng.random_bool(wild) {
                random_value(rng, 1)
            } else {
                plausible(rng, p, real_ids)
            };
            m.insert(p.clone(), v);
        }
    }
    if rng.random_bool(wild / 5.0) {
        m.insert(random_string(rng), random_value(rng, 1));
    }
    // A real task with a long wait would be a legitimate slow answer, not a hang.
    if let Some(w) = m.get_mut("wait_seconds")
        && w.as_f64().is_some_and(|s| s > 2.0)
    {
        *w = json!(1);
    }
    Value::Object(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tool_arguments_get_well_formed_answers() {
    let (cases, seed) = budget();
    let (sim, server) = setup().await;
    let listed = server
        .request("tools/list", json!({}), PER_INPUT)
        .await
        .unwrap();
    let tools: Vec<ToolInfo> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ToolInfo {
            name: t["name"].as_str().unwrap().to_string(),
            label: String::leak(t["name"].as_str().unwrap().to_string()),
            props: t["inputSchema"]["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
            output_schema: t.get("outputSchema").cloned(),
        })
        .collect();
    assert!(tools.len() >= 4, "{listed}");

    let mut rng = StdRng::seed_from_u64(seed ^ 0xa5a5);
    let mut watch = Watch::new(seed);
    let mut real_ids: Vec<String> = Vec::new();
    let mut ok_creates = 0u64;
    for case in 0..cases {
        let tool = tools.choose(&mut rng).unwrap();
        let args = random_args(&mut rng, tool, &real_ids);
        let shown = {
            let s = args.to_string();
            s.chars().take(300).collect::<String>()
        };
        let resp = server
            .request(
                "tools/call",
                json!({"name": tool.name, "arguments": args}),
                PER_INPUT,
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "seed {seed} case {case}: {} {shown}: {e}\n{}",
                    tool.name,
                    server.stderr.tail(20)
                )
            });
        let ctx = || format!("seed {seed} case {case}: {} {shown} → {resp}", tool.name);
        match (resp.get("result"), resp.get("error")) {
            (Some(r), None) => {
                assert!(!text_of(r).trim().is_empty(), "empty result: {}", ctx());
                if is_error(r) {
                    assert!(
                        r.get("structuredContent").is_none_or(Value::is_null),
                        "an error result with structuredContent: {}",
                        ctx()
                    );
                } else if let (Some(schema), Some(sc)) =
                    (&tool.output_schema, r.get("structuredContent"))
                {
                    if let Some(v) = common::schema_violation(schema, sc, "") {
                        panic!("structuredContent breaks the outputSchema ({v}): {}", ctx());
                    }
                    if tool.name == "create_video" {
                        ok_creates += 1;
                        if let Some(id) = sc["task_id"].as_str() {
                            real_ids.push(id.to_string());
                        }
                    }
                }
            }
            (None, Some(e)) => {
                assert!(
                    e["code"].is_i64() && e["message"].is_string(),
                    "malformed JSON-RPC error: {}",
                    ctx()
                );
            }
            _ => panic!("neither result nor error: {}", ctx()),
        }
        watch.after(&server, case, tool.label).await;
    }
    // Every video the upstream made was one the client saw succeed (a repeat
    // may be answered from the ledger without a new create).
    let made = sim.state.task_count() as u64;
    assert!(
        made <= ok_creates,
        "{made} videos made upstream, {ok_creates} successful create_video results"
    );
    watch.report("tool arguments", cases, &server);
    eprintln!("fuzz tool arguments: {ok_creates} valid creates among them");
    final_checks(&server);
    server.close().await;
}
