//! Performance figures against DESIGN.md §7, in one run:
//!
//! ```text
//! cargo bench --bench perf            # full run, about a minute after the build
//! BENCH_QUICK=1 cargo bench --bench perf   # a shorter, noisier run
//! ```
//!
//! The server is the release binary in its own process; its upstream is the
//! embedded simulator running in this bench process (a real HTTP server on
//! 127.0.0.1), so the simulator's own cost is in both the direct and the
//! server paths. Every comparison is a ratio measured in the same run,
//! interleaved in blocks, because the machine is shared and noisy.
//!
//! Figures:
//! 1. process start → `tools/list` answered over stdio (initialize,
//!    initialized, tools/list), median of many runs;
//! 2. sequential `get_video_status` over stdio vs the same upstream
//!    `GET /v1/tasks/{id}?sync_upstream=true` made directly with reqwest,
//!    median per call, as a ratio;
//! 3. CPU time per call of the server process (utime + stime from
//!    `/proc/<pid>/stat`, divided by calls);
//! 4. memory after start (VmRSS) and peak under load (VmHWM);
//! 5. throughput with 16 calls in flight over stdio, as a fraction of the
//!    direct rate with 16 requests in flight;
//! 6. HTTP: 64 concurrent Streamable HTTP clients (2026-07-28 and 2025-11-25)
//!    calling `get_video_status`: calls/s, p50/p99, vs the direct rate at 64;
//! 7. with `HEYGEN_TEST_POSTGRES_URL` (a fresh schema on that server; skipped
//!    with a note when unset): a sequential status call and a create over
//!    stdio with the PostgreSQL ledger vs the SQLite ledger (medians, ratio),
//!    and HTTP throughput of three replicas on one PostgreSQL vs one of them
//!    alone (64 2026-07-28 clients calling `get_video_status`, spread over
//!    the replicas; ratio).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "../tests/pg/mod.rs"]
mod pg;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use harness::{
    HttpServer, Spawn, cpu_time, http_call, hwm_kib, is_error, legacy_client, modern_client,
    percentile, rss_kib,
};
use heygen_video_mcp::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
const KEY: &str = "bench-key-3f9a1c0e7d";
const T: Duration = Duration::from_secs(30);

struct Plan {
    startup_runs: usize,
    seq_rounds: usize,
    seq_block: usize,
    inflight_secs: f64,
    http_secs: f64,
}

fn plan() -> Plan {
    if std::env::var("BENCH_QUICK").is_ok() {
        Plan {
            startup_runs: 15,
            seq_rounds: 4,
            seq_block: 100,
            inflight_secs: 1.0,
            http_secs: 1.0,
        }
    } else {
        Plan {
            startup_runs: 60,
            seq_rounds: 10,
            seq_block: 300,
            inflight_secs: 3.0,
            http_secs: 3.0,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

/// The server as measured; `BENCH_SERVER_ARGS` (space-separated) adds flags,
/// e.g. `--no-ledger` to see the ledger's share.
fn spec(sim: &Simulator) -> Spawn {
    let extra = std::env::var("BENCH_SERVER_ARGS").unwrap_or_default();
    Spawn::new(BIN)
        .upstream(sim.base_url(), KEY)
        .args(extra.split_whitespace().map(String::from))
        .log("warn")
}

/// A lean stdio client for timing: the bench task writes each request line
/// and reads the answer line itself (no channels or helper tasks), so the
/// time measured is the server's, not the harness's.
struct Lean {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
    line: String,
    next_id: u64,
    pid: u32,
    _home: tempfile::TempDir,
}

impl Lean {
    fn spawn(spec: &Spawn) -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = spec.command(home.path());
        cmd.stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn the server");
        let pid = child.id().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            line: String::new(),
            next_id: 1,
            pid,
            _home: home,
        }
    }

    async fn send(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    fn frame(&mut self, method: &str, params: &str) -> (u64, String) {
        let id = self.next_id;
        self.next_id += 1;
        (
            id,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
                + "\n",
        )
    }

    /// Reads lines until a response; returns it.
    async fn read_response(&mut self) -> Value {
        use tokio::io::AsyncBufReadExt;
        loop {
            self.line.clear();
            let n = self.stdout.read_line(&mut self.line).await.unwrap();
            assert!(n > 0, "the server closed stdout");
            let v: Value = serde_json::from_str(&self.line).expect("a JSON line");
            if v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some()) {
                return v;
            }
        }
    }

    async fn request(&mut self, method: &str, params: &str) -> Value {
        let (id, line) = self.frame(method, params);
        self.send(&line).await;
        let v = self.read_response().await;
        assert_eq!(v["id"], id);
        assert!(v.get("result").is_some(), "{v}");
        v
    }

    async fn initialize(&mut self) {
        self.request(
            "initialize",
            r#"{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}"#,
        )
        .await;
        self.send("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await;
    }

    fn status_params(task_id: &str) -> String {
        format!(r#"{{"name":"get_video_status","arguments":{{"task_id":"{task_id}"}}}}"#)
    }

    async fn status(&mut self, task_id: &str) {
        let v = self
            .request("tools/call", &Self::status_params(task_id))
            .await;
        assert!(!is_error(&v["result"]), "{v}");
    }

    /// Keeps `n` status calls in flight for `secs`; returns completed calls per second.
    async fn pipelined(&mut self, task_id: &str, n: usize, secs: f64) -> f64 {
        let params = Self::status_params(task_id);
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(secs);
        let mut outstanding = 0usize;
        let mut done = 0u64;
        for _ in 0..n {
            let (_, line) = self.frame("tools/call", &params);
            self.send(&line).await;
            outstanding += 1;
        }
        while outstanding > 0 {
            let v = self.read_response().await;
            assert!(!is_error(&v["result"]), "{v}");
            outstanding -= 1;
            done += 1;
            if Instant::now() < until {
                let (_, line) = self.frame("tools/call", &params);
                self.send(&line).await;
                outstanding += 1;
            }
        }
        done as f64 / started.elapsed().as_secs_f64()
    }

    async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The upstream request the status tool makes, made directly.
struct Direct {
    client: reqwest::Client,
    url: String,
}

impl Direct {
    async fn get(&self) -> Value {
        let r = self
            .client
            .get(&self.url)
            .bearer_auth(KEY)
            .header("accept", "application/json")
            .send()
            .await
            .expect("direct GET");
        assert!(r.status().is_success());
        let bytes = r.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }
}

/// Runs `f` from `n` concurrent loops for `secs`; returns completed calls per second.
async fn rate<F, Fut>(n: usize, secs: f64, f: F) -> f64
where
    F: Fn() -> Fut + Sync,
    Fut: std::future::Future<Output = ()>,
{
    let done = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    join_all((0..n).map(|_| async {
        while Instant::now() < until {
            f().await;
            done.fetch_add(1, Ordering::Relaxed);
        }
    }))
    .await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn startup(sim: &Simulator, runs: usize) -> (Duration, Duration) {
    let spec = spec(sim);
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut s = Lean::spawn(&spec);
        s.initialize().await;
        let r = s.request("tools/list", "{}").await;
        let took = started.elapsed();
        assert!(
            r["result"]["tools"]
                .as_array()
                .is_some_and(|t| t.len() >= 4)
        );
        times.push(took);
        rss.push(Duration::from_micros(rss_kib(s.pid).unwrap_or(0)));
        s.close().await;
    }
    // (median time, median RSS in KiB carried as micros)
    (median(times), median(rss))
}

/// The size of the whole tools/list answer (compact JSON, as on the wire)
/// and of what a client hands the model per tool: title, description and
/// input schema.
fn tools_list_figures(answer: &Value) -> (usize, f64, usize, usize) {
    let total = serde_json::to_string(answer).map_or(0, |s| s.len());
    let tools = answer["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let visible: Vec<usize> = tools
        .iter()
        .map(|t| {
            let part = json!({
                "name": t["name"],
                "title": t["annotations"]["title"],
                "description": t["description"],
                "inputSchema": t["inputSchema"],
            });
            serde_json::to_string(&part).map_or(0, |s| s.len())
        })
        .collect();
    let avg = visible.iter().sum::<usize>() as f64 / visible.len().max(1) as f64;
    (
        total,
        avg,
        visible.iter().copied().max().unwrap_or(0),
        tools.len(),
    )
}

/// Figure 7: (PostgreSQL, SQLite) medians and (three replicas, one) rates.
struct SharedFigures {
    status: (Duration, Duration),
    create: (Duration, Duration),
    replicas: (f64, f64),
}

/// Creates a video through `server`; its task id.
async fn lean_create(server: &mut Lean, what: &str) -> String {
    let create = json!({"name": "create_video",
        "arguments": {"prompt": format!("benchmark {what} {}", harness::nonce())}});
    let created = server.request("tools/call", &create.to_string()).await;
    assert!(!is_error(&created["result"]), "{created}");
    created["result"]["structuredContent"]["task_id"]
        .as_str()
        .expect("created")
        .to_string()
}

/// Runs `get_video_status` from every client until `secs` pass; calls per
/// second (a failed call stops the bench).
async fn http_rate(clients: &[harness::HttpClient], task_id: &str, secs: f64) -> f64 {
    let done = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    join_all(clients.iter().map(|c| {
        let done = &done;
        async move {
            while Instant::now() < until {
                let r = http_call(c, "get_video_status", json!({"task_id": task_id}), T)
                    .await
                    .unwrap();
                assert!(!is_error(&r), "{r}");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
    .await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Figure 7, or `None` (with a note) without `HEYGEN_TEST_POSTGRES_URL`.
async fn postgres_figures(sim: &Simulator, p: &Plan) -> Option<SharedFigures> {
    let Some(schema) = pg::schema("PostgreSQL figures").await else {
        println!(
            "PostgreSQL figures skipped: set {} (e.g. postgres://postgres@127.0.0.1:5432/test) \
             to compare the PostgreSQL ledger with SQLite and three replicas with one",
            pg::VAR
        );
        return None;
    };
    let base = Spawn::new(BIN).upstream(sim.base_url(), KEY).log("warn");
    let shared = base.clone().env("HEYGEN_LEDGER", &schema.url);

    // Status and create over stdio, interleaved in blocks.
    let mut on_pg = Lean::spawn(&shared);
    let mut on_sqlite = Lean::spawn(&base);
    on_pg.initialize().await;
    on_sqlite.initialize().await;
    let pg_task = lean_create(&mut on_pg, "on PostgreSQL").await;
    let sqlite_task = lean_create(&mut on_sqlite, "on SQLite").await;
    for _ in 0..50 {
        on_pg.status(&pg_task).await;
        on_sqlite.status(&sqlite_task).await;
    }
    let (mut pg_status, mut sqlite_status) = (Vec::new(), Vec::new());
    for _ in 0..p.seq_rounds {
        for (server, task, lat) in [
            (&mut on_pg, &pg_task, &mut pg_status),
            (&mut on_sqlite, &sqlite_task, &mut sqlite_status),
        ] {
            for _ in 0..p.seq_block {
                let t = Instant::now();
                server.status(task).await;
                lat.push(t.elapsed());
            }
        }
    }
    let (mut pg_create, mut sqlite_create) = (Vec::new(), Vec::new());
    for _ in 0..p.seq_rounds {
        for (server, lat) in [
            (&mut on_pg, &mut pg_create),
            (&mut on_sqlite, &mut sqlite_create),
        ] {
            for _ in 0..p.seq_block / 10 {
                let t = Instant::now();
                lean_create(server, "create").await;
                lat.push(t.elapsed());
            }
        }
    }
    on_pg.close().await;
    on_sqlite.close().await;
    let status = (median(pg_status), median(sqlite_status));
    let create = (median(pg_create), median(sqlite_create));
    println!(
        "PostgreSQL vs SQLite ledger, stdio: status median {:.3} vs {:.3} ms ({:.2}×), create median {:.3} vs {:.3} ms ({:.2}×)",
        ms(status.0),
        ms(status.1),
        status.0.as_secs_f64() / status.1.as_secs_f64(),
        ms(create.0),
        ms(create.1),
        create.0.as_secs_f64() / create.1.as_secs_f64()
    );

    // Three replicas vs the first of them alone, 64 clients each time.
    let http_spec = shared.args(["--max-concurrent", "256"]);
    let (a, b, c) = tokio::join!(
        HttpServer::spawn(&http_spec),
        HttpServer::spawn(&http_spec),
        HttpServer::spawn(&http_spec)
    );
    let replicas = [&a, &b, &c];
    let alone = join_all((0..64).map(|_| modern_client(&a.url))).await;
    let alone: Vec<_> = alone.into_iter().map(Result::unwrap).collect();
    let spread = join_all((0..64).map(|i| modern_client(&replicas[i % 3].url))).await;
    let spread: Vec<_> = spread.into_iter().map(Result::unwrap).collect();
    let task = http_call(
        &alone[0],
        "create_video",
        json!({"prompt": format!("benchmark replicas {}", harness::nonce())}),
        T,
    )
    .await
    .unwrap();
    let task = task["structuredContent"]["task_id"]
        .as_str()
        .expect("created")
        .to_string();
    // Warm every client once.
    http_rate(&alone, &task, 0.2).await;
    http_rate(&spread, &task, 0.2).await;
    let (mut three, mut one) = (0.0, 0.0);
    for _ in 0..2 {
        one += http_rate(&alone, &task, p.http_secs).await / 2.0;
        three += http_rate(&spread, &task, p.http_secs).await / 2.0;
    }
    println!(
        "HTTP on one PostgreSQL, 64 clients: 3 replicas {three:.0} calls/s, 1 replica {one:.0} calls/s ({:.2}×)",
        three / one
    );
    for client in alone.into_iter().chain(spread) {
        let _ = client.cancel().await;
    }
    for server in [a, b, c] {
        server.stop().await;
    }
    Some(SharedFigures {
        status,
        create,
        replicas: (three, one),
    })
}

#[derive(Default)]
struct Row {
    figure: &'static str,
    theirs: &'static str,
    target: &'static str,
    measured: String,
    met: Option<bool>,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the arguments.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let p = plan();
    let sim = Simulator::start(SimConfig {
        render_time: Duration::ZERO,
        api_key: Some(KEY.into()),
        // Enough credits for every create of the ledger comparison.
        start_balance: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    println!(
        "heygen-video-mcp benchmark ({BIN} {})",
        std::env::var("BENCH_SERVER_ARGS").unwrap_or_default()
    );
    println!(
        "machine: {} cores; the simulator runs in this process",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Start-up.
    let (startup_median, startup_rss) = startup(&sim, p.startup_runs).await;
    println!(
        "start → tools/list answered: median {:.2} ms over {} runs (RSS then {:.1} MiB)",
        ms(startup_median),
        p.startup_runs,
        startup_rss.as_micros() as f64 / 1024.0
    );

    // 2–3. Sequential status calls: server over stdio vs direct.
    let mut server = Lean::spawn(&spec(&sim));
    server.initialize().await;
    let listed = server.request("tools/list", "{}").await;
    let (list_bytes, visible_avg, visible_max, tool_count) = tools_list_figures(&listed);
    println!(
        "tools/list: {list_bytes} bytes for {tool_count} tools; model-visible (title + description + \
         inputSchema) {visible_avg:.0} bytes per tool on average, {visible_max} at most"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after_start = rss_kib(server.pid).unwrap();
    // Private memory; the rest of VmRSS is the mapped executable (shared,
    // file-backed, reclaimable).
    let anon_after_start = harness::status_kib(server.pid, "RssAnon").unwrap_or(0);
    let create = json!({"name": "create_video",
        "arguments": {"prompt": format!("benchmark video {}", harness::nonce())}});
    let created = server.request("tools/call", &create.to_string()).await;
    let task_id = created["result"]["structuredContent"]["task_id"]
        .as_str()
        .expect("created")
        .to_string();
    let direct = Direct {
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        url: format!("{}/v1/tasks/{task_id}?sync_upstream=true", sim.base_url()),
    };
    // Warm both paths (connection pools, lazy client).
    for _ in 0..50 {
        direct.get().await;
        server.status(&task_id).await;
    }
    let mut direct_lat = Vec::new();
    let mut server_lat = Vec::new();
    let mut server_cpu = Duration::ZERO;
    for _ in 0..p.seq_rounds {
        for _ in 0..p.seq_block {
            let t = Instant::now();
            direct.get().await;
            direct_lat.push(t.elapsed());
        }
        let cpu0 = cpu_time(server.pid).unwrap();
        for _ in 0..p.seq_block {
            let t = Instant::now();
            server.status(&task_id).await;
            server_lat.push(t.elapsed());
        }
        server_cpu += cpu_time(server.pid).unwrap() - cpu0;
    }
    let seq_calls = server_lat.len();
    let d_med = median(direct_lat.clone());
    let s_med = median(server_lat.clone());
    let ratio = s_med.as_secs_f64() / d_med.as_secs_f64();
    let cpu_per_call = server_cpu / seq_calls as u32;
    println!(
        "sequential status: server median {:.3} ms (p99 {:.3}), direct median {:.3} ms (p99 {:.3}); ratio {:.2}×; server CPU {:.3} ms/call over {seq_calls} calls",
        ms(s_med),
        ms({
            server_lat.sort();
            percentile(&server_lat, 0.99)
        }),
        ms(d_med),
        ms({
            direct_lat.sort();
            percentile(&direct_lat, 0.99)
        }),
        ratio,
        ms(cpu_per_call)
    );

    // 5. 16 calls in flight, interleaved twice.
    let mut d16 = 0.0;
    let mut s16 = 0.0;
    let cpu0 = cpu_time(server.pid).unwrap();
    let mut s16_calls = 0.0;
    for _ in 0..2 {
        d16 += rate(16, p.inflight_secs, || async {
            direct.get().await;
        })
        .await;
        let r = server.pipelined(&task_id, 16, p.inflight_secs).await;
        s16_calls += r * p.inflight_secs;
        s16 += r;
    }
    let cpu16 = cpu_time(server.pid).unwrap() - cpu0;
    let fraction = s16 / d16;
    let rss_peak_stdio = hwm_kib(server.pid).unwrap();
    println!(
        "16 in flight: server {:.0} calls/s, direct {:.0} req/s; fraction {:.0} %; server CPU {:.3} ms/call",
        s16 / 2.0,
        d16 / 2.0,
        fraction * 100.0,
        ms(cpu16) / s16_calls
    );
    server.close().await;

    // 6. HTTP with 64 concurrent clients.
    let http = HttpServer::spawn(&spec(&sim).args(["--max-concurrent", "256"])).await;
    let mut http_rows = Vec::new();
    for (label, legacy) in [("2026-07-28", false), ("2025-11-25 sessions", true)] {
        let clients = join_all((0..64).map(|_| async {
            if legacy {
                legacy_client(&http.url).await.unwrap()
            } else {
                modern_client(&http.url).await.unwrap()
            }
        }))
        .await;
        // Warm up every client once.
        for c in &clients {
            let r = http_call(c, "get_video_status", json!({"task_id": task_id}), T)
                .await
                .unwrap();
            assert!(!is_error(&r), "{r}");
        }
        let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
        let failures = AtomicU64::new(0);
        let until = Instant::now() + Duration::from_secs_f64(p.http_secs);
        let cpu0 = cpu_time(http.pid).unwrap();
        let started = Instant::now();
        join_all(clients.iter().map(|c| {
            let lat = lat.clone();
            let task_id = &task_id;
            let failures = &failures;
            async move {
                while Instant::now() < until {
                    let t = Instant::now();
                    match http_call(c, "get_video_status", json!({"task_id": task_id}), T).await {
                        Ok(r) if !is_error(&r) => lat.lock().unwrap().push(t.elapsed()),
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }))
        .await;
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_time(http.pid).unwrap() - cpu0;
        let mut lat = lat.lock().unwrap().clone();
        lat.sort();
        let calls = lat.len();
        let d64 = rate(64, p.http_secs, || async {
            direct.get().await;
        })
        .await;
        println!(
            "HTTP, 64 clients ({label}): {:.0} calls/s (direct at 64: {:.0} req/s, {:.0} %), p50 {:.2} ms, p99 {:.2} ms, server CPU {:.3} ms/call, failures {}",
            calls as f64 / secs,
            d64,
            calls as f64 / secs / d64 * 100.0,
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(cpu) / calls.max(1) as f64,
            failures.load(Ordering::Relaxed)
        );
        http_rows.push((
            label,
            calls as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            calls as f64 / secs / d64,
        ));
        for c in clients {
            let _ = c.cancel().await;
        }
    }
    let rss_peak_http = hwm_kib(http.pid).unwrap();
    http.stop().await;

    // 7. PostgreSQL: the ledger vs SQLite, and three replicas vs one.
    let shared = postgres_figures(&sim, &p).await;

    // The table.
    let mib = |k: u64| k as f64 / 1024.0;
    let rows = vec![
        Row {
            figure: "process start → tools/list answered (stdio)",
            theirs: "~240 ms",
            target: "≤ 10 ms",
            measured: format!(
                "{:.2} ms (median of {})",
                ms(startup_median),
                p.startup_runs
            ),
            met: Some(ms(startup_median) <= 10.0),
        },
        Row {
            figure: "tools/list reply (whole JSON-RPC answer)",
            theirs: "13.4 KB (13 tools)",
            target: "≤ 16 KB",
            measured: format!("{list_bytes} bytes ({tool_count} tools)"),
            met: Some(list_bytes <= 16 * 1024),
        },
        Row {
            figure: "model-visible tool definition, average per tool",
            theirs: "—",
            target: "≤ 1,200 bytes",
            measured: format!("{visible_avg:.0} bytes (largest {visible_max})"),
            met: Some(visible_avg <= 1200.0),
        },
        Row {
            figure: "status call over stdio vs the same HTTP call direct (median)",
            theirs: "8.3×",
            target: "≤ 1.5×",
            measured: format!("{ratio:.2}× ({:.3} vs {:.3} ms)", ms(s_med), ms(d_med)),
            met: Some(ratio <= 1.5),
        },
        Row {
            figure: "CPU per call (server process)",
            theirs: "~1.4 ms",
            target: "≤ 0.1 ms",
            measured: format!(
                "{:.3} ms sequential; {:.3} ms with 16 in flight",
                ms(cpu_per_call),
                ms(cpu16) / s16_calls
            ),
            met: Some(ms(cpu_per_call) <= 0.1),
        },
        Row {
            figure: "memory after start (VmRSS)",
            theirs: "71 MiB",
            target: "≤ 10 MiB",
            measured: format!(
                "{:.1} MiB ({:.1} MiB private, the rest the mapped executable)",
                mib(rss_after_start),
                mib(anon_after_start)
            ),
            met: Some(mib(rss_after_start) <= 10.0),
        },
        Row {
            figure: "memory peak under load, stdio (VmHWM)",
            theirs: "143 MiB",
            target: "≤ 20 MiB",
            measured: format!("{:.1} MiB", mib(rss_peak_stdio)),
            met: Some(mib(rss_peak_stdio) <= 20.0),
        },
        Row {
            figure: "16 calls in flight, throughput vs direct",
            theirs: "10 %",
            target: "≥ 50 %",
            measured: format!(
                "{:.0} % ({:.0} vs {:.0} calls/s)",
                fraction * 100.0,
                s16 / 2.0,
                d16 / 2.0
            ),
            met: Some(fraction >= 0.5),
        },
    ];
    let mut rows = rows;
    for (label, rate, p50, p99, frac) in &http_rows {
        rows.push(Row {
            figure: if *label == "2026-07-28" {
                "HTTP, 64 concurrent clients, 2026-07-28"
            } else {
                "HTTP, 64 concurrent clients, 2025-11-25 sessions"
            },
            theirs: "—",
            target: "(no target)",
            measured: format!(
                "{rate:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms ({:.0} % of direct)",
                ms(*p50),
                ms(*p99),
                frac * 100.0
            ),
            met: None,
        });
    }
    if let Some(f) = &shared {
        rows.push(Row {
            figure: "status call over stdio, PostgreSQL vs SQLite ledger (median)",
            theirs: "—",
            target: "(no target)",
            measured: format!(
                "{:.2}× ({:.3} vs {:.3} ms)",
                f.status.0.as_secs_f64() / f.status.1.as_secs_f64(),
                ms(f.status.0),
                ms(f.status.1)
            ),
            met: None,
        });
        rows.push(Row {
            figure: "create over stdio, PostgreSQL vs SQLite ledger (median)",
            theirs: "—",
            target: "(no target)",
            measured: format!(
                "{:.2}× ({:.3} vs {:.3} ms)",
                f.create.0.as_secs_f64() / f.create.1.as_secs_f64(),
                ms(f.create.0),
                ms(f.create.1)
            ),
            met: None,
        });
        rows.push(Row {
            figure: "HTTP throughput, 3 replicas vs 1 (one PostgreSQL, 64 clients)",
            theirs: "—",
            target: "(no target)",
            measured: format!(
                "{:.2}× ({:.0} vs {:.0} calls/s on {} cores)",
                f.replicas.0 / f.replicas.1,
                f.replicas.0,
                f.replicas.1,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
            met: None,
        });
    }
    rows.push(Row {
        figure: "memory peak, HTTP with 64 clients (VmHWM)",
        theirs: "—",
        target: "(no target)",
        measured: format!("{:.1} MiB", mib(rss_peak_http)),
        met: None,
    });

    println!();
    println!("| figure | measured | target | TypeScript server today | met |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.figure,
            r.measured,
            r.target,
            r.theirs,
            match r.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "—",
            }
        );
    }
    let _ = Row::default();
}
