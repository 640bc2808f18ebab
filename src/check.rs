//! `heygen-video-mcp check`: a self-check a user can run from a terminal. It
//! says in a few lines whether the key is accepted, whether the video model is
//! available to it, what the balance is, whether the download folder and the
//! ledger are writable, and which settings are in force (never the key).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::{
    backend::{BackendKind, Operation, UpstreamError, VideoBackend},
    config::Settings,
    gateway::{GatewayClient, types::MODEL},
    heygen::HeygenClient,
    ledger::LedgerChoice,
};

/// One line of the report.
struct Line {
    label: &'static str,
    ok: bool,
    text: String,
}

/// The report as printed, and whether everything needed is in order.
pub struct Report {
    pub text: String,
    pub ok: bool,
}

fn balance_line(balance: Result<crate::video::Balance, UpstreamError>, kind: BackendKind) -> Line {
    match balance {
        Ok(b) => {
            let view = crate::tools::credits::CreditsView::from(b);
            let empty = !view.credits.unlimited && view.credits.remaining.is_some_and(|r| r <= 0.0);
            Line {
                label: "balance",
                ok: !empty,
                text: crate::tools::credits::summary(&view, kind)
                    .trim_start_matches("Balance of the configured API key: ")
                    .to_string(),
            }
        }
        Err(e) => Line {
            label: "balance",
            ok: false,
            text: upstream_failure(&e),
        },
    }
}

/// Runs every check against the configured upstream (or the simulator).
pub async fn run(settings: &Settings) -> Report {
    let mut lines = Vec::new();
    let gateway = GatewayClient::new(settings.gateway.clone());
    let heygen = HeygenClient::new(settings.gateway.clone());
    let which = match settings.backend {
        BackendKind::Gateway => "task-API key",
        BackendKind::Heygen => "HeyGen API key (app.heygen.com/settings/api)",
    };
    match &settings.api_key {
        None => lines.push(Line {
            label: "key",
            ok: false,
            text: format!(
                "HEYGEN_API_KEY is not set: put your {which} in the environment (or the \"env\" \
                 block of your MCP client's entry for this server)"
            ),
        }),
        Some(key) if settings.backend == BackendKind::Heygen => {
            let balance = heygen.balance(key).await;
            lines.push(match &balance {
                Ok(_) => Line {
                    label: "key",
                    ok: true,
                    text: "accepted by HeyGen".into(),
                },
                Err(e) if e.status() == Some(401) => Line {
                    label: "key",
                    ok: false,
                    text: "rejected (HTTP 401): check HEYGEN_API_KEY".into(),
                },
                Err(e) => Line {
                    label: "key",
                    ok: false,
                    text: upstream_failure(e),
                },
            });
            lines.push(balance_line(balance, BackendKind::Heygen));
        }
        Some(key) => {
            let (models, balance) = tokio::join!(gateway.models(key), gateway.balance(key));
            match models {
                Ok(ids) => {
                    lines.push(Line {
                        label: "key",
                        ok: true,
                        text: "accepted by the upstream".into(),
                    });
                    let found = ids.iter().any(|m| m == MODEL);
                    lines.push(Line {
                        label: "model",
                        ok: found,
                        text: if found {
                            format!("{MODEL} is available to this key")
                        } else {
                            format!(
                                "{MODEL} is not among the {} models this key may call: check \
                                 that HEYGEN_API_BASE is a gateway that serves it and that the \
                                 key's group includes it",
                                ids.len()
                            )
                        },
                    });
                }
                Err(e) => {
                    let rejected = e.status() == Some(401);
                    lines.push(Line {
                        label: "key",
                        ok: false,
                        text: if rejected {
                            "rejected (HTTP 401): check HEYGEN_API_KEY".into()
                        } else {
                            upstream_failure(&e)
                        },
                    });
                }
            }
            lines.push(balance_line(balance, BackendKind::Gateway));
        }
    }
    lines.push(match &settings.tools.download_dir {
        Some(dir) => match writable_dir(dir).await {
            Ok(()) => Line {
                label: "downloads",
                ok: true,
                text: format!("{} is writable", dir.display()),
            },
            Err(e) => Line {
                label: "downloads",
                ok: false,
                text: format!(
                    "{} is not writable ({e}): set HEYGEN_DOWNLOAD_DIR to a folder you can write",
                    dir.display()
                ),
            },
        },
        None => Line {
            label: "downloads",
            ok: true,
            text: "off (no download folder configured)".into(),
        },
    });
    lines.push(match &settings.ledger {
        LedgerChoice::Off => Line {
            label: "ledger",
            ok: true,
            text: "off: no history, repeated creates only collapsed while they run".into(),
        },
        LedgerChoice::Memory => Line {
            label: "ledger",
            ok: true,
            text: "temporary (simulator)".into(),
        },
        LedgerChoice::Postgres(url) => {
            match crate::ledger::PostgresLedger::open(url.clone())
                .ping()
                .await
            {
                Ok(()) => Line {
                    label: "ledger",
                    ok: true,
                    text: format!("PostgreSQL {url} answers and its schema is in place"),
                },
                Err(e) => Line {
                    label: "ledger",
                    ok: false,
                    text: format!(
                        "PostgreSQL {url} cannot be used ({e}): check that the database runs and \
                         the URL in HEYGEN_LEDGER is right"
                    ),
                },
            }
        }
        LedgerChoice::File(path) => match writable_ledger(path.clone()).await {
            Ok(()) => Line {
                label: "ledger",
                ok: true,
                text: format!("{} is writable", path.display()),
            },
            Err(e) => Line {
                label: "ledger",
                ok: false,
                text: format!(
                    "{} is not writable ({e}): set HEYGEN_LEDGER to a writable file, or \
                     --no-ledger",
                    path.display()
                ),
            },
        },
    });
    lines.push(Line {
        label: "settings",
        ok: true,
        text: settings_line(settings),
    });
    let ok = lines.iter().all(|l| l.ok);
    let mut text = format!(
        "heygen-video-mcp {} self-check against {} ({} backend)\n",
        env!("CARGO_PKG_VERSION"),
        settings.gateway.base_url,
        settings.backend.as_str()
    );
    for l in &lines {
        let mark = if l.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(text, "{mark} {:<9} {}", l.label, l.text);
    }
    text.push_str(if ok {
        "All checks passed.\n"
    } else {
        "Some checks failed: fix the lines marked FAIL (README.md, Troubleshooting).\n"
    });
    // Nothing printed may carry the key, even if an upstream echoed it.
    if let Some(key) = &settings.api_key {
        text = key.scrub(&text);
    }
    Report { text, ok }
}

fn upstream_failure(e: &UpstreamError) -> String {
    e.user_message(Operation::Credits)
        .trim_start_matches("Reading the credit balance failed: ")
        .to_string()
}

fn settings_line(s: &Settings) -> String {
    let t = &s.tools;
    format!(
        "request timeout {} s, retries {}, dedupe window {} s, max wait {} s, poll every {} s, \
         auto-download {}, transport {}",
        s.gateway.timeout.as_secs_f64(),
        s.gateway.retry.max_attempts.saturating_sub(1),
        t.dedupe_window.as_secs_f64(),
        t.max_wait.as_secs_f64(),
        t.poll_interval.as_secs_f64(),
        if t.auto_download { "on" } else { "off" },
        match &s.http {
            Some(h) => format!("HTTP on {}", h.addr),
            None => "stdio".into(),
        }
    )
}

/// Creates the folder if needed and writes (then removes) a probe file.
async fn writable_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let probe = dir.join(format!(".heygen-check-{}", std::process::id()));
    tokio::fs::write(&probe, b"check").await?;
    tokio::fs::remove_file(&probe).await
}

/// Opens the ledger file and takes (then releases) its write lock.
async fn writable_ledger(path: PathBuf) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        conn.execute_batch(
            "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS heygen_check(x); \
             DROP TABLE heygen_check; ROLLBACK;",
        )
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
