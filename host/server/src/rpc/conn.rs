//! The server's connections: accepted here, not by jsonrpsee, so that each one knows
//! the address it came from, is counted against caps no single client can exhaust,
//! and can be closed on its own (a WebSocket whose token is revoked).
//!
//! Who holds a connection decides which cap it counts against:
//! - a connection no token has claimed counts against its client **address**
//!   (`max_connections_per_address`);
//! - the first request carrying a valid token moves it to that **token**
//!   (`max_connections_per_token`), out of its address's count, so unauthenticated
//!   clients on an address cannot crowd out a caller with a token; a WebSocket counts
//!   for as long as it is open;
//! - a `jobs.wait` (a long poll, idle on the server until its job ends) counts as one
//!   of the token's **waits** (`max_waits_per_token`) while it waits, and against no
//!   connection cap.
//!
//! A request over its cap is answered `busy` (HTTP 429) with `Connection: close`, so
//! the socket goes. `system.health` is answered on any connection, over a cap or not.
//! A request's headers must arrive within `header_read_timeout` (which also closes an
//! idle keep-alive connection), and a JSON-RPC call's body within `body_read_timeout`
//! (the HTTP layer, [`super::http`]). `max_connections` bounds the sockets of the
//! whole server, the last guard of its file descriptors: one over it is closed at once.
//!
//! Each connection has a stop handle of its own. The task serving it stops it when
//! the server stops and, once it has become a WebSocket, when its token is no longer
//! good (revoked or expired), which closes the socket.
//!
//! A WebSocket may have held many subscriptions, each a task and its buffers, made on
//! whichever thread served it. glibc's allocator keeps what such threads freed for
//! reuse rather than give it back, so a server that once held 100,000 subscriptions
//! would stay at that size for good. Once subscriptions have ended or sockets closed
//! (and that has settled for a second), [`Trimmer`] asks it to return its free pages
//! to the system; first, if many subscriptions have ended since it last did, it has
//! the methods renewed (see [`super::generations`]), whose subscription maps jsonrpsee
//! never shrinks.

use super::held::{Held, PerKey};
use crate::auth::Auth;
use crate::jobs::{Caller, Error};
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonrpsee::server::{ServerHandle, StopHandle, stop_channel};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The caps of [`super::TransportLimits`] that count connections, shared by all of them.
#[derive(Debug)]
pub struct Caps {
    by_address: PerKey,
    by_token: PerKey,
    waits: PerKey,
    open: AtomicUsize,
    max_open: usize,
    metrics: crate::metrics::Metrics,
    trimmer: Trimmer,
}

impl Caps {
    /// Caps as `limits` sets them; the connections open are shown in `metrics`, and
    /// `trimmer` is told when a WebSocket closes.
    pub fn new(limits: &super::TransportLimits, metrics: crate::metrics::Metrics, trimmer: Trimmer) -> Caps {
        let n = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
        Caps {
            by_address: PerKey::new(n(limits.max_connections_per_address)),
            by_token: PerKey::new(n(limits.max_connections_per_token)),
            waits: PerKey::new(n(limits.max_waits_per_token)),
            open: AtomicUsize::new(0),
            max_open: n(limits.max_connections),
            metrics,
            trimmer,
        }
    }
}

/// What a request asks for, as far as the caps care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `system.health`: always answered.
    Health,
    /// `jobs.wait`: counted as a wait, not a connection.
    LongPoll,
    /// Anything else.
    Other,
}

/// Which cap a connection counts against now.
#[derive(Debug)]
enum Slot {
    /// None: it was over its address's cap when it came, or lent its place to a wait.
    None,
    Address(#[allow(dead_code, reason = "held for its drop")] Held),
    Token(String, #[allow(dead_code, reason = "held for its drop")] Held),
}

/// One accepted connection; every request on it carries it in its extensions (and a
/// WebSocket keeps those for its whole life, with the slot in them).
#[derive(Debug)]
pub struct Conn {
    peer: IpAddr,
    caps: Arc<Caps>,
    slot: Mutex<Slot>,
    /// The caller a WebSocket on this connection was opened by.
    socket_caller: Mutex<Option<Caller>>,
}

impl Conn {
    fn new(peer: IpAddr, caps: Arc<Caps>) -> Conn {
        let slot = caps.by_address.take(&peer.to_string()).map_or(Slot::None, Slot::Address);
        Conn { peer, caps, slot: Mutex::new(slot), socket_caller: Mutex::new(None) }
    }

    /// Lets a request of `caller` through on this connection, or answers `busy`. A
    /// long poll answers the wait it holds, to keep until its answer is sent.
    pub fn admit(&self, caller: Option<&Caller>, call: Call) -> Result<Option<Waiting>, Error> {
        if call == Call::Health {
            return Ok(None);
        }
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(caller) = caller else {
            if matches!(*slot, Slot::None) {
                let Some(held) = self.caps.by_address.take(&self.peer.to_string()) else {
                    return Err(Error::Busy(format!(
                        "connections: {} holds {} without a token, the most it may",
                        self.peer,
                        self.caps.by_address.cap()
                    )));
                };
                *slot = Slot::Address(held);
            }
            return Ok(None);
        };
        let key = holder(caller);
        if call == Call::LongPoll {
            let Some(wait) = self.caps.waits.take(&key) else {
                return Err(Error::Busy(format!(
                    "long polls: this token has {} `jobs.wait` open, the most it may",
                    self.caps.waits.cap()
                )));
            };
            // While it waits, the connection holds no place a call needs.
            *slot = Slot::None;
            return Ok(Some(Waiting(wait, self.caps.metrics.wait())));
        }
        if let Slot::Token(held_by, _) = &*slot
            && *held_by == key
        {
            return Ok(None);
        }
        let Some(held) = self.caps.by_token.take(&key) else {
            return Err(Error::Busy(format!(
                "connections: this token holds {} open, the most it may (close one, or reuse it)",
                self.caps.by_token.cap()
            )));
        };
        *slot = Slot::Token(key, held);
        Ok(None)
    }

    /// Marks this connection as becoming a WebSocket of `caller`: it is closed when
    /// that caller's token is no longer good.
    pub fn becomes_socket(&self, caller: &Caller) {
        *self.socket_caller.lock().unwrap_or_else(PoisonError::into_inner) = Some(caller.clone());
    }
}

/// A `jobs.wait` waiting: its place among its token's waits, and in the metrics.
#[derive(Debug)]
pub struct Waiting(
    #[allow(dead_code, reason = "held for its drop")] Held,
    #[allow(dead_code, reason = "held for its drop")] crate::metrics::Counted,
);

/// The key a caller's connections are counted under: its token.
fn holder(caller: &Caller) -> String {
    match &caller.token_id {
        Some(token) => token.clone(),
        None => format!("user:{}", caller.user_id),
    }
}

/// One open socket of `max_connections`.
struct Open(Arc<Caps>, #[allow(dead_code, reason = "held for its drop")] crate::metrics::Counted);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The deadlines the connection loop applies itself.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A request's headers, from the first byte the connection waits for.
    pub header_read: Duration,
}

/// What serving one connection needs.
pub struct Accept<S> {
    /// The per-connection service, from a stop handle of the connection's own.
    pub make: Arc<dyn Fn(StopHandle) -> S + Send + Sync>,
    /// The connection caps.
    pub caps: Arc<Caps>,
    /// Token checks, for WebSockets.
    pub auth: Auth,
    /// Header deadline.
    pub deadlines: Deadlines,
}

/// How often an open WebSocket's token is checked again (a revocation through this node
/// is seen at once, one through another node or an expiry within this).
const RECHECK_SOCKET: Duration = Duration::from_secs(2);

/// Accepts connections on `listener` until `stop` says the server stops.
pub async fn accept<S, B>(listener: tokio::net::TcpListener, accept: Accept<S>, stop: StopHandle)
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let accept = Arc::new(accept);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.clone().shutdown() => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or a connection reset before it was taken):
                // back off a moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if accept.caps.open.fetch_add(1, Ordering::Relaxed) >= accept.caps.max_open {
            accept.caps.open.fetch_sub(1, Ordering::Relaxed);
            drop(socket);
            continue;
        }
        let open = Open(accept.caps.clone(), accept.caps.metrics.connection());
        let _ = socket.set_nodelay(true);
        let conn = Arc::new(Conn::new(peer.ip(), accept.caps.clone()));
        tokio::spawn(serve(socket, conn, open, accept.clone(), stop.clone()));
    }
}

/// Serves one connection: HTTP/1.1 requests until it closes, then, if it became a
/// WebSocket, watches that socket's token until it closes.
async fn serve<S, B>(
    socket: tokio::net::TcpStream,
    conn: Arc<Conn>,
    open: Open,
    accept: Arc<Accept<S>>,
    stop: StopHandle,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _open = open;
    let (conn_stop, closer) = stop_channel();
    {
        let service = (accept.make)(conn_stop);
        let on_request = conn.clone();
        let service = tower::ServiceExt::map_request(service, move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(on_request.clone());
            req
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(accept.deadlines.header_read);
        let connection = http
            .serve_connection(TokioIo::new(socket), hyper_util::service::TowerToHyperService::new(service))
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            _ = &mut connection => {}
            () = stop.clone().shutdown() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
        // The connection, and the service with its stop handle, end here: what holds
        // the handle from now on is the WebSocket it may have become.
    }
    let caller = conn.socket_caller.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(caller) = caller else { return };
    watch_socket(&accept.auth, &caller, &closer, &stop).await;
    accept.caps.trimmer.freed();
}

/// Until the WebSocket behind `closer` closes: closes it when the server stops or
/// `caller`'s token is no longer good.
async fn watch_socket(auth: &Auth, caller: &Caller, closer: &ServerHandle, stop: &StopHandle) {
    let mut revoked = auth.revocations();
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_SOCKET, RECHECK_SOCKET);
    loop {
        tokio::select! {
            () = closer.clone().stopped() => return,
            () = stop.clone().shutdown() => break,
            Ok(()) = revoked.changed() => {}
            _ = recheck.tick() => {}
        }
        if let Ok(Err(refusal)) = auth.recheck(caller).await {
            tracing::debug!(token = ?caller.token_id, reason = refusal.message(), "closing the token's WebSocket");
            break;
        }
    }
    let _ = closer.stop();
    closer.clone().stopped().await;
}

/// Gives the allocator's free pages back to the system a second after subscriptions
/// end or WebSockets close (see the module docs); nothing where the allocator is not
/// glibc's. Before that, the methods are renewed once [`RENEW_AFTER`] subscriptions
/// have ended since they last were.
#[derive(Clone)]
pub struct Trimmer {
    told: tokio::sync::mpsc::Sender<()>,
    shared: Arc<TrimShared>,
}

impl std::fmt::Debug for Trimmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trimmer").field("ended", &self.shared.ended).finish_non_exhaustive()
    }
}

/// What the handles and the task share.
#[derive(Default)]
struct TrimShared {
    /// Subscriptions ended since the methods were last renewed.
    ended: AtomicUsize,
    /// Renews the methods (set by [`super::serve`]).
    renew: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// How long after a socket closes the trim waits, so that a crowd of sockets closing
/// together is trimmed for once.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Subscriptions ended since the last renewal that make the next trim renew the
/// methods: jsonrpsee's map then holds room for at most this many entries it does not
/// need (about 80 bytes each), and a renewal (building the method table again) is rare.
pub const RENEW_AFTER: usize = 4096;

impl Trimmer {
    /// The trimmer's task (on the current runtime), which ends with the last of its
    /// handles.
    pub fn start() -> Trimmer {
        let (told, mut rx) = tokio::sync::mpsc::channel(1);
        let shared = Arc::new(TrimShared::default());
        let theirs = shared.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tokio::time::sleep(TRIM_AFTER).await;
                while rx.try_recv().is_ok() {}
                if theirs.ended.load(Ordering::Relaxed) >= RENEW_AFTER
                    && let Some(renew) = theirs.renew.get()
                {
                    theirs.ended.store(0, Ordering::Relaxed);
                    renew();
                }
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        });
        Trimmer { told, shared }
    }

    /// Much may have been freed: trim once things have settled.
    pub fn freed(&self) {
        // Full: a trim is already due.
        let _ = self.told.try_send(());
    }

    /// A subscription has ended: counted towards the next renewal, and trimmed after.
    pub fn subscription_ended(&self) {
        self.shared.ended.fetch_add(1, Ordering::Relaxed);
        self.freed();
    }

    /// Sets what renews the methods; only the first call counts.
    pub fn on_renew(&self, renew: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.renew.set(Box::new(renew));
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is safe to call
    // at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Raises this process's soft limit on open files to its hard limit: every connection
/// is a file descriptor, and the usual soft limit (1,024) is far below
/// `max_connections`.
pub fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "raising the limit on open files");
        }
    }
}

/// Connections the kernel holds for the server before it accepts them. A burst of
/// clients beyond the usual 128 would otherwise have their handshakes dropped and
/// retried, seconds later.
const BACKLOG: u32 = 4096;

/// A non-blocking socket listening on `addr`, with a backlog of [`BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}
