//! A fresh PostgreSQL schema per test, on the server named by
//! `HEYGEN_TEST_POSTGRES_URL` (unset: the test says so and is skipped).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

pub const VAR: &str = "HEYGEN_TEST_POSTGRES_URL";

/// A schema `t_<random>` that is dropped when this goes out of scope.
pub struct PgSchema {
    base: String,
    pub name: String,
    /// The base URL with `search_path` set to the schema.
    pub url: String,
}

/// A new schema, or `None` (after printing why) when no server is configured.
pub async fn schema(test: &str) -> Option<PgSchema> {
    let Ok(base) = std::env::var(VAR) else {
        eprintln!("{test}: skipped: {VAR} is not set");
        return None;
    };
    let name = format!("t_{:016x}", rand::random::<u64>());
    let client = connect(&base).await;
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .expect("create the test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{name}");
    Some(PgSchema { base, name, url })
}

/// A plain connection to `url` (its driver task runs in the background).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .expect("PostgreSQL answers within 10 s")
    .unwrap_or_else(|e| panic!("{VAR} names a reachable database: {e}"));
    tokio::spawn(conn);
    client
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(Ok((client, conn))) = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio_postgres::connect(&base, tokio_postgres::NoTls),
                )
                .await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
