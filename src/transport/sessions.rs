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
//! Each session also knows the JSON-RPC ids of its requests in flight. rmcp's
//! session worker and service route answers by request id, so a second
//! request reusing the id of one not yet answered would take the first one's
//! answer and leave the first stream empty. The guard takes a [`CallLease`]
//! for every request before it reaches rmcp and refuses a duplicate at once;
//! the lease travels to [`BoundSessionManager::create_stream`], which holds it
//! until the session has routed the request's answer. A client that goes away
//! does not stop its call (rmcp keeps running it, and the answer can still be
//! resumed with `Last-Event-ID`), so a dropped stream is read to its answer in
//! the background before the id is free again. Ids end with their session.
//!
//! The SSE priming event (an event with an id, a retry hint and empty data)
//! exists from 2025-11-25 on; older clients parse its empty data as JSON and
//! fail. rmcp's own priming of the initialize response and of the GET stream is
//! therefore turned off, and this layer adds it back (or strips the per-request
//! one) by the session's negotiated revision.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt};
use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientRequest, GetExtensions, JsonRpcMessage, RequestId,
        ServerJsonRpcMessage,
    },
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

/// Why a request is refused before it reaches the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallRefusal {
    /// A request with the same id is in flight in this session.
    Duplicate,
    /// The session holds its maximum of requests in flight.
    Full(usize),
}

#[derive(Debug, Clone)]
struct Binding {
    owner: CallerId,
    primes: bool,
    /// Ids of the requests in flight, each with the serial of its lease.
    calls: HashMap<RequestId, u64>,
}

#[derive(Debug, Default)]
struct Books {
    live: HashMap<SessionId, Binding>,
    next_call: u64,
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
        let binding = Binding {
            owner,
            primes,
            calls: HashMap::new(),
        };
        if let Some(old) = b.live.insert(id, binding) {
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

    /// Marks request `request` of session `session` in flight; `None` when
    /// the session is not live (rmcp answers that request with 404). At most
    /// `limit` requests of one session are in flight: each holds one of the
    /// server's concurrency slots while its client waits, and one whose
    /// client went away stays until it is answered.
    pub(crate) fn begin_call(
        self: &Arc<Self>,
        session: &str,
        request: RequestId,
        limit: usize,
    ) -> Result<Option<CallLease>, CallRefusal> {
        let mut b = self.books();
        let serial = b.next_call;
        let Some(binding) = b.live.get_mut(session) else {
            return Ok(None);
        };
        if binding.calls.contains_key(&request) {
            return Err(CallRefusal::Duplicate);
        }
        if binding.calls.len() >= limit {
            return Err(CallRefusal::Full(limit));
        }
        binding.calls.insert(request.clone(), serial);
        b.next_call = serial.wrapping_add(1);
        Ok(Some(CallLease {
            registry: self.clone(),
            session: session.into(),
            request,
            serial,
        }))
    }

    fn end_call(&self, session: &SessionId, request: &RequestId, serial: u64) {
        let mut b = self.books();
        if let Some(binding) = b.live.get_mut(session)
            && binding.calls.get(request) == Some(&serial)
        {
            binding.calls.remove(request);
        }
    }

    /// Requests in flight in session `id`.
    #[cfg(test)]
    fn calls(&self, id: &str) -> Option<usize> {
        self.books().live.get(id).map(|b| b.calls.len())
    }
}

/// A request id in flight in a session; free again on drop.
#[derive(Debug)]
pub(crate) struct CallLease {
    registry: Arc<SessionRegistry>,
    session: SessionId,
    request: RequestId,
    serial: u64,
}

impl CallLease {
    /// Whether `message` is this request's answer.
    fn answered_by(&self, message: &ServerJsonRpcMessage) -> bool {
        match message {
            JsonRpcMessage::Response(r) => r.id == self.request,
            JsonRpcMessage::Error(e) => e.id.as_ref() == Some(&self.request),
            _ => false,
        }
    }
}

impl Drop for CallLease {
    fn drop(&mut self) {
        self.registry
            .end_call(&self.session, &self.request, self.serial);
    }
}

/// Carries a [`CallLease`] from the guard to
/// [`BoundSessionManager::create_stream`] in the HTTP request's extensions;
/// whoever holds the lease last (the guard when the request never reaches a
/// stream) frees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallSlot(Arc<Mutex<Option<CallLease>>>);

impl CallSlot {
    pub(crate) fn new(lease: CallLease) -> Self {
        Self(Arc::new(Mutex::new(Some(lease))))
    }

    pub(crate) fn take(&self) -> Option<CallLease> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A request's answer stream that frees the request's id once the session has
/// routed the answer (or the stream ended: the session closed or the client
/// cancelled the request). Dropped before that (the client went away, or the
/// request timeout cut the response), it reads the rest in the background.
struct Answering {
    inner: Option<Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>>,
    lease: Option<CallLease>,
}

impl Stream for Answering {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let next = inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(m)) => {
                if m.message
                    .as_deref()
                    .is_some_and(|msg| this.lease.as_ref().is_some_and(|l| l.answered_by(msg)))
                {
                    this.lease = None;
                }
            }
            Poll::Ready(None) => {
                this.lease = None;
                this.inner = None;
            }
            Poll::Pending => {}
        }
        next
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let (Some(mut inner), Some(lease)) = (self.inner.take(), self.lease.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(
            request = %lease.request,
            "an answer stream closed early; reading the request's answer in the background"
        );
        // The session ends the stream once it routed the answer, or when the
        // session itself ends, so this task is bounded by the session's life.
        runtime.spawn(async move {
            while let Some(m) = inner.next().await {
                if m.message
                    .as_deref()
                    .is_some_and(|msg| lease.answered_by(msg))
                {
                    break;
                }
            }
            drop(lease);
        });
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
        let lease = match &message {
            ClientJsonRpcMessage::Request(req) => req
                .request
                .extensions()
                .get::<http::request::Parts>()
                .and_then(|p| p.extensions.get::<CallSlot>())
                .and_then(CallSlot::take)
                .filter(|l| l.request == req.id),
            _ => None,
        };
        let stream = self.inner.create_stream(id, message).await?;
        let stream =
            stream.filter(move |m| futures::future::ready(keep_priming || m.message.is_some()));
        Ok(Answering {
            inner: Some(Box::pin(stream)),
            lease,
        })
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

    fn bound(r: &Arc<SessionRegistry>, session: &str) {
        let res = r.reserve(CallerId::new(None, None)).unwrap();
        assert!(r.bind(res.ticket(), session.into(), true));
    }

    fn num(n: i64) -> RequestId {
        RequestId::Number(n)
    }

    #[test]
    fn call_ids_are_per_session_bounded_and_freed() {
        let r = Arc::new(SessionRegistry::new(limits(4, 4)));
        bound(&r, "s1");
        bound(&r, "s2");
        let a = r.begin_call("s1", num(7), 2).unwrap().unwrap();
        assert_eq!(
            r.begin_call("s1", num(7), 2).err(),
            Some(CallRefusal::Duplicate)
        );
        // Another session, and a string id spelling the same digits, are other ids.
        let b = r.begin_call("s2", num(7), 2).unwrap().unwrap();
        let c = r
            .begin_call("s1", RequestId::String("7".into()), 2)
            .unwrap()
            .unwrap();
        assert_eq!(
            r.begin_call("s1", num(8), 2).err(),
            Some(CallRefusal::Full(2))
        );
        // An unknown session has no ids to track (rmcp answers 404).
        assert!(r.begin_call("nope", num(7), 2).unwrap().is_none());
        drop(a);
        assert_eq!(r.calls("s1"), Some(1));
        let again = r.begin_call("s1", num(7), 2).unwrap().unwrap();
        drop((again, c));
        assert_eq!(r.calls("s1"), Some(0));
        // A session's ids end with it; a lease dropped later changes nothing.
        r.forget(&"s2".into());
        drop(b);
        assert_eq!(r.calls("s2"), None);
        assert_eq!(r.calls("s1"), Some(0));
    }

    fn answer(id: i64) -> ServerSseMessage {
        ServerSseMessage::from_message(ServerJsonRpcMessage::response(
            rmcp::model::ServerResult::empty(()),
            num(id),
        ))
    }

    fn answering(
        r: &Arc<SessionRegistry>,
        id: i64,
    ) -> (
        Answering,
        futures::channel::mpsc::UnboundedSender<ServerSseMessage>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let lease = r.begin_call("s", num(id), 8).unwrap();
        let stream = Answering {
            inner: Some(Box::pin(rx)),
            lease,
        };
        (stream, tx)
    }

    #[tokio::test]
    async fn an_answer_stream_frees_its_id_at_the_answer_or_its_end() {
        let r = Arc::new(SessionRegistry::new(limits(4, 4)));
        bound(&r, "s");
        let (mut s, tx) = answering(&r, 1);
        tx.unbounded_send(ServerSseMessage::priming("0", PRIMING_RETRY))
            .unwrap();
        tx.unbounded_send(answer(2)).unwrap();
        s.next().await.unwrap();
        s.next().await.unwrap();
        assert_eq!(r.calls("s"), Some(1), "another id's answer frees nothing");
        tx.unbounded_send(answer(1)).unwrap();
        s.next().await.unwrap();
        assert_eq!(r.calls("s"), Some(0), "freed by its answer");

        // A stream that ends without the answer (session closed, request
        // cancelled) frees its id too.
        let (mut s, tx) = answering(&r, 3);
        drop(tx);
        assert!(s.next().await.is_none());
        assert_eq!(r.calls("s"), Some(0));
    }

    #[tokio::test]
    async fn a_dropped_answer_stream_frees_its_id_once_answered() {
        let r = Arc::new(SessionRegistry::new(limits(4, 4)));
        bound(&r, "s");
        let (s, tx) = answering(&r, 5);
        drop(s);
        tokio::task::yield_now().await;
        assert_eq!(r.calls("s"), Some(1), "still running: the id stays taken");
        tx.unbounded_send(answer(5)).unwrap();
        for _ in 0..100 {
            if r.calls("s") == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(r.calls("s"), Some(0), "freed once answered");
        // The background reader stopped at the answer.
        assert!(tx.is_closed());
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
