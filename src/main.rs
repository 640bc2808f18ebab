//! The binary: parse configuration, set up logging on stderr, build the shared
//! state, run the chosen transport, map the exit code. Nothing else.

use std::{io::IsTerminal, process::ExitCode, sync::Arc};

use clap::Parser;
use heygen_video_mcp::{
    backend::{ApiKey, BackendKind},
    config::{Cli, ClientSecret, Command, Settings},
    simulator::{SimConfig, Simulator},
    tools::{AppState, ToolOptions, VideoServer},
    transport,
};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let check = cli.command == Some(Command::Check);
    init_tracing();
    let settings = match cli.into_settings(
        std::env::var("HEYGEN_API_KEY").ok(),
        std::env::var("HEYGEN_MCP_AUTH_TOKEN").ok(),
    ) {
        Ok(mut s) => {
            s.catalog_key = std::env::var("HEYGEN_CATALOG_KEY")
                .ok()
                .and_then(ApiKey::new);
            if let Some(oauth) = s.http.as_mut().and_then(|h| h.oauth.as_mut()) {
                oauth.client_secret = std::env::var("HEYGEN_OAUTH_CLIENT_SECRET")
                    .ok()
                    .and_then(|v| ClientSecret::new(&v));
            }
            s
        }
        Err(e) => {
            eprintln!("heygen-video-mcp: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    // stdio serves one client: a single-threaded runtime answers it without
    // waking threads for every message (the reactor still overlaps calls;
    // blocking work goes to tokio's blocking pool). HTTP serves many clients
    // on all cores.
    let runtime = if settings.http.is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heygen-video-mcp: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, check)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("heygen-video-mcp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}

/// Serves (or checks) until done; `Ok(false)` when a check found a problem.
async fn run(mut settings: Settings, check: bool) -> Result<bool, String> {
    // Keep the simulator alive for as long as the server runs.
    let _simulator = if settings.simulate {
        let sim = match settings.backend {
            BackendKind::Gateway => {
                Simulator::start(SimConfig {
                    render_time: settings.simulate_render,
                    ..SimConfig::default()
                })
                .await
            }
            BackendKind::Heygen => {
                Simulator::start_heygen(SimConfig {
                    render_time: settings.simulate_render,
                    ..SimConfig::heygen()
                })
                .await
            }
        }
        .map_err(|e| format!("the simulator could not start: {e}"))?;
        settings.gateway.base_url = sim.base_url();
        // The inline player may load the simulator's sample video.
        if let Some(origin) = heygen_video_mcp::tools::player::origin_of(&sim.base_url())
            && !settings.tools.media_origins.contains(&origin)
        {
            settings.tools.media_origins.push(origin);
        }
        if settings.api_key.is_none() {
            settings.api_key = ApiKey::new("simulated-key");
        }
        let what = match settings.backend {
            BackendKind::Gateway => "gateway",
            BackendKind::Heygen => "HeyGen v3 API",
        };
        tracing::info!(
            "simulate: using the embedded simulated {what} at {} (no real videos, no credits spent)",
            sim.base_url()
        );
        Some(sim)
    } else {
        if settings.api_key.is_none() {
            tracing::warn!(
                "HEYGEN_API_KEY is not set: tools are listed, but every call will explain how to set it"
            );
        }
        None
    };

    if check {
        let report = heygen_video_mcp::check::run(&settings).await;
        print!("{}", report.text);
        return Ok(report.ok);
    }

    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());

    let (backend, catalog) = heygen_video_mcp::server::backend_for(&settings);
    let mut state = AppState::new(
        backend,
        settings.api_key.clone(),
        ToolOptions {
            caller_keys: settings
                .http
                .as_ref()
                .map(|h| h.caller_keys)
                .unwrap_or_default(),
            user_budget: heygen_video_mcp::tools::UserBudget::new(
                settings
                    .http
                    .as_ref()
                    .and_then(|h| h.oauth.as_ref())
                    .and_then(|o| o.user_daily_videos),
            ),
            // Opened on its own thread in the background: start-up does not wait.
            ledger: heygen_video_mcp::ledger::open(&settings.ledger),
            ..ToolOptions::from_settings(&settings.tools, settings.http.is_some())
        },
    );
    state.catalog = catalog;
    let state = Arc::new(state);
    if let Some(dir) = &state.options.download_dir {
        state
            .options
            .downloads
            .sweep_leftovers(dir, state.options.http_mode);
    }

    match settings.http.clone() {
        Some(http) => transport::http::serve(state, http, stop)
            .await
            .map(|()| true),
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "heygen-video-mcp {} speaks MCP on stdin/stdout and waits for a client. Add it \
                     to your MCP client's configuration (see README.md), or try it with \
                     `npx @modelcontextprotocol/inspector heygen-video-mcp --simulate`. Ctrl-C quits.",
                    env!("CARGO_PKG_VERSION")
                );
            }
            transport::stdio::serve(VideoServer::new(state), stop)
                .await
                .map(|()| true)
        }
    }
}

fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        stop.cancel();
    });
}
