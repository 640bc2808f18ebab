//! Several server processes on one PostgreSQL ledger, as replicas behind a
//! load balancer: identical creates fired at once on two replicas buy one
//! video, an idempotency key holds across replicas, every replica lists the
//! same videos, and a replica whose database goes away refuses creates
//! (bounded, nothing sent upstream) and recovers by itself. Needs
//! `HEYGEN_TEST_POSTGRES_URL`; skipped when unset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod pg;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use heygen_video_mcp::simulator::Simulator;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};

async fn replica(sim: &Simulator, ledger_url: &str) -> McpChild {
    McpChild::modern(ServerOpts::for_sim(sim).env("HEYGEN_LEDGER", ledger_url)).await
}

fn creates(sim: &Simulator) -> usize {
    sim.state
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("task") && r.body.is_some())
        .count()
        .max(sim.state.task_count())
}

fn listed(r: &Value) -> Vec<String> {
    expect_ok(r)["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["task_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_truth() {
    let Some(schema) = pg::schema("replicas_share_one_truth").await else {
        return;
    };
    let sim = start_sim().await;
    let (a, b) = tokio::join!(replica(&sim, &schema.url), replica(&sim, &schema.url));
    let replicas = [&a, &b];

    // Ten identical creates at the same moment, alternating between replicas.
    let args = json!({ "prompt": "Two replicas, one video: a lighthouse at dusk." });
    let calls = (0..10).map(|i| replicas[i % 2].call("create_video", args.clone()));
    let results = futures::future::join_all(calls).await;
    let ids: Vec<String> = results.iter().map(task_id_of).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(sim.state.task_count(), 1, "one upstream create");

    // An idempotency key used on A and repeated on B answers with A's task;
    // the same key with other arguments on B is refused.
    let keyed = json!({ "prompt": "A keyed video.", "idempotency_key": "replica-key-1" });
    let first = task_id_of(&a.call("create_video", keyed.clone()).await);
    let again = b.call("create_video", keyed.clone()).await;
    assert_eq!(task_id_of(&again), first);
    let other = b
        .call(
            "create_video",
            json!({ "prompt": "Something else.", "idempotency_key": "replica-key-1" }),
        )
        .await;
    let text = expect_tool_error(&other);
    assert!(text.contains("idempotency_key"), "{text}");
    assert_eq!(sim.state.task_count(), 2);

    // Every replica lists the same videos.
    let on_a = listed(&a.call("list_videos", json!({})).await);
    let on_b = listed(&b.call("list_videos", json!({})).await);
    assert_eq!(on_a, on_b);
    assert!(on_a.contains(&ids[0]) && on_a.contains(&first), "{on_a:?}");
    let _ = creates(&sim);
}

/// A loopback TCP proxy to the database that the test can cut and restore.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                c.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            port,
            open,
            conns,
            _accept: accept,
        }
    }

    /// Drops every connection and refuses new ones.
    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_refuses_creates_and_recovers() {
    let Some(schema) = pg::schema("a_lost_database_refuses_creates_and_recovers").await else {
        return;
    };
    let base = url::Url::parse(&schema.url).unwrap();
    let target = format!(
        "{}:{}",
        base.host_str().unwrap(),
        base.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(target).await;
    let mut via = base.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    let sim = start_sim().await;
    let c = replica(&sim, via.as_str()).await;

    let ok = c
        .call("create_video", json!({ "prompt": "Before the outage." }))
        .await;
    let before = task_id_of(&ok);
    assert_eq!(sim.state.task_count(), 1);

    proxy.cut().await;
    let started = Instant::now();
    let refused = c
        .call("create_video", json!({ "prompt": "During the outage." }))
        .await;
    let elapsed = started.elapsed();
    let text = expect_tool_error(&refused);
    assert!(
        text.contains("not created") && text.contains("ledger"),
        "{text}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "refused after {elapsed:?}"
    );
    assert_eq!(sim.state.task_count(), 1, "nothing was sent upstream");
    let listing = c.call("list_videos", json!({})).await;
    assert!(is_error(&listing), "{listing}");
    // A status check does not need the ledger.
    expect_ok(
        &c.call("get_video_status", json!({ "task_id": before }))
            .await,
    );

    // The database is back: the pool reconnects by itself.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .call("create_video", json!({ "prompt": "After the outage." }))
            .await;
        if !is_error(&r) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(sim.state.task_count(), 2);
    let after = listed(&c.call("list_videos", json!({})).await);
    assert!(after.contains(&before) && after.len() == 2, "{after:?}");
    let stderr = c.shutdown().await;
    assert!(
        !stderr.contains("postgres://postgres:"),
        "no password shown"
    );
}
