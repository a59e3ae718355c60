//! [`App`]: build binds eagerly and returns addresses tests can read; run serves until told to
//! stop, then drains (SPEC §11).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::Authenticator;
use crate::backplane::Backplane;
use crate::backplane::redis::RedisBackplane;
use crate::commands::demo::DemoWorld;
use crate::commands::webhook::Webhook;
use crate::commands::{CommandHandler, Runner};
use crate::config::{Config, ConfigError};
use crate::http::access::ConnectLimits;
use crate::http::connect_hook::ConnectHook;
use crate::http::sse::SlowReaderWatch;
use crate::http::{self, AppState, Front, Shared};
use crate::http1_head::{self, First, Prefixed};
use crate::hub::{Hub, HubConfig};
use crate::lifecycle;
use crate::shared_socket::{SharedSocket, StreamSocket};
use crate::tls::{ALPN_H2, Tls, TlsError};
use crate::{sse_socket, ws_socket};

/// Largest request head (request line and headers) hyper buffers; past it, 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers one request may carry.
const MAX_HEADERS: usize = 64;
/// A client that takes longer than this to send its request head is cut off (slowloris).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An SSE write stuck this long ends the connection; half of it already makes it unhealthy.
const SSE_STALL_GRACE: Duration = Duration::from_secs(20);
/// A TLS handshake not finished by then is dropped, so a client that stalls mid-handshake
/// cannot hold a connection (and its memory) for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// SPEC §9: one health sample a minute feeds the 24-hour trend.
const HEALTH_SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// How often idle players and stale rate-limit buckets are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// A bound, ready server.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    front: Front,
    /// Present when the listener speaks TLS only.
    tls: Option<Arc<Tls>>,
    /// Cancelled to begin a graceful shutdown.
    shutdown: CancellationToken,
    /// Sends lifecycle notices once running; present when the lifecycle webhook is set.
    lifecycle: Option<lifecycle::Worker>,
}

impl App {
    /// Checks the configuration and binds the listener; nothing is served until [`App::run`].
    /// Commands go to the configured webhook, or else to the built-in demo world.
    pub async fn build(config: Config) -> Result<App, BuildError> {
        let handler: Arc<dyn CommandHandler> = match &config.command_webhook {
            Some(hook) => Arc::new(
                Webhook::new(&hook.url, hook.secret.clone(), hook.timeout)
                    .map_err(|e| BuildError::Config(ConfigError::Invalid(e)))?,
            ),
            None => Arc::new(DemoWorld::new()),
        };
        App::build_with_handler(config, handler).await
    }

    /// As [`App::build`], with the embedding game's own command handler.
    pub async fn build_with_handler(
        config: Config,
        handler: Arc<dyn CommandHandler>,
    ) -> Result<App, BuildError> {
        let auth = Authenticator::new(&config.auth)?;
        let connect_hook = config
            .connect_webhook
            .as_ref()
            .map(ConnectHook::new)
            .transpose()
            .map_err(|e| BuildError::Config(ConfigError::Invalid(e)))?;
        let tls = config
            .tls
            .as_ref()
            .map(Tls::load)
            .transpose()?
            .map(Arc::new);
        let backplane = match &config.cluster {
            None => Backplane::Local,
            Some(settings) => Backplane::Redis(Arc::new(
                RedisBackplane::new(settings.clone(), HubConfig::from(&config))
                    .map_err(|e| BuildError::Config(ConfigError::Invalid(e)))?,
            )),
        };
        let mut hub = Hub::build(HubConfig::from(&config), backplane, config.budget);
        let lifecycle = match &config.lifecycle_webhook {
            Some(hook) => {
                let (notices, worker) = lifecycle::channel(hook, config.lifecycle_grace)
                    .map_err(|e| BuildError::Config(ConfigError::Invalid(e)))?;
                hub.set_lifecycle(notices);
                Some(worker)
            }
            None => None,
        };
        let hub = Arc::new(hub);
        let commands = Runner::new(handler, hub.clone(), config.command_rate);
        let listener = listen(config.bind)
            .await
            .map_err(|source| BuildError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| BuildError::Bind {
            addr: config.bind,
            source,
        })?;
        let state = AppState::new(Shared {
            hub,
            auth,
            limits: ConnectLimits::new(config.connect_per_ip, config.connect_per_player),
            config,
            tracker: TaskTracker::new(),
            draining: AtomicBool::new(false),
            auth_failures: AtomicU64::new(0),
            commands,
            metrics: http::Metrics::new(),
            connect_hook,
        });
        let front = Front::new(state.clone());
        Ok(App {
            listener,
            local_addr,
            state,
            front,
            tls,
            shutdown: CancellationToken::new(),
            lifecycle,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The hub, for embedders that publish from game logic.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.state.hub
    }

    /// The admin keys in force (in dev mode, the random one), for the start-up banner.
    pub fn admin_keys(&self) -> &[String] {
        &self.state.config.auth.admin_keys.0
    }

    /// Mints a player token when the server holds a shared secret (dev mode or HS256).
    pub fn mint_token(&self, player: &str, ttl: Duration) -> Option<String> {
        self.state.auth.mint(player, ttl, false)
    }

    /// The router and the routes answered without it, for the fuzz targets that send requests
    /// without sockets.
    pub(crate) fn front(&self) -> Front {
        self.front.clone()
    }

    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancel it to shut down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains and returns.
    ///
    /// On a multi-thread runtime, run it as a task (`tokio::spawn(app.run())`), not as the
    /// future `block_on` (or `#[tokio::main]`) drives: that future runs on a thread of its
    /// own, and every connection its accept loop spawns would then wake a worker thread;
    /// from a worker, the task starts in the same worker's queue (BENCHMARKS.md, "The accept
    /// loop on a worker").
    pub async fn run(self) {
        let App {
            listener,
            state,
            front,
            tls,
            shutdown,
            lifecycle,
            ..
        } = self;
        let tracker = state.tracker.clone();
        if let Some(worker) = lifecycle {
            worker.spawn(state.hub.clone(), &tracker, shutdown.clone());
        }
        tracker.spawn(sweep(state.clone(), shutdown.clone()));
        if let Backplane::Redis(redis) = state.hub.backplane() {
            tracker.spawn(crate::backplane::redis::run(
                redis.clone(),
                state.hub.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(tls) = &tls {
            tracker.spawn(
                tls.clone()
                    .watch(state.metrics.tls_reloads(), shutdown.clone()),
            );
        }
        tracker.spawn(keep_to_budget(state.hub.clone(), shutdown.clone()));

        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Usually descriptor exhaustion: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            tracker.spawn(serve_connection(
                stream,
                peer,
                front.clone(),
                shutdown.clone(),
                tls.clone(),
                tracker.clone(),
            ));
        }

        drop(listener);
        state.draining.store(true, Ordering::Release);
        let reconnect_after = state.config.reconnect_after;
        state.hub.shutdown_all(reconnect_after);
        tracker.close();
        let timeout = state.config.shutdown_timeout;
        if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
            tracing::warn!(
                left = tracker.len(),
                "connections still open after the shutdown timeout"
            );
        }
        tracing::info!("stopped");
    }
}

/// Binds the listening socket. Events are small and go out at once, so every connection sends
/// with `TCP_NODELAY`. On Linux an accepted socket inherits it from the listener, which saves
/// a `setsockopt` call per connection (BENCHMARKS.md, "The token check and `TCP_NODELAY`").
async fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    #[cfg(target_os = "linux")]
    {
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        defer_accept(&listener, HEAD_TIMEOUT)?;
    }
    Ok(listener)
}

/// Every client of ours speaks first (a request head, a TLS hello, HTTP/2's preface), so the
/// kernel may hold a connection back from `accept` until its first bytes arrive. The first read
/// then finds them, rather than an empty socket and a wait for the next wake-up; and a client
/// that connects and says nothing costs the kernel a pending handshake, not a task of ours.
#[cfg(target_os = "linux")]
fn defer_accept(listener: &TcpListener, wait: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let seconds = libc::c_int::try_from(wait.as_secs()).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is the listener's, open for the call, and the option's value is
    // a C int passed with its size.
    let done = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One TCP connection: plain HTTP/1.1, or TLS with HTTP/2 or HTTP/1.1 as ALPN chose.
///
/// Each path is boxed: a task is allocated at the size of its future's largest state, and the
/// TLS and HTTP/2 states are several KiB, which every plain connection (an idle SSE stream
/// lives in this task) would otherwise carry (BENCHMARKS.md, issue 10).
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    front: Front,
    shutdown: CancellationToken,
    tls: Option<Arc<Tls>>,
    tracker: TaskTracker,
) {
    #[cfg(not(target_os = "linux"))]
    let _ = stream.set_nodelay(true);
    match tls {
        None => Box::pin(serve_http1(stream, peer, front, shutdown)).await,
        Some(tls) => Box::pin(serve_tls(stream, peer, front, shutdown, tls, tracker)).await,
    }
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    front: Front,
    shutdown: CancellationToken,
    tls: Arc<Tls>,
    tracker: TaskTracker,
) {
    // Boxed so the handshake's state is freed once it is done, not kept under the connection.
    let accept = Box::pin(crate::tls::stream::accept(stream, tls.config()));
    // No binding outlives the handshake: whatever is in scope at the last await is kept in this
    // task for the connection's life, and the stream is a kilobyte.
    let served = match tokio::select! {
        _ = shutdown.cancelled() => return,
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept) => done,
    } {
        Ok(Ok(stream)) => after_handshake(Box::new(stream), peer, front, shutdown, tracker),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    served.await;
}

/// The protocol ALPN chose, boxed on its own: the HTTP/2 connection's state is several KiB,
/// which every HTTP/1.1 connection's task (an idle SSE stream's) would otherwise be sized for.
/// The stream is boxed too, so the tasks above it hold a pointer rather than rustls's state.
fn after_handshake(
    stream: Box<crate::tls::stream::TlsStream>,
    peer: SocketAddr,
    front: Front,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    if stream.alpn_protocol() == Some(ALPN_H2) {
        Box::pin(crate::http2::serve(
            stream,
            peer,
            front.router.clone(),
            shutdown,
            tracker,
            SSE_STALL_GRACE,
        ))
    } else {
        Box::pin(serve_http1(stream, peer, front, shutdown))
    }
}

/// HTTP/1.1: an SSE stream or a WebSocket upgrade as the first request is answered straight on
/// the socket, by `sse_socket` or `ws_socket`; everything else is hyper's.
async fn serve_http1<S>(io: S, peer: SocketAddr, front: Front, shutdown: CancellationToken)
where
    S: StreamSocket,
{
    let (mut io, socket) = io.shared();
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        first = tokio::time::timeout(
            HEAD_TIMEOUT,
            http1_head::first_request(&mut io, MAX_HEAD_BYTES, MAX_HEADERS),
        ) => first,
    };
    match first {
        Ok(Ok(First::Sse(request))) => {
            sse_socket::serve(io, socket, request, front, peer, SSE_STALL_GRACE).await;
        }
        // Boxed, as hyper's below: the router's future is over a kilobyte, and it is done once
        // the WebSocket's own task has the socket.
        Ok(Ok(First::WebSocket(request))) => {
            Box::pin(ws_socket::serve(io, socket, request, front, peer)).await;
        }
        // Boxed: hyper's connection state is larger than an SSE stream's, and every idle
        // stream's task would otherwise be allocated at its size.
        Ok(Ok(First::Other(read))) => {
            Box::pin(serve_hyper(
                Prefixed::new(read, io),
                socket,
                peer,
                front.router.clone(),
                shutdown,
            ))
            .await;
        }
        // The socket failed, or no complete head arrived in time.
        Ok(Err(_)) | Err(_) => {}
    }
}

/// HTTP/1.1 by hyper. A WebSocket upgraded here (one that was not the connection's first
/// request) finds `socket` among its request's extensions, to let publishers write to it.
async fn serve_hyper<I>(
    io: I,
    socket: Option<Arc<SharedSocket>>,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let watch = SlowReaderWatch::default();
    let slow_reader = watch.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(watch.clone());
        if let Some(socket) = &socket {
            req.extensions_mut().insert(socket.clone());
        }
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::trace!(error = %e, "http connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        // Dropping the connection closes the socket and the SSE body with it.
        _ = slow_reader.gave_up(SSE_STALL_GRACE) => {}
    }
}

/// Closes the heaviest readers whenever the node's queued bytes pass their bound.
async fn keep_to_budget(hub: Arc<Hub>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hub.budget.overspent() => {
                hub.shed_queued_bytes();
            }
        }
    }
}

/// Frees idle players and stale rate-limit buckets, samples health for the trends, and keeps
/// a timer due at the [`timer_pace`].
async fn sweep(state: AppState, shutdown: CancellationToken) {
    let mut pace = tokio::time::interval(timer_pace(&state.config));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = tokio::time::interval_at(
        tokio::time::Instant::now() + HEALTH_SAMPLE_EVERY,
        HEALTH_SAMPLE_EVERY,
    );
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sample.tick() => state.hub.sample_health(),
            _ = pace.tick() => {}
            _ = every.tick() => {
                state.hub.sweep();
                state.limits.retain_recent();
                state.commands.retain_recent();
                release_free_memory();
            }
        }
    }
}

/// How often the sweep's task wakes for nothing. Tokio wakes its I/O driver (an `eventfd`
/// write, then one more `epoll_wait`) whenever a timer is armed to fire before the earliest
/// one the driver last parked with. Every connection arms one as it opens (its first heartbeat
/// or ping, or the head's timeout). With a timer always due at least as soon, a connect never
/// pays for that wake, where about every other one did while connections came and went faster
/// than any stayed (BENCHMARKS.md, "A stream without the router, and a timer due sooner").
fn timer_pace(config: &Config) -> Duration {
    HEAD_TIMEOUT
        .min(config.heartbeat_interval)
        .min(config.ping_interval)
}

/// Hands the allocator's free pages back to the kernel. glibc's malloc gives memory back by
/// itself only from the top of each arena, so after a burst (thousands of connections come and
/// gone) resident memory would stay near the peak; the soak checks that it comes back.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks and releases glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Routes;
    use tokio::io::AsyncWriteExt;

    /// Each first alarm a connection arms is at least a pace away, whichever is shortest.
    #[test]
    fn the_pace_is_no_longer_than_any_connections_first_alarm() {
        let settings = |heartbeat, ping| crate::config::Settings {
            heartbeat_secs: Some(heartbeat),
            ping_secs: Some(ping),
            ..crate::config::Settings::default()
        };
        for (heartbeat, ping, pace) in [(15, 25, 10), (7, 25, 7), (15, 3, 3)] {
            let Ok(config) = settings(heartbeat, ping).resolve() else {
                panic!("heartbeat {heartbeat} s and ping {ping} s are valid");
            };
            assert_eq!(timer_pace(&config), Duration::from_secs(pace));
        }
    }

    /// Without `TCP_NODELAY`, a small event written after another waits up to a round trip
    /// for its acknowledgement (Nagle's algorithm). Elsewhere each connection sets it itself.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(b"GET").await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    /// A client that has connected but sent nothing waits in the kernel: `accept` hands over
    /// the one behind it that has spoken, with its bytes there for the first read.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_connection_is_accepted_once_its_client_speaks() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut speaking = TcpStream::connect(addr).await.unwrap();
        speaking.write_all(b"GET").await.unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, speaking.local_addr().unwrap());
        let mut first = [0u8; 3];
        assert_eq!(accepted.try_read(&mut first).unwrap(), 3);
        assert_eq!(&first, b"GET");
    }

    /// A plain connection's task holds its HTTP/1.1 state only, not room for TLS and HTTP/2
    /// too: every idle SSE stream pays this (issue 10).
    #[tokio::test]
    async fn a_plain_connection_task_is_not_sized_for_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let task = serve_connection(
            stream,
            addr,
            Front::from(Routes {
                router: Router::new(),
                direct: None,
            }),
            CancellationToken::new(),
            None,
            TaskTracker::new(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "the connection task's future is {size} bytes");
    }

    /// What stays allocated under every idle SSE stream (issue 10): a TLS connection's task
    /// keeps neither the handshake nor the stream inline, and the stream writer keeps neither
    /// the request, the response head nor the router's future.
    #[tokio::test]
    async fn an_sse_stream_task_keeps_only_what_the_stream_needs() {
        let dir = std::env::temp_dir().join(format!("dualconn-task-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = crate::tls::TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let tls = Arc::new(Tls::load(&files).unwrap());
        let _ = std::fs::remove_dir_all(&dir);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let token = CancellationToken::new();
        let tls_task = serve_tls(
            stream,
            addr,
            Front::from(Routes {
                router: Router::new(),
                direct: None,
            }),
            token,
            tls,
            TaskTracker::new(),
        );
        let size = std::mem::size_of_val(&tls_task);
        assert!(size <= 512, "a TLS connection's future is {size} bytes");

        let request = Box::new(axum::http::Request::new(axum::body::Body::empty()));
        let stream_task = sse_socket::serve(
            tokio::io::empty(),
            None,
            request,
            Front::from(Routes {
                router: Router::new(),
                direct: None,
            }),
            addr,
            SSE_STALL_GRACE,
        );
        // What it holds for the stream's life: the socket, the body, the out buffer and the
        // probe. The stall watch (made only while a write waits) and an error response are
        // boxed; either inline, or the request, the response head or the router's future back
        // in scope, would pass this.
        let size = std::mem::size_of_val(&stream_task);
        assert!(size <= 640, "an SSE stream's future is {size} bytes");
    }
}
