//! The HTTP/1.1 accept loop under `/mcp`: each connection has a header-read
//! timeout and an idle timeout, the number of open connections is capped, and
//! accept errors (such as running out of file descriptors) neither spin nor
//! flood the log.
//!
//! A connection counts as busy from the moment its request head is parsed
//! until its response body is finished or dropped, so a long-lived SSE stream
//! is never idle. Only connections with no request in progress are closed by
//! the idle timeout or replaced at the cap.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body};
use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::settings::ConnectionLimits;

/// File descriptors kept free for everything that is not a client connection
/// (upstream requests, the ledger, downloads, logs).
pub const FD_HEADROOM: u64 = 64;
/// The derived connection cap never exceeds this.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The derived connection cap is never below this.
pub const MIN_CONNECTIONS: usize = 16;
/// Largest buffered request head per connection (hyper answers 431 above
/// it), which bounds the memory a connection can hold before authentication.
const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// At most one log line per kind of connection trouble in this period.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Pause after the operating system refused `accept` for lack of resources.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for a replaced connection to close.
const CLOSE_WAIT: Duration = Duration::from_millis(200);
/// On shutdown, how long a connection may keep a response going after the
/// drain is over before it is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Sent to a connection refused because every open connection is busy.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 47\r\n\r\nThe server has too many open connections; retry";

/// Connection limits with the cap resolved to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// Resolves the cap (from the open-file limit when not configured); the
    /// second value is a warning when a configured cap leaves too few
    /// descriptors for everything else.
    pub fn resolve(limits: &ConnectionLimits) -> (Self, Option<String>) {
        let nofile = open_file_limit();
        let mut warning = None;
        let max_connections = match limits.max_connections {
            Some(n) => {
                if let Some(limit) = nofile
                    && n as u64 > limit.saturating_sub(FD_HEADROOM)
                {
                    warning = Some(format!(
                        "--max-connections {n} leaves fewer than {FD_HEADROOM} of the {limit} \
                         open files this process may have for everything else; raise the limit \
                         (ulimit -n) or lower --max-connections"
                    ));
                }
                n.max(1)
            }
            None => derived_cap(nofile),
        };
        (
            Self {
                header_timeout: limits.header_timeout,
                idle_timeout: limits.idle_timeout,
                max_connections,
            },
            warning,
        )
    }
}

/// min(1024, open-file limit − 64), at least 16; 1024 without a known limit.
pub fn derived_cap(nofile: Option<u64>) -> usize {
    match nofile {
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(FD_HEADROOM)).unwrap_or(usize::MAX);
            room.clamp(MIN_CONNECTIONS, DEFAULT_MAX_CONNECTIONS)
        }
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// The soft limit on open files of this process (`None`: unlimited or unknown).
#[cfg(unix)]
pub fn open_file_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    // `rlim_t` is not u64 on every Unix.
    #[allow(clippy::useless_conversion)]
    u64::try_from(rl.rlim_cur).ok()
}

/// The soft limit on open files of this process (`None`: unlimited or unknown).
#[cfg(not(unix))]
pub fn open_file_limit() -> Option<u64> {
    None
}

/// Whether an accept error means the process or system ran out of resources
/// (descriptors, buffers), as opposed to one failed connection.
fn out_of_resources(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(windows)]
    {
        // WSAEMFILE, WSAENOBUFS
        matches!(e.raw_os_error(), Some(10024 | 10055))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = e;
        false
    }
}

/// Attached to every request: lets the guard mark the connection as one whose
/// caller authenticated (such connections are replaced last at the cap).
#[derive(Clone)]
pub struct ConnMark(Arc<ConnState>);

impl ConnMark {
    pub fn authenticated(&self) {
        self.0.authenticated.store(true, Ordering::Relaxed);
    }
}

struct ConnState {
    id: u64,
    epoch: Instant,
    /// Requests whose head was parsed and whose response is not finished.
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch`, plus one, when the pending request head
    /// began (0: no head pending).
    head_since: AtomicU64,
    /// Milliseconds since `epoch` when the last request finished.
    idle_since: AtomicU64,
    authenticated: AtomicBool,
    /// Wakes the watchdog when a head begins or the last request ends.
    changed: Notify,
    /// Closes the connection now (replaced at the cap).
    close: CancellationToken,
}

impl ConnState {
    fn new(id: u64, epoch: Instant) -> Self {
        let now = ms_since(epoch);
        Self {
            id,
            epoch,
            in_flight: AtomicUsize::new(0),
            // The first request head is due from the connection's start.
            head_since: AtomicU64::new(now + 1),
            idle_since: AtomicU64::new(now),
            authenticated: AtomicBool::new(false),
            changed: Notify::new(),
            close: CancellationToken::new(),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    fn on_bytes_read(&self) {
        if self.idle() && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since
                .store(ms_since(self.epoch) + 1, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn enter(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(0, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// When the connection is to be closed, if nothing happens before then;
    /// `None` while a request is in progress.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if !self.idle() {
            return None;
        }
        let head = self.head_since.load(Ordering::Relaxed);
        let at = if head > 0 {
            self.epoch + Duration::from_millis(head - 1) + limits.header_timeout
        } else {
            self.epoch
                + Duration::from_millis(self.idle_since.load(Ordering::Relaxed))
                + limits.idle_timeout
        };
        // A request may have begun while the times were read.
        self.idle().then_some(at)
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

/// Marks one request in progress on its connection until dropped.
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since.store(ms_since(c.epoch), Ordering::Relaxed);
        if c.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            c.changed.notify_one();
        }
    }
}

/// The socket, noting when bytes of a new request head arrive.
struct Watched {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A response body that keeps its request counted until it is finished.
struct Tracked {
    inner: Body,
    guard: Option<RequestGuard>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            this.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections: those that may be replaced (oldest first) and a
/// count of every connection task still holding its socket, including
/// replaced ones that are still closing.
#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    open: AtomicUsize,
    /// Woken whenever a connection task ends.
    closed: Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn insert(&self, state: Arc<ConnState>) {
        let mut conns = self.lock();
        self.open.fetch_add(1, Ordering::SeqCst);
        conns.insert(state.id, state);
    }

    /// Called when a connection task ends (its socket is closed).
    fn finished(&self, id: u64) {
        self.lock().remove(&id);
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// Whether some replaced connection is still closing.
    fn closing(&self) -> bool {
        self.open() > self.lock().len()
    }

    /// Closes the connection that is cheapest to lose: the oldest one that
    /// never authenticated and has no request in progress, else the one idle
    /// the longest. Returns whether one was closed.
    fn evict_one(&self) -> bool {
        let mut conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| c.idle() && !c.authenticated.load(Ordering::Relaxed))
            .map(|c| c.id)
            .next()
            .or_else(|| {
                conns
                    .values()
                    .filter(|c| c.idle())
                    .min_by_key(|c| c.idle_since.load(Ordering::Relaxed))
                    .map(|c| c.id)
            });
        match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Brings the open connections below `cap`, replacing idle ones and
    /// waiting (briefly) until they have closed, so descriptors stay within
    /// the cap. `false`: every connection is busy.
    async fn make_room(&self, cap: usize) -> bool {
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            let closed = self.closed.notified();
            if self.open() < cap {
                return true;
            }
            if !self.closing() && !self.evict_one() {
                return false;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return self.open() < cap;
            }
        }
    }

    /// Waits (up to `CLOSE_WAIT`) for one connection task to end.
    async fn wait_closed(&self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, self.closed.notified()).await;
    }

    async fn wait_empty(&self) {
        loop {
            let closed = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// At most one log line per `LOG_EVERY`, counting what it left out.
struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the events left
    /// out since the previous line.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets connections finish their responses (up to a short grace),
/// and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let epoch = Instant::now();
    let registry = Arc::new(Registry::default());
    let stop = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // Header and idle timeouts are enforced per connection below.
    http.header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BUFFER);
    let http = Arc::new(http);
    let mut next_id: u64 = 0;
    let mut accept_log = LogLimiter::new();
    let mut cap_log = LogLimiter::new();
    let (mut replaced, mut refused) = (0u64, 0u64);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                let starved = out_of_resources(&e);
                // Out of descriptors: free one by closing an idle connection.
                let freed = starved && registry.evict_one();
                if let Some(left_out) = accept_log.allow(Instant::now()) {
                    tracing::warn!(
                        open = registry.open(),
                        closed_an_idle_connection = freed,
                        "could not accept a connection: {e} ({left_out} more accept errors \
                         since the last report were not logged; at most one report every {} s)",
                        LOG_EVERY.as_secs()
                    );
                }
                // Wait for the freed descriptor; with nothing to free, pause
                // instead of retrying in a tight loop.
                if freed {
                    registry.wait_closed().await;
                } else if starved || !is_connection_error(&e) {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
                continue;
            }
        };
        if registry.open() >= limits.max_connections {
            let admitted = registry.make_room(limits.max_connections).await;
            if admitted {
                replaced += 1;
            } else {
                refused += 1;
            }
            if cap_log.allow(Instant::now()).is_some() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached: {replaced} idle connections closed to make room \
                     and {refused} new connections refused (every connection busy) since the last report \
                     (at most one every {} s); raise --max-connections or the open-file limit \
                     if these callers are real",
                    LOG_EVERY.as_secs()
                );
                (replaced, refused) = (0, 0);
            }
            if !admitted {
                // Every connection is busy with a request: refuse this one.
                let _ = tcp.try_write(BUSY_RESPONSE);
                continue;
            }
        }
        // Small JSON answers and SSE events must not wait for Nagle's
        // algorithm (a 40 ms stall per response against a delayed ACK).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
        next_id += 1;
        let state = Arc::new(ConnState::new(next_id, epoch));
        registry.insert(state.clone());
        let registry = registry.clone();
        let router = router.clone();
        let http = http.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _finished = Finished(registry, state.id);
            serve_one(tcp, state, router, &http, limits, stop).await;
        });
    }
    drop(listener);
    stop.cancel();
    registry.wait_empty().await;
}

/// Takes a connection off the registry when its task ends, however it ends.
struct Finished(Arc<Registry>, u64);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finished(self.1);
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One connection: hyper's HTTP/1.1 state machine plus a watchdog for the
/// header-read and idle timeouts, replacement at the cap and shutdown.
async fn serve_one(
    tcp: TcpStream,
    state: Arc<ConnState>,
    router: Router,
    http: &hyper::server::conn::http1::Builder,
    limits: Limits,
    stop: CancellationToken,
) {
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let guard = svc_state.enter();
        req.extensions_mut().insert(ConnMark(svc_state.clone()));
        let mut router = router.clone();
        async move {
            let response = match router.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|inner| Tracked {
                inner,
                guard: Some(guard),
            }))
        }
    });
    let io = TokioIo::new(Watched {
        io: tcp,
        state: state.clone(),
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut grace_end: Option<Instant> = None;
    loop {
        // While a request runs there is no deadline; the watchdog is woken
        // when it ends.
        let deadline = match (state.deadline(&limits), grace_end) {
            (Some(d), Some(g)) => Some(d.min(g)),
            (d, g) => d.or(g),
        };
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended with an error: {e}");
                }
                return;
            }
            () = state.close.cancelled() => {
                tracing::debug!("closed an idle connection to make room for a new one");
                return;
            }
            () = stop.cancelled(), if grace_end.is_none() => {
                if state.idle() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                grace_end = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            () = state.changed.notified() => {}
            () = timer => {
                let now = Instant::now();
                if grace_end.is_some_and(|g| now >= g) {
                    return;
                }
                if state.deadline(&limits).is_some_and(|d| now >= d) {
                    tracing::debug!(
                        "closed a connection that sent no complete request in time or sat idle"
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_leaves_headroom_and_stays_within_bounds() {
        assert_eq!(derived_cap(Some(256)), 192);
        assert_eq!(derived_cap(Some(1024)), 960);
        assert_eq!(derived_cap(Some(1_048_576)), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(derived_cap(Some(40)), MIN_CONNECTIONS);
        assert_eq!(derived_cap(None), DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn a_configured_cap_is_kept_and_an_oversized_one_warned_about() {
        let (l, _) = Limits::resolve(&ConnectionLimits {
            max_connections: Some(7),
            ..ConnectionLimits::default()
        });
        assert_eq!(l.max_connections, 7);
        if open_file_limit().is_some() {
            let (_, w) = Limits::resolve(&ConnectionLimits {
                max_connections: Some(usize::MAX),
                ..ConnectionLimits::default()
            });
            assert!(w.is_some_and(|w| w.contains("ulimit")));
        }
    }

    #[test]
    fn the_log_limiter_counts_what_it_leaves_out() {
        let mut l = LogLimiter::new();
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        for _ in 0..99 {
            assert_eq!(l.allow(t + Duration::from_secs(1)), None);
        }
        assert_eq!(l.allow(t + LOG_EVERY), Some(99));
        assert_eq!(l.allow(t + LOG_EVERY), None);
    }

    #[tokio::test]
    async fn replacement_prefers_idle_unauthenticated_connections() {
        let epoch = Instant::now();
        let reg = Registry::default();
        let busy = Arc::new(ConnState::new(1, epoch));
        let authed = Arc::new(ConnState::new(2, epoch));
        let anon = Arc::new(ConnState::new(3, epoch));
        for c in [&busy, &authed, &anon] {
            reg.insert(c.clone());
        }
        let _req = busy.enter();
        authed.authenticated.store(true, Ordering::Relaxed);
        assert!(reg.evict_one());
        assert!(anon.close.is_cancelled() && !authed.close.is_cancelled());
        assert!(reg.evict_one());
        assert!(authed.close.is_cancelled());
        // Only the busy one is left: nothing can be replaced.
        assert!(!reg.evict_one());
        assert!(!busy.close.is_cancelled());
    }

    #[test]
    fn a_connection_has_no_deadline_while_a_request_runs() {
        let limits = Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        };
        let epoch = Instant::now();
        let c = Arc::new(ConnState::new(1, epoch));
        // A new connection owes its first head within the header timeout.
        let first = c.deadline(&limits).unwrap();
        assert!(first <= epoch + Duration::from_millis(1100));
        let req = c.enter();
        assert!(c.deadline(&limits).is_none());
        drop(req);
        // Between requests the idle timeout applies...
        assert!(c.deadline(&limits).unwrap() >= epoch + Duration::from_secs(59));
        // ...until bytes of the next head arrive.
        c.on_bytes_read();
        assert!(c.deadline(&limits).unwrap() <= Instant::now() + Duration::from_secs(1));
    }
}
