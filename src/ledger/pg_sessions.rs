//! [`SharedSessions`] in the PostgreSQL ledger's database: the table
//! `heygen_sessions` (schema version 2, applied with the ledger's schema).
//!
//! Reservations are counted against the caps inside one transaction holding
//! an advisory lock, so replicas taking the last slot at the same moment are
//! put in order by the database. Times come from the database's clock, as in
//! the ledger. Rows are keyed by a SHA-256 of the session id: the table never
//! holds an id a client could present.

use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{
    LedgerError, ms,
    postgres::{Ctx, NOW_MS, PostgresLedger, db_error},
    sessions::{Binding, RESERVATION_TTL, Reserved, SessionCaps, SharedSessions},
};

pub(super) const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS heygen_sessions (
    id               TEXT    PRIMARY KEY,
    owner            TEXT    NOT NULL,
    bound            BOOLEAN NOT NULL DEFAULT false,
    protocol_version TEXT,
    init_params      TEXT,
    created_at       BIGINT  NOT NULL,
    last_used        BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS heygen_sessions_owner ON heygen_sessions(owner, expires_at);
CREATE INDEX IF NOT EXISTS heygen_sessions_expiry ON heygen_sessions(expires_at);
";

/// The row key of a session id.
fn key(session_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"heygen-video-mcp session\0");
    h.update(session_id.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The sessions of a [`PostgresLedger`], on its connection pool.
#[derive(Debug, Clone)]
pub struct PostgresSessions {
    db: PostgresLedger,
}

impl PostgresSessions {
    pub(super) fn new(db: PostgresLedger) -> Self {
        Self { db }
    }
}

async fn reserve(ctx: Ctx, owner: String, caps: SessionCaps) -> Result<Reserved, LedgerError> {
    let mut client = ctx.client().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('heygen-video-mcp sessions ' || \
         coalesce(current_schema(), ''), 0))",
        &[],
    )
    .await
    .map_err(db_error)?;
    let now: i64 = tx
        .query_one(&format!("SELECT {NOW_MS}"), &[])
        .await
        .map_err(db_error)?
        .get(0);
    tx.execute(
        "DELETE FROM heygen_sessions WHERE expires_at <= $1",
        &[&now],
    )
    .await
    .map_err(db_error)?;
    let row = tx
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE owner = $1) FROM heygen_sessions",
            &[&owner],
        )
        .await
        .map_err(db_error)?;
    let (total, mine): (i64, i64) = (row.get(0), row.get(1));
    if total >= count(caps.max_total) {
        return Ok(Reserved::ServerFull(caps.max_total));
    }
    if mine >= count(caps.max_per_caller) {
        return Ok(Reserved::CallerFull(caps.max_per_caller));
    }
    let reservation = format!("reservation:{:032x}", rand::random::<u128>());
    tx.execute(
        "INSERT INTO heygen_sessions (id, owner, created_at, last_used, expires_at) \
         VALUES ($1, $2, $3, $3, $4)",
        &[
            &reservation,
            &owner,
            &now,
            &now.saturating_add(ms(RESERVATION_TTL)),
        ],
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Reserved::Slot(reservation))
}

async fn bind(ctx: Ctx, b: Binding) -> Result<bool, LedgerError> {
    let client = ctx.client().await?;
    let n = client
        .execute(
            &format!(
                "UPDATE heygen_sessions SET id = $2, bound = true, protocol_version = $3, \
                 init_params = $4, last_used = {NOW_MS}, expires_at = {NOW_MS} + $5 \
                 WHERE id = $1 AND NOT bound AND expires_at > {NOW_MS}"
            ),
            &[
                &b.reservation,
                &key(&b.session_id),
                &b.version,
                &b.init_params,
                &ms(b.idle),
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(n == 1)
}

async fn touch(
    ctx: Ctx,
    session_id: String,
    owner: String,
    idle: Duration,
) -> Result<Option<String>, LedgerError> {
    let client = ctx.client().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE heygen_sessions SET last_used = {NOW_MS}, expires_at = {NOW_MS} + $3 \
                 WHERE id = $1 AND owner = $2 AND bound AND expires_at > {NOW_MS} \
                 RETURNING coalesce(protocol_version, '')"
            ),
            &[&key(&session_id), &owner, &ms(idle)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| r.get(0)))
}

async fn end(ctx: Ctx, session_id: String, owner: Option<String>) -> Result<bool, LedgerError> {
    let client = ctx.client().await?;
    let row = client
        .query_opt(
            &format!(
                "DELETE FROM heygen_sessions WHERE id = $1 AND ($2::text IS NULL OR owner = $2) \
                 RETURNING bound AND expires_at > {NOW_MS}"
            ),
            &[&key(&session_id), &owner],
        )
        .await
        .map_err(db_error)?;
    Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
}

async fn load(ctx: Ctx, session_id: String) -> Result<Option<String>, LedgerError> {
    let client = ctx.client().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT init_params FROM heygen_sessions \
                 WHERE id = $1 AND bound AND expires_at > {NOW_MS}"
            ),
            &[&key(&session_id)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
}

async fn live_of(ctx: Ctx, session_ids: Vec<String>) -> Result<Vec<String>, LedgerError> {
    let client = ctx.client().await?;
    client
        .execute(
            &format!("DELETE FROM heygen_sessions WHERE expires_at <= {NOW_MS}"),
            &[],
        )
        .await
        .map_err(db_error)?;
    let keys: Vec<String> = session_ids.iter().map(|id| key(id)).collect();
    let rows = client
        .query(
            &format!(
                "SELECT id FROM heygen_sessions \
                 WHERE id = ANY($1) AND bound AND expires_at > {NOW_MS}"
            ),
            &[&keys],
        )
        .await
        .map_err(db_error)?;
    let live: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(session_ids
        .into_iter()
        .zip(keys)
        .filter(|(_, k)| live.contains(k))
        .map(|(id, _)| id)
        .collect())
}

impl SharedSessions for PostgresSessions {
    fn reserve(
        &self,
        owner: &str,
        caps: SessionCaps,
    ) -> BoxFuture<'static, Result<Reserved, LedgerError>> {
        let owner = owner.to_string();
        self.db.run(move |ctx| reserve(ctx, owner, caps))
    }

    fn release(&self, reservation: &str) -> BoxFuture<'static, Result<(), LedgerError>> {
        let reservation = reservation.to_string();
        self.db.run(move |ctx| async move {
            let client = ctx.client().await?;
            client
                .execute(
                    "DELETE FROM heygen_sessions WHERE id = $1 AND NOT bound",
                    &[&reservation],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn bind(&self, binding: Binding) -> BoxFuture<'static, Result<bool, LedgerError>> {
        self.db.run(move |ctx| bind(ctx, binding))
    }

    fn touch(
        &self,
        session_id: &str,
        owner: &str,
        idle: Duration,
    ) -> BoxFuture<'static, Result<Option<String>, LedgerError>> {
        let (session_id, owner) = (session_id.to_string(), owner.to_string());
        self.db.run(move |ctx| touch(ctx, session_id, owner, idle))
    }

    fn end(
        &self,
        session_id: &str,
        owner: Option<&str>,
    ) -> BoxFuture<'static, Result<bool, LedgerError>> {
        let (session_id, owner) = (session_id.to_string(), owner.map(str::to_string));
        self.db.run(move |ctx| end(ctx, session_id, owner))
    }

    fn load(&self, session_id: &str) -> BoxFuture<'static, Result<Option<String>, LedgerError>> {
        let session_id = session_id.to_string();
        self.db.run(move |ctx| load(ctx, session_id))
    }

    fn live_of(
        &self,
        session_ids: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<String>, LedgerError>> {
        self.db.run(move |ctx| live_of(ctx, session_ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_keyed_by_a_hash_of_the_session_id() {
        let k = key("3f1c9a2e-session");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("3f1c9a2e"));
        assert_eq!(k, key("3f1c9a2e-session"));
        assert_ne!(k, key("3f1c9a2e-session2"));
    }
}
