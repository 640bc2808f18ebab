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
//! With a shared store ([`SharedSessions`], the PostgreSQL ledger's
//! database) the store is the truth and each replica's sessions are a cache:
//! an `initialize` takes its slot in the store (the caps count every
//! replica's sessions), every request naming a session marks it used there
//! and is refused (404) unless the store has it live and owned by this
//! caller, a DELETE ends it there, and a replica that does not hold the
//! session in memory replays its handshake from the store (rmcp's
//! [`SessionStore`] seam). A session gone from the store (deleted on another
//! replica, or idle everywhere) is closed here too: when it is next named,
//! and by a sweep every [`SWEEP_EVERY`]. When the store cannot be reached,
//! session requests are refused with 503 (bounded by the store's timeouts).
//!
//! The SSE priming event (an event with an id, a retry hint and empty data)
//! exists from 2025-11-25 on; older clients parse its empty data as JSON and
//! fail. rmcp's own priming of the initialize response and of the GET stream is
//! therefore turned off, and this layer adds it back (or strips the per-request
//! one) by the session's negotiated revision.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
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
            RestoreOutcome, ServerSseMessage, SessionId, SessionManager, SessionRestoreMarker,
            local::{LocalSessionManager, LocalSessionManagerError, LocalSessionWorker},
            store::{SessionState, SessionStore, SessionStoreError},
        },
    },
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{
    ledger::{
        LedgerError, SharedSessions,
        sessions::{Binding as StoredBinding, Reserved, SessionCaps},
    },
    transport::settings::SessionLimits,
};

/// How often a replica closes the sessions it holds that the shared store
/// no longer has (deleted on another replica, or expired).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

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

    /// The hash as hex: how the shared store names a session's owner.
    pub(crate) fn owner(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
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
    /// The shared session store cannot be reached.
    Unavailable,
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

/// A reservation not yet turned into a session.
#[derive(Debug, Clone)]
struct Pending {
    caller: CallerId,
    /// Its key in the shared store, if there is one.
    stored: Option<String>,
}

#[derive(Debug, Default)]
struct Books {
    live: HashMap<SessionId, Binding>,
    next_call: u64,
    /// Reservations not yet turned into sessions, by ticket.
    pending: HashMap<u64, Pending>,
    /// Tickets whose handshake could not be recorded in the shared store.
    failed: HashSet<u64>,
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

/// Live sessions, their owners and the caps. With a shared store the caps
/// are counted there; the books then hold this replica's sessions only.
#[derive(Debug)]
pub struct SessionRegistry {
    limits: SessionLimits,
    books: Mutex<Books>,
    shared: Option<Arc<dyn SharedSessions>>,
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
            shared: None,
        }
    }

    /// Sessions kept in `store`, shared with every replica using it.
    pub fn shared(limits: SessionLimits, store: Arc<dyn SharedSessions>) -> Self {
        Self {
            shared: Some(store),
            ..Self::new(limits)
        }
    }

    pub fn store(&self) -> Option<&Arc<dyn SharedSessions>> {
        self.shared.as_ref()
    }

    fn caps(&self) -> SessionCaps {
        SessionCaps {
            max_total: self.limits.max_total,
            max_per_caller: self.limits.max_per_caller,
            idle: self.limits.idle_timeout,
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

    /// Reserves a slot for a new session of `caller`: in the shared store
    /// when there is one, else in this process.
    pub(crate) async fn reserve_slot(
        self: &Arc<Self>,
        caller: CallerId,
    ) -> Result<Reservation, SessionRefusal> {
        let Some(store) = &self.shared else {
            return self.reserve(caller);
        };
        match store.reserve(&caller.owner(), self.caps()).await {
            Ok(Reserved::Slot(key)) => Ok(self.hold(caller, Some(key))),
            Ok(Reserved::ServerFull(limit)) => Err(SessionRefusal::Server(limit)),
            Ok(Reserved::CallerFull(limit)) => Err(SessionRefusal::Caller(limit)),
            Err(e) => {
                warn_unavailable(&e);
                Err(SessionRefusal::Unavailable)
            }
        }
    }

    /// A reservation without a cap check (the shared store made it).
    fn hold(self: &Arc<Self>, caller: CallerId, stored: Option<String>) -> Reservation {
        let mut b = self.books();
        self.hold_in(&mut b, caller, stored)
    }

    fn hold_in(
        self: &Arc<Self>,
        b: &mut Books,
        caller: CallerId,
        stored: Option<String>,
    ) -> Reservation {
        let ticket = b.next_ticket;
        b.next_ticket = b.next_ticket.wrapping_add(1);
        b.pending.insert(ticket, Pending { caller, stored });
        *b.per_caller.entry(caller).or_insert(0) += 1;
        Reservation {
            registry: self.clone(),
            ticket: SessionTicket(ticket),
        }
    }

    /// Reserves a slot for a new session of `caller` in this process.
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
        Ok(self.hold_in(&mut b, caller, None))
    }

    /// The reservation behind `ticket`, if it is still held.
    fn pending(&self, ticket: SessionTicket) -> Option<Pending> {
        self.books().pending.get(&ticket.0).cloned()
    }

    /// Notes that the handshake of `ticket` could not be recorded in the
    /// shared store (the guard then answers 503).
    fn mark_failed(&self, ticket: SessionTicket) {
        self.books().failed.insert(ticket.0);
    }

    /// Whether the handshake of `ticket` could not be recorded.
    pub(crate) fn take_failed(&self, ticket: SessionTicket) -> bool {
        self.books().failed.remove(&ticket.0)
    }

    /// Binds session `id`, which the shared store says is `owner`'s, in this
    /// replica's books (a session restored from the store).
    fn adopt(&self, id: &SessionId, owner: CallerId, primes: bool) {
        let mut b = self.books();
        if b.live.contains_key(id) {
            return;
        }
        b.live.insert(
            id.clone(),
            Binding {
                owner,
                primes,
                calls: HashMap::new(),
            },
        );
        *b.per_caller.entry(owner).or_insert(0) += 1;
    }

    /// The ids of the sessions bound here.
    fn live_ids(&self) -> Vec<String> {
        self.books().live.keys().map(|id| id.to_string()).collect()
    }

    /// Turns a reservation into the binding of session `id`; false (and
    /// nothing bound) when there is no valid reservation.
    fn bind(&self, ticket: SessionTicket, id: SessionId, primes: bool) -> bool {
        let mut b = self.books();
        let Some(Pending { caller: owner, .. }) = b.pending.remove(&ticket.0) else {
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
        b.failed.remove(&ticket.0);
        let Some(pending) = b.pending.remove(&ticket.0) else {
            return;
        };
        b.uncount(pending.caller);
        drop(b);
        if let (Some(store), Some(key)) = (&self.shared, pending.stored) {
            // Issued now; a store that is down lets the slot lapse instead.
            drop(store.release(&key));
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

/// What the guard does with a request naming a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Let it through (rmcp still answers 404 for a session it does not know).
    Pass,
    /// Answer 404: the session is another caller's, or gone.
    NotFound,
}

/// The shared session store could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreDown;

fn warn_unavailable(e: &LedgerError) {
    tracing::warn!("the shared session store cannot be used: {e}");
}

impl BoundSessionManager {
    pub fn new(registry: Arc<SessionRegistry>) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(registry.limits().idle_timeout);
        inner.session_config.sse_retry = Some(PRIMING_RETRY);
        Self { inner, registry }
    }

    /// rmcp's seam to the shared store, when there is one.
    pub fn session_store(&self) -> Option<Arc<dyn SessionStore>> {
        self.registry
            .store()
            .map(|s| Arc::new(SharedSessionStore(s.clone())) as Arc<dyn SessionStore>)
    }

    /// Decides on a request of `caller` naming session `id` (`ending`: a
    /// DELETE). With a shared store the store decides, the session is marked
    /// used there (or ended, for a DELETE), and this replica adopts it.
    pub(crate) async fn admit(
        &self,
        id: &str,
        caller: CallerId,
        ending: bool,
    ) -> Result<Admission, StoreDown> {
        let Some(store) = self.registry.store() else {
            return Ok(match self.registry.access(id, caller) {
                Access::Owner => Admission::Pass,
                Access::Foreign => Admission::NotFound,
                Access::Unknown if ending => Admission::NotFound,
                Access::Unknown => Admission::Pass,
            });
        };
        let sid: SessionId = id.into();
        let owner = caller.owner();
        if ending {
            return match store.end(id, Some(&owner)).await {
                Ok(true) => Ok(Admission::Pass),
                Ok(false) => {
                    if self.registry.access(id, caller) != Access::Foreign {
                        self.close_here(&sid).await;
                    }
                    Ok(Admission::NotFound)
                }
                Err(e) => {
                    warn_unavailable(&e);
                    Err(StoreDown)
                }
            };
        }
        match store
            .touch(id, &owner, self.registry.limits().idle_timeout)
            .await
        {
            Ok(Some(version)) => {
                self.registry.adopt(&sid, caller, primes(&version));
                Ok(Admission::Pass)
            }
            Ok(None) => {
                // Gone from the store: a copy here (not another caller's
                // request for it) ends as well.
                if self.registry.access(id, caller) != Access::Foreign {
                    self.close_here(&sid).await;
                }
                Ok(Admission::NotFound)
            }
            Err(e) => {
                warn_unavailable(&e);
                Err(StoreDown)
            }
        }
    }

    /// Closes this replica's copy of session `id`, if it has one.
    async fn close_here(&self, id: &SessionId) {
        self.registry.forget(id);
        if let Err(e) = self.inner.close_session(id).await {
            tracing::debug!("closing a session gone from the shared store: {e}");
        }
    }

    /// Closes the sessions held here that the shared store no longer has.
    pub async fn sweep(&self) {
        let Some(store) = self.registry.store() else {
            return;
        };
        let here = self.registry.live_ids();
        if here.is_empty() {
            return;
        }
        match store.live_of(here.clone()).await {
            Ok(live) => {
                let live: HashSet<String> = live.into_iter().collect();
                for id in here.into_iter().filter(|id| !live.contains(id)) {
                    self.close_here(&id.into()).await;
                }
            }
            Err(e) => tracing::debug!("the session sweep could not reach the store: {e}"),
        }
    }

    /// Runs [`Self::sweep`] every [`SWEEP_EVERY`] until `stop` fires or the
    /// manager is dropped (only with a shared store).
    pub fn spawn_sweep(self: &Arc<Self>, stop: CancellationToken) {
        if self.registry.store().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let manager: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                let Some(m) = manager.upgrade() else {
                    return;
                };
                m.sweep().await;
            }
        });
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
        let mut restored = false;
        let (ticket, caller, requested, params) = match &message {
            ClientJsonRpcMessage::Request(req) => {
                restored = req
                    .request
                    .extensions()
                    .get::<SessionRestoreMarker>()
                    .is_some();
                let parts = req.request.extensions().get::<http::request::Parts>();
                let ticket = parts
                    .and_then(|p| p.extensions.get::<SessionTicket>())
                    .copied();
                let caller = parts.and_then(|p| p.extensions.get::<CallerId>()).copied();
                let (requested, params) = match &req.request {
                    ClientRequest::InitializeRequest(init) => (
                        Some(init.params.protocol_version.as_str().to_string()),
                        serde_json::to_string(&init.params).ok(),
                    ),
                    _ => (None, None),
                };
                (ticket, caller, requested, params)
            }
            _ => (None, None, None, None),
        };
        // A handshake replayed from the shared store: the session exists
        // there already (the guard checked its owner); only this replica's
        // copy is new.
        if restored {
            let response = self.inner.initialize_session(id, message).await?;
            if let Some(owner) = caller {
                let version = negotiated_version(&response)
                    .or(requested)
                    .unwrap_or_default();
                self.registry.adopt(id, owner, primes(&version));
            }
            return Ok(response);
        }
        // The guard reserves a slot for every initialize it recognises; one it
        // did not (an unusual spelling of the body) reserves here, and a
        // session nobody may own is not kept.
        let late = match (ticket, caller) {
            (Some(t), _) => Ok((t, None)),
            (None, Some(c)) => self
                .registry
                .reserve_slot(c)
                .await
                .map(|r| (r.ticket(), Some(r))),
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
        let stored = self.registry.pending(ticket).and_then(|p| p.stored);
        let response = self.inner.initialize_session(id, message).await?;
        let version = negotiated_version(&response)
            .or(requested)
            .unwrap_or_default();
        if let (Some(store), Some(reservation)) = (self.registry.store(), stored) {
            let binding = StoredBinding {
                reservation,
                session_id: id.to_string(),
                version: version.clone(),
                init_params: params.unwrap_or_default(),
                idle: self.registry.limits().idle_timeout,
            };
            let recorded = match store.bind(binding).await {
                Ok(true) => true,
                Ok(false) => {
                    tracing::warn!("a session's reservation lapsed before its handshake ended");
                    false
                }
                Err(e) => {
                    warn_unavailable(&e);
                    self.registry.mark_failed(ticket);
                    false
                }
            };
            if !recorded {
                let _ = self.inner.close_session(id).await;
                return Err(LocalSessionManagerError::SessionNotFound(id.clone()));
            }
        }
        if !self.registry.bind(ticket, id.clone(), primes(&version)) {
            // The reservation is gone (the request was abandoned): end the session.
            let _ = self.inner.close_session(id).await;
            if let Some(store) = self.registry.store() {
                drop(store.end(id, None));
            }
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

    /// Ends this replica's copy (a DELETE, idle expiry here, failure,
    /// shutdown). A DELETE also ends the session in the shared store: the
    /// guard did, and rmcp does through [`SessionStore::delete`].
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.registry.forget(id);
        self.inner.close_session(id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        if self.registry.store().is_none() {
            return Ok(RestoreOutcome::NotSupported);
        }
        self.inner.restore_session(id).await
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

/// rmcp's [`SessionStore`] on the shared store: a replica that does not hold
/// a session loads its `initialize` parameters to replay the handshake, and
/// a DELETE removes it.
#[derive(Debug)]
pub struct SharedSessionStore(Arc<dyn SharedSessions>);

fn store_error(e: LedgerError) -> SessionStoreError {
    Box::new(e)
}

#[async_trait::async_trait]
impl SessionStore for SharedSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let Some(params) = self.0.load(session_id).await.map_err(store_error)? else {
            return Ok(None);
        };
        let params = serde_json::from_str(&params).map_err(|e| {
            SessionStoreError::from(format!("a stored session's parameters do not parse: {e}"))
        })?;
        Ok(Some(SessionState::new(params)))
    }

    /// The session's row, parameters included, is written when its
    /// handshake is bound ([`BoundSessionManager::initialize_session`]),
    /// before rmcp calls this: nothing is left to store.
    async fn store(
        &self,
        _session_id: &str,
        _state: &SessionState,
    ) -> Result<(), SessionStoreError> {
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.0
            .end(session_id, None)
            .await
            .map(|_| ())
            .map_err(store_error)
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
    fn owners_are_hex_hashes_and_adopted_sessions_count_once() {
        let a = CallerId::new(Some("token-of-alice"), None);
        let owner = a.owner();
        assert_eq!(owner.len(), 64);
        assert!(owner.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!owner.contains("alice"));
        let r = Arc::new(SessionRegistry::new(limits(3, 2)));
        r.adopt(&"s".into(), a, true);
        r.adopt(&"s".into(), a, false);
        assert_eq!(r.access("s", a), Access::Owner);
        assert!(r.primes("s"), "the first adoption stands");
        assert_eq!(r.counts(a), (1, 1));
        assert_eq!(r.live_ids(), vec!["s".to_string()]);
        r.forget(&"s".into());
        assert_eq!(r.counts(a), (0, 0));
    }

    #[test]
    fn a_failed_handshake_is_reported_once_and_cleared_with_its_reservation() {
        let r = Arc::new(SessionRegistry::new(limits(3, 2)));
        let res = r.reserve(CallerId::new(None, None)).unwrap();
        r.mark_failed(res.ticket());
        assert!(r.take_failed(res.ticket()));
        assert!(!r.take_failed(res.ticket()));
        r.mark_failed(res.ticket());
        let t = res.ticket();
        drop(res);
        assert!(!r.take_failed(t));
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
