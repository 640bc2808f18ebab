//! Legacy (2025-11-25 and older) HTTP sessions kept in the shared database,
//! so every replica serves every session: a session initialized on one
//! replica continues on any other, counts against the caps everywhere, and
//! is gone everywhere once deleted or idle for too long.
//!
//! A row holds what the replicas must agree on and nothing secret: a hash of
//! the session id (never the id itself), the owner (a hash identifying the
//! caller, never its token or key), the negotiated revision, the client's
//! `initialize` parameters (to replay the handshake on another replica), and
//! when the session was last used and expires. A reservation (a slot taken by
//! an `initialize` not yet answered) is a row of its own, counted by the caps,
//! that the answered handshake turns into the session's row.
//!
//! Every write is issued when the method is called, so a caller that does not
//! need the answer may drop the future.

use std::{fmt, time::Duration};

use futures::future::BoxFuture;

use super::LedgerError;

/// The caps and idle expiry a replica enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCaps {
    /// Live sessions (and reservations) of everyone.
    pub max_total: usize,
    /// Live sessions (and reservations) of one owner.
    pub max_per_caller: usize,
    /// A session without a request for this long ends.
    pub idle: Duration,
}

/// The answer to "may this caller open a session?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// A slot is held under this reservation key until [`SharedSessions::bind`]
    /// or [`SharedSessions::release`] (or it lapses after [`RESERVATION_TTL`]).
    Slot(String),
    /// Every replica together holds the overall maximum (the limit).
    ServerFull(usize),
    /// This owner holds its maximum (the limit).
    CallerFull(usize),
}

/// A reservation lapses this long after it was taken (an `initialize` whose
/// replica died before answering it).
pub const RESERVATION_TTL: Duration = Duration::from_secs(60);

/// A session whose handshake was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The reservation the handshake held.
    pub reservation: String,
    /// The `Mcp-Session-Id` given to the client.
    pub session_id: String,
    /// The revision the handshake settled on.
    pub version: String,
    /// The client's `initialize` parameters (JSON).
    pub init_params: String,
    pub idle: Duration,
}

/// Sessions in a store that every replica shares.
pub trait SharedSessions: Send + Sync + fmt::Debug {
    /// Takes a slot for a new session of `owner` within `caps`, atomically
    /// across every replica; lapsed sessions and reservations are removed.
    fn reserve(
        &self,
        owner: &str,
        caps: SessionCaps,
    ) -> BoxFuture<'static, Result<Reserved, LedgerError>>;

    /// Gives back a reservation that no session took.
    fn release(&self, reservation: &str) -> BoxFuture<'static, Result<(), LedgerError>>;

    /// Turns a reservation into the session's row; false when the
    /// reservation is gone (it lapsed).
    fn bind(&self, binding: Binding) -> BoxFuture<'static, Result<bool, LedgerError>>;

    /// Marks session `session_id` of `owner` used now (it expires `idle` from
    /// now) and returns its negotiated revision; `None` when there is no such
    /// live session of this owner (ended, expired, never created, or
    /// another caller's).
    fn touch(
        &self,
        session_id: &str,
        owner: &str,
        idle: Duration,
    ) -> BoxFuture<'static, Result<Option<String>, LedgerError>>;

    /// Ends session `session_id` (only if it is `owner`'s, when given);
    /// whether a live session ended.
    fn end(
        &self,
        session_id: &str,
        owner: Option<&str>,
    ) -> BoxFuture<'static, Result<bool, LedgerError>>;

    /// The `initialize` parameters (JSON) of a live session.
    fn load(&self, session_id: &str) -> BoxFuture<'static, Result<Option<String>, LedgerError>>;

    /// Which of `session_ids` are still live; lapsed rows are removed.
    fn live_of(
        &self,
        session_ids: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<String>, LedgerError>>;
}
