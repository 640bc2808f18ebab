//! Legacy (2025-11-25 and older) Streamable HTTP sessions: bounded and owned.
//!
//! [`SessionRegistry`] counts live sessions overall and per caller and knows
//! who created each one (a hash of the caller's bearer token and, with caller
//! keys, of its upstream key; never the secrets) and which revision it
//! negotiated. The guard middleware reserves a slot before an `initialize`
//! reaches rmcp and checks the owner of every request that names a session;
//! [`BoundSessionManager`] wraps rmcp's `LocalSessionManager`, turns a
//! reservation into a binding once the handshake is answered, and forgets the
//! binding when the session ends (DELETE, idle expiry, failure, shutdown).
//!
//! The SSE priming event (an event with an id, a retry hint and empty data)
//! exists from 2025-11-25 on; older clients parse its empty data as JSON and
//! fail. rmcp's own priming of the initialize response and of the GET stream is
//! therefore turned off, and this layer adds it back (or strips the per-request
//! one) by the session's negotiated revision.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::{Stream, StreamExt};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, GetExtensions, ServerJsonRpcMessage},
    transport::{
        WorkerTransport,
        streamable_http_server::session::{
            ServerSseMessage, SessionId, SessionManager,
            local::{LocalSessionManager, LocalSessionManagerError, LocalSessionWorker},
        },
    },
};
use sha2::{Digest, Sha256};

use crate::config::SessionLimits;

/// The first revision that defines the SSE priming event.
const PRIMING_SINCE: &str = "2025-11-25";
/// The retry hint sent with a priming event (rmcp's default).
pub(crate) const PRIMING_RETRY: Duration = Duration::from_secs(3);

/// Whether a session that negotiated `version` gets SSE priming events.
/// Revisions are dates, so they compare as strings.
pub(crate) fn primes(version: &str) -> bool {
    version >= PRIMING_SINCE
}

/// The wire form of rmcp's priming event (`data:` empty, `id: 0`, `retry`).
pub(crate) fn priming_bytes() -> bytes::Bytes {
    bytes::Bytes::from(format!(
        "data: \nid: 0\nretry: {}\n\n",
        PRIMING_RETRY.as_millis()
    ))
}

/// Who is calling: a SHA-256 over the caller's bearer token and, when callers
/// may bring their own upstream key, that key (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CallerId([u8; 32]);

impl CallerId {
    pub(crate) fn new(token: Option<&str>, upstream_key: Option<&str>) -> Self {
        let mut h = Sha256::new();
        h.update(b"heygen-video-mcp caller\0");
        match token {
            Some(t) => {
                h.update(b"token\0");
                h.update(t.as_bytes());
            }
            None => h.update(b"no-token"),
        }
        h.update(b"\0");
        match upstream_key {
            Some(k) => {
                h.update(b"key\0");
                h.update(k.as_bytes());
            }
            None => h.update(b"no-key"),
        }
        Self(h.finalize().into())
    }
}

/// A reserved slot travelling with an `initialize` request (in the HTTP
/// request's extensions) to [`BoundSessionManager::initialize_session`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionTicket(u64);

/// Why a new session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionRefusal {
    /// The server holds its overall maximum of sessions.
    Server(usize),
    /// This caller holds its maximum of sessions.
    Caller(usize),
}

#[derive(Debug, Clone)]
struct Binding {
    owner: CallerId,
    primes: bool,
}

#[derive(Debug, Default)]
struct Books {
    live: HashMap<SessionId, Binding>,
    /// Reservations not yet turned into sessions, by ticket.
    pending: HashMap<u64, CallerId>,
    /// Live sessions plus reservations, per caller.
    per_caller: HashMap<CallerId, usize>,
    next_ticket: u64,
}

impl Books {
    fn uncount(&mut self, caller: CallerId) {
        if let Some(n) = self.per_caller.get_mut(&caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_caller.remove(&caller);
            }
        }
    }
}

/// Live sessions, their owners and the caps.
#[derive(Debug)]
pub struct SessionRegistry {
    limits: SessionLimits,
    books: Mutex<Books>,
}

/// What the guard learns about a session id a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The session exists and belongs to this caller.
    Owner,
    /// The session belongs to another caller.
    Foreign,
    /// No such session (ended, expired or never created).
    Unknown,
}

impl SessionRegistry {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            books: Mutex::new(Books::default()),
        }
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live sessions (bound to a caller).
    pub fn live(&self) -> usize {
        self.books().live.len()
    }

    /// Sessions plus reservations held by everyone, and by one caller.
    #[cfg(test)]
    fn counts(&self, caller: CallerId) -> (usize, usize) {
        let b = self.books();
        (
            b.live.len() + b.pending.len(),
            b.per_caller.get(&caller).copied().unwrap_or(0),
        )
    }

    /// Reserves a slot for a new session of `caller`.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        caller: CallerId,
    ) -> Result<Reservation, SessionRefusal> {
        let mut b = self.books();
        if b.live.len() + b.pending.len() >= self.limits.max_total {
            return Err(SessionRefusal::Server(self.limits.max_total));
        }
        let mine = b.per_caller.get(&caller).copied().unwrap_or(0);
        if mine >= self.limits.max_per_caller {
            return Err(SessionRefusal::Caller(self.limits.max_per_caller));
        }
        let ticket = b.next_ticket;
        b.next_ticket = b.next_ticket.wrapping_add(1);
        b.pending.insert(ticket, caller);
        *b.per_caller.entry(caller).or_insert(0) += 1;
        Ok(Reservation {
            registry: self.clone(),
            ticket: SessionTicket(ticket),
        })
    }

    /// Turns a reservation into the binding of session `id`; false (and
    /// nothing bound) when there is no valid reservation.
    fn bind(&self, ticket: SessionTicket, id: SessionId, primes: bool) -> bool {
        let mut b = self.books();
        let Some(owner) = b.pending.remove(&ticket.0) else {
            return false;
        };
        if let Some(old) = b.live.insert(id, Binding { owner, primes }) {
            b.uncount(old.owner);
        }
        true
    }

    fn release(&self, ticket: SessionTicket) {
        let mut b = self.books();
        if let Some(caller) = b.pending.remove(&ticket.0) {
            b.uncount(caller);
        }
    }

    /// Forgets session `id` (it ended).
    fn forget(&self, id: &SessionId) {
        let mut b = self.books();
        if let Some(binding) = b.live.remove(id) {
            b.uncount(binding.owner);
        }
    }

    pub(crate) fn access(&self, id: &str, caller: CallerId) -> Access {
        match self.books().live.get(id) {
            Some(b) if b.owner == caller => Access::Owner,
            Some(_) => Access::Foreign,
            None => Access::Unknown,
        }
    }

    /// Whether session `id` gets priming events (false when unknown).
    pub(crate) fn primes(&self, id: &str) -> bool {
        self.books().live.get(id).is_some_and(|b| b.primes)
    }
}

/// A reserved session slot; released on drop unless a session took it.
pub(crate) struct Reservation {
    registry: Arc<SessionRegistry>,
    ticket: SessionTicket,
}

impl Reservation {
    pub(crate) fn ticket(&self) -> SessionTicket {
        self.ticket
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.registry.release(self.ticket);
    }
}

/// rmcp's in-memory session manager plus the bookkeeping of [`SessionRegistry`].
pub struct BoundSessionManager {
    pub inner: LocalSessionManager,
    pub registry: Arc<SessionRegistry>,
}

impl BoundSessionManager {
    pub fn new(registry: Arc<SessionRegistry>) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(registry.limits().idle_timeout);
        inner.session_config.sse_retry = Some(PRIMING_RETRY);
        Self { inner, registry }
    }
}

/// The revision an initialize response settled on, if it is one.
fn negotiated_version(response: &ServerJsonRpcMessage) -> Option<String> {
    let v = serde_json::to_value(response).ok()?;
    v.get("result")?
        .get("protocolVersion")?
        .as_str()
        .map(str::to_string)
}

impl SessionManager for BoundSessionManager {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let (ticket, caller, requested) = match &message {
            ClientJsonRpcMessage::Request(req) => {
                let parts = req.request.extensions().get::<http::request::Parts>();
                let ticket = parts
                    .and_then(|p| p.extensions.get::<SessionTicket>())
                    .copied();
                let caller = parts.and_then(|p| p.extensions.get::<CallerId>()).copied();
                let requested = match &req.request {
                    ClientRequest::InitializeRequest(init) => {
                        Some(init.params.protocol_version.as_str().to_string())
                    }
                    _ => None,
                };
                (ticket, caller, requested)
            }
            _ => (None, None, None),
        };
        // The guard reserves a slot for every initialize it recognises; one it
        // did not (an unusual spelling of the body) reserves here, and a
        // session nobody may own is not kept.
        let late = match (ticket, caller) {
            (Some(t), _) => Ok((t, None)),
            (None, Some(c)) => self.registry.reserve(c).map(|r| (r.ticket(), Some(r))),
            (None, None) => Err(SessionRefusal::Server(0)),
        };
        let (ticket, _late_reservation) = match late {
            Ok(t) => t,
            Err(refusal) => {
                tracing::warn!(?refusal, "refused a session created past the limits");
                let _ = self.inner.close_session(id).await;
                return Err(LocalSessionManagerError::SessionNotFound(id.clone()));
            }
        };
        let response = self.inner.initialize_session(id, message).await?;
        let version = negotiated_version(&response)
            .or(requested)
            .unwrap_or_default();
        if !self.registry.bind(ticket, id.clone(), primes(&version)) {
            // The reservation is gone (the request was abandoned): end the session.
            let _ = self.inner.close_session(id).await;
            return Err(LocalSessionManagerError::SessionNotFound(id.clone()));
        }
        // The session may have ended while it was being bound.
        if !self.inner.has_session(id).await? {
            self.registry.forget(id);
        }
        Ok(response)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.registry.forget(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let keep_priming = self.registry.primes(id);
        let stream = self.inner.create_stream(id, message).await?;
        Ok(stream.filter(move |m| futures::future::ready(keep_priming || m.message.is_some())))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.inner.create_standalone_stream(id).await?;
        let priming = self
            .registry
            .primes(id)
            .then(|| ServerSseMessage::priming("0", PRIMING_RETRY));
        Ok(futures::stream::iter(priming).chain(stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_caller: usize) -> SessionLimits {
        SessionLimits {
            max_total: total,
            max_per_caller: per_caller,
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn caller_ids_separate_tokens_and_keys() {
        let a = CallerId::new(Some("t"), None);
        assert_eq!(a, CallerId::new(Some("t"), None));
        assert_ne!(a, CallerId::new(Some("t"), Some("k")));
        assert_ne!(a, CallerId::new(Some("u"), None));
        assert_ne!(a, CallerId::new(None, None));
        assert_ne!(
            CallerId::new(Some("tk"), None),
            CallerId::new(Some("t"), Some("k"))
        );
    }

    #[test]
    fn reservations_count_and_release() {
        let r = Arc::new(SessionRegistry::new(limits(3, 2)));
        let a = CallerId::new(Some("a"), None);
        let b = CallerId::new(Some("b"), None);
        let r1 = r.reserve(a).unwrap();
        let r2 = r.reserve(a).unwrap();
        assert_eq!(r.reserve(a).err(), Some(SessionRefusal::Caller(2)));
        let r3 = r.reserve(b).unwrap();
        assert_eq!(r.reserve(b).err(), Some(SessionRefusal::Server(3)));
        // A bound reservation stays counted; a dropped one frees its slot.
        assert!(r.bind(r1.ticket(), "s1".into(), true));
        drop(r1);
        drop(r2);
        assert_eq!(r.counts(a), (2, 1));
        assert_eq!(r.access("s1", a), Access::Owner);
        assert_eq!(r.access("s1", b), Access::Foreign);
        assert_eq!(r.access("s2", a), Access::Unknown);
        r.forget(&"s1".into());
        drop(r3);
        assert_eq!(r.counts(a), (0, 0));
        assert!(r.books().per_caller.is_empty());
    }

    #[test]
    fn a_released_reservation_binds_nothing() {
        let r = Arc::new(SessionRegistry::new(limits(3, 2)));
        let a = CallerId::new(None, None);
        let res = r.reserve(a).unwrap();
        let t = res.ticket();
        drop(res);
        assert!(!r.bind(t, "s".into(), false));
        assert_eq!(r.access("s", a), Access::Unknown);
        assert_eq!(r.live(), 0);
        assert!(r.books().per_caller.is_empty());
    }

    #[test]
    fn priming_starts_with_2025_11_25() {
        assert!(primes("2025-11-25"));
        assert!(primes("2026-07-28"));
        assert!(!primes("2025-06-18"));
        assert!(!primes("2025-03-26"));
        assert!(!primes("2024-11-05"));
        assert!(!primes(""));
        assert_eq!(&priming_bytes()[..], b"data: \nid: 0\nretry: 3000\n\n");
    }
}
