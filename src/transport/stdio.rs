//! MCP over stdio: stdout carries only JSON-RPC, logs go to stderr.
//!
//! The transport bounds the work a client can queue: at most
//! [`MAX_IN_FLIGHT`] requests are being handled or have an answer waiting to
//! be written, and while that many are, no further input is read (the client's
//! writes then block on the full pipe instead of the server's memory growing).
//! Every request gets exactly one answer: a request reusing the id of a request
//! still in flight is refused with a JSON-RPC error (rmcp would otherwise
//! answer only one of the two).

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
};

use rmcp::{
    RoleServer, ServiceExt,
    model::{ClientNotification, ErrorData, JsonRpcMessage, JsonRpcNotification, RequestId},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::tools::VideoServer;

/// Longest incoming line (one JSON-RPC message) accepted on stdin. Real
/// messages are a few KiB (a prompt is at most 10,000 characters); a longer
/// line is dropped with a log line and the session goes on. rmcp's default
/// is 16 MiB, which lets one bad line hold that much memory for good.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Most requests in flight at once on stdio: received and not yet answered,
/// or answered with the answer not yet written to stdout (outgoing
/// notifications still being written count too). While this many are, stdin
/// is not read, so a client that writes without reading its answers is held
/// back by the pipe instead of growing the server.
pub const MAX_IN_FLIGHT: usize = 64;

/// Serves one client on stdin/stdout until it closes stdin or `stop` fires.
pub async fn serve(server: VideoServer, stop: CancellationToken) -> Result<(), String> {
    // When the client launched us with pipes (as MCP clients do), read and
    // write them through the runtime's reactor instead of handing every read
    // and write to a blocking thread; otherwise fall back to plain stdio.
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let transport = Bounded::new(
        AsyncRwTransport::new_server(stdin, stdout).with_max_line_length(MAX_LINE_BYTES),
        MAX_IN_FLIGHT,
    );
    let running = server
        .serve(transport)
        .await
        .map_err(|e| format!("the MCP session could not start: {e}"))?;
    let ct = running.cancellation_token();
    tokio::select! {
        r = running.waiting() => {
            r.map_err(|e| format!("the MCP session ended with an error: {e}"))?;
        }
        _ = stop.cancelled() => {
            ct.cancel();
        }
    }
    Ok(())
}

/// What the reader and the writers share.
#[derive(Debug, Default)]
struct Ledger {
    state: Mutex<Counts>,
    /// Signalled whenever a slot frees up.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Counts {
    /// Ids of requests passed to the service and not answered yet.
    requests: HashSet<RequestId>,
    /// Outgoing messages handed to the writer and not fully written yet.
    writes: usize,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load(&self) -> usize {
        let c = self.lock();
        c.requests.len() + c.writes
    }
}

/// Counts one outgoing message until its write ends (or is abandoned).
struct WriteSlot(Arc<Ledger>);

impl Drop for WriteSlot {
    fn drop(&mut self) {
        {
            let mut c = self.0.lock();
            c.writes = c.writes.saturating_sub(1);
        }
        self.0.freed.notify_one();
    }
}

type Reply = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server transport that reads no further message while `limit` requests
/// are in flight (see [`MAX_IN_FLIGHT`]) and refuses a request whose id is
/// already in flight. `send` completes only once the message is written.
pub struct Bounded<T> {
    inner: T,
    limit: usize,
    ledger: Arc<Ledger>,
    /// An error answer of our own, written before anything more is read.
    /// Kept here so a cancelled `receive` resumes it instead of losing it.
    reply: Option<Reply>,
}

impl<T: Transport<RoleServer>> Bounded<T> {
    pub fn new(inner: T, limit: usize) -> Self {
        Self {
            inner,
            limit: limit.max(1),
            ledger: Arc::default(),
            reply: None,
        }
    }

    /// Writes `item` through the inner transport, counted as a pending write
    /// until the returned future ends or is dropped.
    fn write(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> Pin<Box<dyn Future<Output = Result<(), T::Error>> + Send + 'static>> {
        self.ledger.lock().writes += 1;
        let slot = WriteSlot(self.ledger.clone());
        let send = self.inner.send(item);
        Box::pin(async move {
            let r = send.await;
            drop(slot);
            r
        })
    }
}

/// Waits until fewer than `limit` requests and writes are pending.
async fn admitted(ledger: &Ledger, limit: usize) {
    loop {
        if ledger.load() < limit {
            return;
        }
        // A slot freed between the check and here leaves a permit, so this
        // wakes up at once and checks again.
        ledger.freed.notified().await;
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for Bounded<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let answered = match &item {
            JsonRpcMessage::Response(r) => Some(r.id.clone()),
            JsonRpcMessage::Error(e) => e.id.clone(),
            _ => None,
        };
        // Counted as a write before the request stops counting, so the load
        // only drops once the answer has left.
        let send = self.write(item);
        if let Some(id) = answered {
            self.ledger.lock().requests.remove(&id);
        }
        send
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if let Some(reply) = self.reply.as_mut() {
                reply.await;
                self.reply = None;
            }
            let ledger = self.ledger.clone();
            admitted(&ledger, self.limit).await;
            let msg = self.inner.receive().await?;
            match &msg {
                JsonRpcMessage::Request(r) => {
                    let fresh = self.ledger.lock().requests.insert(r.id.clone());
                    if fresh {
                        return Some(msg);
                    }
                    let id = r.id.clone();
                    tracing::warn!(%id, "refused a request whose id is already in flight");
                    let error = ErrorData::invalid_request(
                        format!(
                            "a request with id {} is already in flight; wait for its answer \
                             or send this request with an id of its own",
                            serde_json::to_string(&id).unwrap_or_else(|_| id.to_string())
                        ),
                        None,
                    );
                    let write = self.write(JsonRpcMessage::error(error, Some(id)));
                    self.reply = Some(Box::pin(async move {
                        if let Err(e) = write.await {
                            tracing::error!(error = %e, "could not write an error answer");
                        }
                    }));
                }
                JsonRpcMessage::Notification(JsonRpcNotification {
                    notification: ClientNotification::CancelledNotification(c),
                    ..
                }) => {
                    // rmcp drops the answer of a cancelled request, so it no
                    // longer counts as in flight.
                    if let Some(id) = &c.params.request_id
                        && self.ledger.lock().requests.remove(id)
                    {
                        self.ledger.freed.notify_one();
                    }
                    return Some(msg);
                }
                _ => return Some(msg),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}
