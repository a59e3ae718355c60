//! `dualconn-bench`: a load generator for dualconn (and for anything speaking the same wire
//! subset: the Node baseline, and `tcp-floor` over raw TCP).
//!
//! The coordinator (this process) splits clients over worker processes (a process here may
//! hold at most 20,000 descriptors), spreads them over 127.0.0.1–127.0.0.N, publishes through
//! `POST /api/publish` with a send timestamp in `data`, and merges what every worker counted:
//! per-connection gaps and duplicates, and latency in an HDR histogram. It prints one JSON line
//! on stdout and a short summary on stderr.

mod chaos;

use std::cell::{Cell, RefCell};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use dualconn_bench::check::{self, Expected, Msg, StreamCheck, add_pairs, now_ns, to_pairs};
use dualconn_bench::client::{Dial, Link, Transport};
use dualconn_bench::tls::Tls;
use dualconn_bench::{ProcSample, mint_with_id, pin_to_cpu, proc_sample};

#[derive(Parser)]
#[command(name = "dualconn-bench", about = "Load generator for dualconn")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish through POST /api/publish (broadcast or targeted) to connected players.
    Fanout(Opts),
    /// Hold idle connections; report server RSS per connection and set-up CPU.
    Hold(Opts),
    /// Connect (with a fresh JWT each time), wait for `connected`, drop; repeat.
    Churn(Opts),
    /// Fan-out while connections are dropped at random and resume with `last_event_id`.
    Resume(Opts),
    /// Room chat: players dealt over rooms, every room publishing `--room-rate` times a second,
    /// either through the room route (`--target room`) or as the same player lists through
    /// `/api/publish` (`--target list`), so the two can be compared under one load.
    Rooms(RoomOpts),
    /// Slow readers (4008), session changes (4001), expiring tokens (1008) and garbage input
    /// in loops, counting anything unexpected: the soak's rough edges.
    Chaos(chaos::ChaosOpts),
    /// Internal: one worker process, driven by the coordinator over stdin/stdout.
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Clone)]
struct Opts {
    /// A name for the JSON row (dualconn, node, floor).
    #[arg(long, default_value = "dualconn")]
    label: String,
    /// Server port (all loopback addresses). Several (a comma list, or the flag repeated) are
    /// the nodes of one cluster: connections are spread over them and publishes go to each in
    /// turn.
    #[arg(long, value_delimiter = ',', default_value = "8000")]
    port: Vec<u16>,
    /// Spread connections over 127.0.0.1 .. 127.0.0.N.
    #[arg(long, default_value_t = 8)]
    hosts: u8,
    /// HS256 secret the server verifies with.
    #[arg(long, env = "DUALCONN_JWT_SECRET", default_value = "")]
    secret: String,
    /// Admin key for /api/publish (the first of a comma-separated list).
    #[arg(long, env = "DUALCONN_ADMIN_KEYS", default_value = "")]
    admin_key: String,
    /// Server process(es) to read CPU and RSS from (/proc/<pid>); several are summed, as the
    /// nodes of one cluster.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Redis process to read CPU from, reported apart from the nodes' (cluster runs).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// A connection the server drops (closed or reset) resumes with `last_event_id` on the next
    /// port, instead of ending: what a client of a dead node does.
    #[arg(long)]
    failover: bool,
    /// SIGKILL this process (a node) `--kill-after-secs` into the publishing phase.
    #[arg(long)]
    kill_pid: Option<u32>,
    #[arg(long, default_value_t = 2.0)]
    kill_after_secs: f64,
    /// Pin this process and its workers to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Speak TLS (`wss://`, HTTPS) to the server, every connection and publish, trusting only
    /// the CA certificate(s) in this PEM file. Not for the TCP floor.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// The name every server certificate is checked against under `--tls-ca` (connections go
    /// to 127.0.0.1–127.0.0.N, which a test certificate does not all name).
    #[arg(long, default_value = "localhost")]
    tls_name: String,
    /// Players (each holds one connection per transport in the mix).
    #[arg(long, default_value_t = 100)]
    players: u32,
    /// Connections per player.
    #[arg(long, value_enum, default_value_t = Mix::Ws)]
    transport: Mix,
    /// Fan-out shape.
    #[arg(long, value_enum, default_value_t = Mode::Broadcast)]
    mode: Mode,
    /// Publishes per second, all publishers together [default: 10]. `rooms` takes
    /// `--room-rate` instead.
    #[arg(long)]
    rate: Option<f64>,
    /// Players named per targeted publish.
    #[arg(long, default_value_t = 1)]
    batch: u32,
    /// Concurrent publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Stop after this many publishes (0: run for --secs).
    #[arg(long, default_value_t = 0)]
    publishes: u64,
    /// Length of the measured phase, seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Concurrent connect loops per worker (churn).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// A token no server has seen on every connect (a unique `jti`). Without it a player's
    /// token is minted afresh each time too, but tokens minted in the same second are the same,
    /// as a client reconnecting with the token it holds presents the same one.
    #[arg(long)]
    fresh_tokens: bool,
    /// Mean time between forced drops of one connection, ms (resume).
    #[arg(long, default_value_t = 1000)]
    drop_every_ms: u64,
    /// Worker processes (0: one per --conns-per-worker connections).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long, default_value_t = 9000)]
    conns_per_worker: usize,
    /// Connections being set up at once per worker.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Read buffer per connection, bytes.
    #[arg(long, default_value_t = 4096)]
    read_buf: usize,
    /// Quiet time that ends the wait for deliveries after publishing, ms.
    #[arg(long, default_value_t = 500)]
    quiet_ms: u64,
    /// Bytes of padding in each event's data, to make the envelope about 200 bytes.
    #[arg(long, default_value_t = 48)]
    pad: usize,
    /// Player ids are this prefix and a number, so runs against one server can keep apart.
    #[arg(long, default_value = "p")]
    prefix: String,
    /// Set by `rooms` from its own flags.
    #[arg(skip)]
    room: Option<RoomSpec>,
}

impl Opts {
    fn rate(&self) -> f64 {
        self.rate.unwrap_or(10.0)
    }
}

#[derive(Args, Clone)]
struct RoomOpts {
    #[command(flatten)]
    base: Opts,
    /// Rooms. Players are dealt over them in turn (player i is in room i mod rooms), so each
    /// room's members are spread over the workers and hosts like everyone else.
    #[arg(long, default_value_t = 100)]
    rooms: u32,
    /// Publishes per room per second; all rooms together publish rooms × this.
    #[arg(long, default_value_t = 2.0)]
    room_rate: f64,
    /// How a room's publish reaches the server. Either way every membership is PUT once,
    /// before anyone connects, so the server holds the same state.
    #[arg(long, value_enum, default_value_t = Target::Room)]
    target: Target,
    /// Connect nobody: every member is offline, so each event is numbered and kept in history
    /// but written to no socket. What is left is the publish path, where the targets differ,
    /// without the writes that dominate a delivery.
    #[arg(long)]
    offline: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Target {
    /// Each publish is `POST /api/rooms/{id}/publish`.
    Room,
    /// Each publish names the room's players in `POST /api/publish`, with `room_id`.
    List,
}

impl Target {
    fn as_str(self) -> &'static str {
        match self {
            Target::Room => "room",
            Target::List => "list",
        }
    }
}

/// The rooms of one `rooms` run: which players each holds and how it is published to.
#[derive(Clone, Copy, Debug)]
struct RoomSpec {
    rooms: u32,
    size: u32,
    target: Target,
    offline: bool,
}

impl RoomSpec {
    fn id(&self, prefix: &str, room: u32) -> String {
        format!("{prefix}-room{room}")
    }

    fn members(&self, room: u32) -> impl Iterator<Item = u32> + use<> {
        let rooms = self.rooms;
        (0..self.size).map(move |i| room + i * rooms)
    }
}

impl RoomOpts {
    /// The fan-out options this run amounts to, refusing a shape the checks could not follow.
    fn into_opts(self) -> Result<Opts> {
        let mut o = self.base;
        if o.rate.is_some() {
            bail!("rooms: give --room-rate (publishes per room per second), not --rate");
        }
        if o.transport == Mix::Floor {
            bail!("rooms: the TCP floor has no rooms");
        }
        // Uneven rooms would make the two targets' loads differ from room to room.
        if self.rooms == 0 || o.players < self.rooms || !o.players.is_multiple_of(self.rooms) {
            bail!(
                "rooms: --players ({}) must be a positive multiple of --rooms ({})",
                o.players,
                self.rooms
            );
        }
        if !(self.room_rate > 0.0 && self.room_rate.is_finite()) {
            bail!("rooms: --room-rate must be positive");
        }
        o.rate = Some(f64::from(self.rooms) * self.room_rate);
        o.room = Some(RoomSpec {
            rooms: self.rooms,
            size: o.players / self.rooms,
            target: self.target,
            offline: self.offline,
        });
        Ok(o)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Debug)]
#[serde(rename_all = "lowercase")]
enum Mix {
    Ws,
    Sse,
    Both,
    Floor,
}

impl Mix {
    fn transports(self) -> Vec<Transport> {
        match self {
            Mix::Ws => vec![Transport::Ws],
            Mix::Sse => vec![Transport::Sse],
            Mix::Both => vec![Transport::Ws, Transport::Sse],
            Mix::Floor => vec![Transport::Floor],
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Mix::Ws => "ws",
            Mix::Sse => "sse",
            Mix::Both => "both",
            Mix::Floor => "floor",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Debug)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Broadcast,
    Targeted,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
enum Job {
    /// Connect, then count what arrives until told to finish.
    Receive,
    /// As Receive, dropping connections at random and resuming.
    Resume,
    /// Connect and drop in a loop for `secs`.
    Churn,
}

/// What one worker does, sent as one JSON line.
#[derive(Serialize, Deserialize)]
struct Plan {
    job: Job,
    transports: Vec<Transport>,
    players: (u32, u32),
    hosts: Vec<String>,
    ports: Vec<u16>,
    failover: bool,
    secret: String,
    connect_concurrency: usize,
    read_buf: usize,
    secs: f64,
    concurrency: usize,
    fresh_tokens: bool,
    drop_every_ms: u64,
    seed: u64,
    prefix: String,
    tls_ca: Option<std::path::PathBuf>,
    tls_name: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Ready {
    connected: u64,
    failed: u64,
    connect_us: Vec<(u64, u64)>,
    first_error: Option<String>,
    cpu_us: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Report {
    /// (player, first, last, unique, gaps, dups) per connection.
    streams: Vec<(u32, u64, u64, u64, u64, u64)>,
    latency_us: Vec<(u64, u64)>,
    received: u64,
    last_recv_ns: u64,
    reconnects: u64,
    unrecovered: u64,
    closed_by_server: u64,
    errors: u64,
    first_error: Option<String>,
    /// Failover: connections the server dropped and that resumed on another node, with the
    /// wall-clock time (ns) of the last such resume, so the coordinator can time recovery.
    failovers: u64,
    last_failover_ns: u64,
    /// Churn: connections completed and their set-up times.
    connects: u64,
    connect_us: Vec<(u64, u64)>,
    cpu_us: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    match cli.cmd {
        Cmd::Worker => local.block_on(&rt, worker()),
        Cmd::Fanout(o) => local.block_on(&rt, coordinate(Scenario::Fanout, o)),
        Cmd::Hold(o) => local.block_on(&rt, coordinate(Scenario::Hold, o)),
        Cmd::Churn(o) => local.block_on(&rt, coordinate(Scenario::Churn, o)),
        Cmd::Resume(o) => local.block_on(&rt, coordinate(Scenario::Resume, o)),
        Cmd::Rooms(r) => local.block_on(&rt, coordinate(Scenario::Rooms, r.into_opts()?)),
        Cmd::Chaos(o) => local.block_on(&rt, chaos::run(o)),
    }
}

// ---------------------------------------------------------------------------------------------
// Worker

struct Ctx {
    plan: Plan,
    tls: Option<Tls>,
    hist: RefCell<Histogram<u64>>,
    received: Cell<u64>,
    last_recv_ns: Cell<u64>,
    /// Connections currently open (resume waits for all before finishing).
    open: Cell<u64>,
    dropping: Cell<bool>,
    reconnects: Cell<u64>,
    unrecovered: Cell<u64>,
    closed_by_server: Cell<u64>,
    failovers: Cell<u64>,
    last_failover_ns: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Tokens minted with `--fresh-tokens`, which numbers them.
    minted: Cell<u64>,
}

impl Ctx {
    fn on_msg(&self, check: &mut StreamCheck, m: Msg) {
        match m {
            Msg::Stream { seq, sent_ns } => {
                check.see(seq);
                let now = now_ns();
                self.received.set(self.received.get() + 1);
                self.last_recv_ns.set(now);
                if let Some(sent) = sent_ns {
                    let us = now.saturating_sub(sent) / 1000;
                    self.hist.borrow_mut().saturating_record(us.max(1));
                }
            }
            Msg::Recovery(false) => self.unrecovered.set(self.unrecovered.get() + 1),
            _ => {}
        }
    }

    fn error(&self, e: &anyhow::Error) {
        self.errors.set(self.errors.get() + 1);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }

    async fn dial(
        &self,
        player: &str,
        transport: Transport,
        host: &str,
        port: u16,
        last: Option<u64>,
    ) -> Result<Link> {
        let id = self.plan.fresh_tokens.then(|| {
            self.minted.set(self.minted.get() + 1);
            self.plan.seed << 40 | self.minted.get()
        });
        let token = mint_with_id(self.plan.secret.as_bytes(), player, 3600, id)?;
        Link::open(&Dial {
            transport,
            host,
            port,
            player,
            token: &token,
            last_event_id: last,
            read_buf: self.plan.read_buf,
            tls: self.tls.as_ref(),
        })
        .await
    }
}

async fn worker() -> Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin.next_line().await?.context("no plan")?;
    let plan: Plan = serde_json::from_str(&line)?;
    let cpu0 = proc_sample(std::process::id())?.cpu_us;
    let tls = match &plan.tls_ca {
        Some(ca) => Some(Tls::load(ca, &plan.tls_name)?),
        None => None,
    };
    let ctx = Rc::new(Ctx {
        plan,
        tls,
        hist: RefCell::new(check::histogram()),
        received: Cell::new(0),
        last_recv_ns: Cell::new(0),
        open: Cell::new(0),
        dropping: Cell::new(true),
        reconnects: Cell::new(0),
        unrecovered: Cell::new(0),
        closed_by_server: Cell::new(0),
        failovers: Cell::new(0),
        last_failover_ns: Cell::new(0),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
        minted: Cell::new(0),
    });
    if ctx.plan.job == Job::Churn {
        let report = churn(ctx.clone(), cpu0).await;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let sem = Rc::new(Semaphore::new(ctx.plan.connect_concurrency.max(1)));
    let mut tasks = Vec::new();
    let mut n = 0usize;
    for p in ctx.plan.players.0..ctx.plan.players.1 {
        for (i, &t) in ctx.plan.transports.iter().enumerate() {
            let host = ctx.plan.hosts
                [(p as usize * ctx.plan.transports.len() + n) % ctx.plan.hosts.len()]
            .clone();
            // One player's transports land on different nodes, as across a cluster they may.
            let node = (p as usize * ctx.plan.transports.len() + i) % ctx.plan.ports.len();
            n += 1;
            tasks.push(tokio::task::spawn_local(receiver(
                ctx.clone(),
                p,
                t,
                host,
                node,
                stop_rx.clone(),
                ready_tx.clone(),
                sem.clone(),
                ctx.plan.seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )));
        }
    }
    drop(ready_tx);
    let mut ready = Ready::default();
    let mut connect = check::histogram();
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(us) => {
                ready.connected += 1;
                connect.saturating_record(us.max(1));
            }
            Err(e) => {
                ready.failed += 1;
                ready.first_error.get_or_insert(e);
            }
        }
    }
    ready.connect_us = to_pairs(&connect);
    let cpu1 = proc_sample(std::process::id())?.cpu_us;
    ready.cpu_us = cpu1 - cpu0;
    println!("{}", serde_json::to_string(&ready)?);

    // "finish <quiet_ms> <deadline_ms>"
    let line = stdin.next_line().await?.unwrap_or_default();
    let mut words = line.split_whitespace().skip(1);
    let quiet: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(500);
    let deadline: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(30_000);
    ctx.dropping.set(false);
    let until = Instant::now() + Duration::from_millis(deadline);
    loop {
        let idle_ns = now_ns().saturating_sub(ctx.last_recv_ns.get());
        let all_open = (ctx.plan.job != Job::Resume && !ctx.plan.failover)
            || ctx.open.get() >= ready.connected;
        if (idle_ns >= quiet * 1_000_000 && all_open) || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The coordinator reads the server's CPU now, before closing costs it anything.
    println!("{{\"drained\":true}}");
    let _ = stdin.next_line().await?;
    let _ = stop_tx.send(true);
    let mut report = Report::default();
    for t in tasks {
        // A connection that never opened is counted in `connect_failed`, not as a stream
        // missing every event.
        if let (p, c, true) = t.await? {
            report
                .streams
                .push((p, c.first, c.last, c.unique, c.gaps, c.dups));
        }
    }
    report.latency_us = to_pairs(&ctx.hist.borrow());
    report.received = ctx.received.get();
    report.last_recv_ns = ctx.last_recv_ns.get();
    report.reconnects = ctx.reconnects.get();
    report.unrecovered = ctx.unrecovered.get();
    report.closed_by_server = ctx.closed_by_server.get();
    report.failovers = ctx.failovers.get();
    report.last_failover_ns = ctx.last_failover_ns.get();
    report.errors = ctx.errors.get();
    report.first_error = ctx.first_error.borrow().clone();
    report.cpu_us = proc_sample(std::process::id())?.cpu_us - cpu1;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn next_rand(state: &mut u64) -> u64 {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[allow(clippy::too_many_arguments)]
async fn receiver(
    ctx: Rc<Ctx>,
    p: u32,
    transport: Transport,
    host: String,
    mut node: usize,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<Result<u64, String>>,
    sem: Rc<Semaphore>,
    mut rng: u64,
) -> (u32, StreamCheck, bool) {
    let player = format!("{}{p}", ctx.plan.prefix);
    let mut check = StreamCheck::default();
    let permit = sem.acquire().await;
    let started = Instant::now();
    let opened = async {
        let port = ctx.plan.ports[node];
        let mut link = ctx.dial(&player, transport, &host, port, None).await?;
        link.until_connected(&mut |m| ctx.on_msg(&mut check, m))
            .await?;
        anyhow::Ok(link)
    }
    .await;
    drop(permit);
    let mut link = match opened {
        Ok(link) => {
            let _ = ready.send(Ok(started.elapsed().as_micros() as u64));
            link
        }
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}")));
            return (p, check, false);
        }
    };
    drop(ready);
    ctx.open.set(ctx.open.get() + 1);
    let resume = ctx.plan.job == Job::Resume;
    rng |= 1;
    let drop_at = |rng: &mut u64| {
        let mean = ctx.plan.drop_every_ms.max(1);
        Instant::now() + Duration::from_millis(mean / 2 + next_rand(rng) % mean)
    };
    let mut when = drop_at(&mut rng);
    loop {
        let drop_now = resume && ctx.dropping.get() && check.unique > 0;
        let mut on_msg = |m| ctx.on_msg(&mut check, m);
        let lost = tokio::select! {
            r = link.recv(&mut on_msg) => match r {
                Ok(true) => continue,
                Ok(false) => { ctx.closed_by_server.set(ctx.closed_by_server.get() + 1); true }
                Err(e) => { ctx.error(&e); true }
            },
            _ = stop.changed() => {
                link.close().await;
                return (p, check, true);
            }
            _ = tokio::time::sleep_until(when), if drop_now => {
                link.abort();
                false
            }
        };
        ctx.open.set(ctx.open.get() - 1);
        let failover = lost && ctx.plan.failover;
        if lost && !resume && !failover {
            return (p, check, true);
        }
        // Resume from the last event seen, retrying until it works or the run ends.
        link = loop {
            if *stop.borrow() {
                return (p, check, true);
            }
            let last = (check.unique > 0).then_some(check.last);
            if failover {
                // The node is gone (or going): try the next one, and the one after on failure.
                node = (node + 1) % ctx.plan.ports.len();
            }
            let port = ctx.plan.ports[node];
            let attempt = async {
                let mut link = ctx.dial(&player, transport, &host, port, last).await?;
                link.until_connected(&mut |m| ctx.on_msg(&mut check, m))
                    .await?;
                anyhow::Ok(link)
            };
            match attempt.await {
                Ok(link) => break link,
                Err(e) => {
                    ctx.error(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        ctx.reconnects.set(ctx.reconnects.get() + 1);
        if failover {
            ctx.failovers.set(ctx.failovers.get() + 1);
            ctx.last_failover_ns.set(now_ns());
        }
        ctx.open.set(ctx.open.get() + 1);
        when = drop_at(&mut rng);
    }
}

async fn churn(ctx: Rc<Ctx>, cpu0: u64) -> Report {
    let hist = Rc::new(RefCell::new(check::histogram()));
    let connects = Rc::new(Cell::new(0u64));
    let until = Instant::now() + Duration::from_secs_f64(ctx.plan.secs);
    let (lo, hi) = ctx.plan.players;
    let span = (hi - lo).max(1);
    let mut loops = Vec::new();
    for i in 0..ctx.plan.concurrency.max(1) {
        let (ctx, hist, connects) = (ctx.clone(), hist.clone(), connects.clone());
        loops.push(tokio::task::spawn_local(async move {
            let mut n = i as u64;
            let mut check = StreamCheck::default();
            while Instant::now() < until {
                let p = lo + (n % span as u64) as u32;
                let t =
                    ctx.plan.transports[(n as usize / span as usize) % ctx.plan.transports.len()];
                let host = &ctx.plan.hosts[n as usize % ctx.plan.hosts.len()];
                let port = ctx.plan.ports[n as usize % ctx.plan.ports.len()];
                n += ctx.plan.concurrency as u64;
                let player = format!("{}{p}", ctx.plan.prefix);
                let started = Instant::now();
                let r = async {
                    let mut link = ctx.dial(&player, t, host, port, None).await?;
                    link.until_connected(&mut |m| ctx.on_msg(&mut check, m))
                        .await?;
                    anyhow::Ok(link)
                }
                .await;
                match r {
                    Ok(link) => {
                        hist.borrow_mut()
                            .saturating_record((started.elapsed().as_micros() as u64).max(1));
                        connects.set(connects.get() + 1);
                        // A reset leaves no TIME_WAIT behind to eat the port range.
                        link.abort();
                    }
                    Err(e) => {
                        ctx.error(&e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
    Report {
        connects: connects.get(),
        connect_us: to_pairs(&hist.borrow()),
        errors: ctx.errors.get(),
        first_error: ctx.first_error.borrow().clone(),
        cpu_us: proc_sample(std::process::id())
            .map(|s| s.cpu_us - cpu0)
            .unwrap_or(0),
        ..Report::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Coordinator

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Fanout,
    Hold,
    Churn,
    Resume,
    Rooms,
}

impl Scenario {
    fn as_str(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Hold => "hold",
            Scenario::Churn => "churn",
            Scenario::Resume => "resume",
            Scenario::Rooms => "rooms",
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn spawn(plan: &Plan) -> Result<Worker> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker")?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let out = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        stdin
            .write_all(format!("{}\n", serde_json::to_string(plan)?).as_bytes())
            .await?;
        Ok(Worker { child, stdin, out })
    }

    async fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T> {
        let line = self.out.next_line().await?.context("worker ended early")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn say(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(())
    }
}

/// The nodes' CPU and RSS summed; none when there is no pid or one of them has gone (killed).
fn sample(pids: &[u32]) -> Option<ProcSample> {
    let mut sum = ProcSample::default();
    for &p in pids {
        let s = proc_sample(p).ok()?;
        sum.cpu_us += s.cpu_us;
        sum.user_us += s.user_us;
        sum.rss_bytes += s.rss_bytes;
    }
    (!pids.is_empty()).then_some(sum)
}

fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// Per-player expectations from the publishers: what each stream should hold.
struct Published {
    per_player: Vec<Option<Expected>>,
    /// The floor numbers rounds globally.
    global: Option<Expected>,
    publishes: u64,
    failed: u64,
    /// Events the server numbered (one per player named, or per player a broadcast reached).
    player_events: u64,
    /// Room publishes answered for fewer or more players than the room holds: a membership
    /// lost (or foreign) would otherwise pass unseen, since the checks expect only what the
    /// answers name.
    short: u64,
    /// From writing a publish to reading its whole answer, µs: the server's side of the
    /// latency, apart from the spread to the receivers.
    rtt: Histogram<u64>,
    first_error: Option<String>,
}

async fn coordinate(scenario: Scenario, o: Opts) -> Result<()> {
    if let Some(cpu) = o.cpu {
        pin_to_cpu(cpu)?;
    }
    if o.transport == Mix::Floor && o.tls_ca.is_some() {
        bail!("--tls-ca: the TCP floor is plain TCP only");
    }
    // Read here too, so a bad CA file fails the run before any worker starts.
    let tls = match &o.tls_ca {
        Some(ca) => Some(Tls::load(ca, &o.tls_name)?),
        None => None,
    };
    if o.transport != Mix::Floor && o.secret.len() < 32 {
        bail!("--secret (DUALCONN_JWT_SECRET) must be at least 32 bytes");
    }
    let admin = o
        .admin_key
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let transports = match o.room {
        Some(spec) if spec.offline => Vec::new(),
        _ => o.transport.transports(),
    };
    let per_player = transports.len();
    let total_conns = o.players as usize * per_player;
    let workers = if o.workers > 0 {
        o.workers
    } else {
        total_conns.div_ceil(o.conns_per_worker).max(1)
    };
    let hosts: Vec<String> = (1..=o.hosts.max(1))
        .map(|i| format!("127.0.0.{i}"))
        .collect();
    let job = match scenario {
        Scenario::Resume => Job::Resume,
        Scenario::Churn => Job::Churn,
        _ => Job::Receive,
    };

    // Both targets join, so the server holds the same players and rooms and the runs differ
    // only in the publish route. Before the first sample, so neither set-up nor delivery CPU
    // is billed for the joins.
    let joined = match o.room {
        Some(spec) => {
            let started = Instant::now();
            let n = join_rooms(&o, spec, &admin, tls.as_ref()).await?;
            Some((n, started.elapsed().as_secs_f64()))
        }
        None => None,
    };
    let s0 = sample(&o.server_pid);
    let me0 = proc_sample(std::process::id())?.cpu_us;
    let t0 = Instant::now();
    let mut ws = Vec::new();
    let per_worker = o.players.div_ceil(workers as u32);
    for w in 0..workers as u32 {
        let lo = (w * per_worker).min(o.players);
        let hi = ((w + 1) * per_worker).min(o.players);
        let plan = Plan {
            job,
            transports: transports.clone(),
            players: (lo, hi),
            hosts: hosts.clone(),
            ports: o.port.clone(),
            failover: o.failover,
            secret: o.secret.clone(),
            connect_concurrency: o.connect_concurrency,
            read_buf: o.read_buf,
            secs: o.secs,
            concurrency: o.concurrency,
            fresh_tokens: o.fresh_tokens,
            drop_every_ms: o.drop_every_ms,
            seed: 0x5EED ^ u64::from(w),
            prefix: o.prefix.clone(),
            tls_ca: o.tls_ca.clone(),
            tls_name: o.tls_name.clone(),
        };
        ws.push(Worker::spawn(&plan).await?);
    }

    let mut out = serde_json::Map::new();
    let put =
        |out: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: serde_json::Value| {
            out.insert(k.to_owned(), v);
        };
    put(&mut out, "scenario", scenario.as_str().into());
    put(&mut out, "label", o.label.clone().into());
    let transport = if transports.is_empty() {
        "none"
    } else {
        o.transport.as_str()
    };
    put(&mut out, "transport", transport.into());
    put(&mut out, "workers", workers.into());
    put(&mut out, "tls", tls.is_some().into());
    if let Some(spec) = o.room {
        put(&mut out, "target", spec.target.as_str().into());
        put(&mut out, "rooms", spec.rooms.into());
        put(&mut out, "room_size", spec.size.into());
        put(&mut out, "rate", o.rate().into());
        put(&mut out, "offline", spec.offline.into());
    }
    if let Some((n, secs)) = joined {
        put(&mut out, "memberships", n.into());
        put(&mut out, "membership_secs", round2(secs).into());
    }

    if scenario == Scenario::Churn {
        let mut connect = check::histogram();
        let (mut connects, mut errors, mut client_cpu, mut first_error) = (0, 0, 0, None);
        for w in &mut ws {
            let r: Report = w.read().await?;
            add_pairs(&mut connect, &r.connect_us);
            connects += r.connects;
            errors += r.errors;
            client_cpu += r.cpu_us;
            first_error = first_error.or(r.first_error);
        }
        let wall = t0.elapsed().as_secs_f64();
        let s1 = sample(&o.server_pid);
        client_cpu += proc_sample(std::process::id())?.cpu_us - me0;
        put(&mut out, "connects", connects.into());
        put(
            &mut out,
            "connects_per_s",
            round1(connects as f64 / wall).into(),
        );
        put(&mut out, "connect_p50_us", pct(&connect, 0.5).into());
        put(&mut out, "connect_p99_us", pct(&connect, 0.99).into());
        put(&mut out, "errors", errors.into());
        put(&mut out, "first_error", first_error.into());
        put(
            &mut out,
            "client_cpu_pct",
            round1(client_cpu as f64 / 1e4 / wall).into(),
        );
        if let (Some(a), Some(b)) = (s0, s1) {
            put(
                &mut out,
                "server_cpu_us_per_conn",
                round2((b.cpu_us - a.cpu_us) as f64 / connects.max(1) as f64).into(),
            );
            put(
                &mut out,
                "server_user_us_per_conn",
                round2((b.user_us - a.user_us) as f64 / connects.max(1) as f64).into(),
            );
            put(
                &mut out,
                "server_cpu_pct",
                round1((b.cpu_us - a.cpu_us) as f64 / 1e4 / wall).into(),
            );
        }
        for mut w in ws {
            let _ = w.child.wait().await;
        }
        return finish(out);
    }

    // Everyone connects.
    let mut connect = check::histogram();
    let (mut connected, mut failed, mut client_cpu_connect, mut first_error) =
        (0u64, 0u64, 0u64, None);
    for w in &mut ws {
        let r: Ready = w.read().await?;
        connected += r.connected;
        failed += r.failed;
        client_cpu_connect += r.cpu_us;
        add_pairs(&mut connect, &r.connect_us);
        first_error = first_error.or(r.first_error);
    }
    let connect_wall = t0.elapsed().as_secs_f64();
    let s1 = sample(&o.server_pid);
    let r1 = o.redis_pid.and_then(|p| proc_sample(p).ok());
    put(&mut out, "connections", connected.into());
    put(&mut out, "connect_failed", failed.into());
    if failed > 0 {
        put(&mut out, "connect_error", first_error.clone().into());
    }
    put(&mut out, "connect_p50_us", pct(&connect, 0.5).into());
    put(&mut out, "connect_p99_us", pct(&connect, 0.99).into());
    put(
        &mut out,
        "connects_per_s",
        round1(connected as f64 / connect_wall).into(),
    );
    let me1 = proc_sample(std::process::id())?.cpu_us;
    put(
        &mut out,
        "client_cpu_pct_connect",
        round1((client_cpu_connect + me1 - me0) as f64 / 1e4 / connect_wall).into(),
    );
    if let (Some(a), Some(b)) = (s0, s1) {
        put(
            &mut out,
            "server_cpu_us_per_conn",
            round2((b.cpu_us - a.cpu_us) as f64 / connected.max(1) as f64).into(),
        );
    }

    let phase_start = Instant::now();
    let phase_start_ns = now_ns();
    let killed_ns = Rc::new(Cell::new(0u64));
    if let Some(pid) = o.kill_pid {
        let (killed_ns, after) = (killed_ns.clone(), o.kill_after_secs);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_secs_f64(after)).await;
            // SAFETY: kill(2) has no memory preconditions; a wrong pid only fails.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                killed_ns.set(now_ns());
            }
        });
    }
    let published = match scenario {
        Scenario::Hold => {
            tokio::time::sleep(Duration::from_secs_f64(o.secs)).await;
            None
        }
        _ if o.transport == Mix::Floor => Some(publish_floor(&o).await?),
        _ => Some(publish(&o, &admin, tls.as_ref()).await?),
    };
    let publish_wall = phase_start.elapsed().as_secs_f64();
    let s2 = sample(&o.server_pid);
    for w in &mut ws {
        w.say(&format!("finish {} 30000", o.quiet_ms)).await?;
    }
    for w in &mut ws {
        let _: serde_json::Value = w.read().await?;
    }
    let s3 = sample(&o.server_pid);
    let r3 = o.redis_pid.and_then(|p| proc_sample(p).ok());
    for w in &mut ws {
        w.say("close").await?;
    }
    let mut latency = check::histogram();
    let (mut gaps, mut dups, mut missing, mut unique_total, mut last_recv) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut reconnects, mut unrecovered, mut closed, mut errors, mut client_cpu) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut failovers, mut last_failover) = (0u64, 0u64);
    let mut err = None;
    for w in &mut ws {
        let r: Report = w.read().await?;
        add_pairs(&mut latency, &r.latency_us);
        for &(p, first, last, unique, g, d) in &r.streams {
            let c = StreamCheck {
                first,
                last,
                unique,
                gaps: g,
                dups: d,
            };
            let expected = match &published {
                Some(pb) if o.transport == Mix::Floor => pb.global,
                Some(pb) => pb.per_player.get(p as usize).copied().flatten(),
                None => None,
            };
            gaps += g;
            unique_total += unique;
            missing += c.missing_at_ends(expected);
            dups += d;
        }
        last_recv = last_recv.max(r.last_recv_ns);
        reconnects += r.reconnects;
        unrecovered += r.unrecovered;
        closed += r.closed_by_server;
        failovers += r.failovers;
        last_failover = last_failover.max(r.last_failover_ns);
        errors += r.errors;
        client_cpu += r.cpu_us;
        err = err.or(r.first_error);
    }
    let me3 = proc_sample(std::process::id())?.cpu_us;
    client_cpu += me3 - me1;
    for mut w in ws {
        let _ = w.child.wait().await;
    }

    // Deliveries: distinct stream events that reached a connection (duplicates apart).
    let received = unique_total;
    if let Some(pb) = &published {
        let span = (last_recv.max(phase_start_ns) - phase_start_ns) as f64 / 1e9;
        put(&mut out, "publishes", pb.publishes.into());
        put(&mut out, "publish_failed", pb.failed.into());
        if let Some(e) = &pb.first_error {
            put(&mut out, "publish_error", e.clone().into());
        }
        put(
            &mut out,
            "publishes_per_s",
            round1(pb.publishes as f64 / publish_wall).into(),
        );
        put(&mut out, "player_events", pb.player_events.into());
        if o.room.is_some() {
            put(&mut out, "publish_short", pb.short.into());
        }
        put(&mut out, "deliveries", received.into());
        put(
            &mut out,
            "deliveries_per_s",
            round1(received as f64 / span.max(1e-9)).into(),
        );
        if !pb.rtt.is_empty() {
            put(&mut out, "publish_rtt_p50_us", pct(&pb.rtt, 0.5).into());
            put(&mut out, "publish_rtt_p99_us", pct(&pb.rtt, 0.99).into());
            put(&mut out, "publish_rtt_max_us", pb.rtt.max().into());
        }
        put(&mut out, "latency_p50_us", pct(&latency, 0.5).into());
        put(&mut out, "latency_p99_us", pct(&latency, 0.99).into());
        put(&mut out, "latency_max_us", latency.max().into());
        // Gaps: numbers skipped inside a stream plus events missing at either end.
        put(&mut out, "gaps", (gaps + missing).into());
        put(&mut out, "duplicates", dups.into());
        put(
            &mut out,
            "client_cpu_pct",
            round1(client_cpu as f64 / 1e4 / span.max(publish_wall)).into(),
        );
        if let (Some(a), Some(b)) = (s1, s3) {
            if received > 0 {
                put(
                    &mut out,
                    "server_cpu_us_per_delivery",
                    round2((b.cpu_us - a.cpu_us) as f64 / received as f64).into(),
                );
            }
            put(
                &mut out,
                "server_cpu_us_per_player_event",
                round2((b.cpu_us - a.cpu_us) as f64 / pb.player_events.max(1) as f64).into(),
            );
            put(
                &mut out,
                "server_cpu_pct",
                round1((b.cpu_us - a.cpu_us) as f64 / 1e4 / span.max(publish_wall)).into(),
            );
        }
        if let (Some(a), Some(b)) = (r1, r3) {
            let cpu = (b.cpu_us - a.cpu_us) as f64;
            put(
                &mut out,
                "redis_cpu_us_per_delivery",
                round2(cpu / received.max(1) as f64).into(),
            );
            put(
                &mut out,
                "redis_cpu_us_per_player_event",
                round2(cpu / pb.player_events.max(1) as f64).into(),
            );
            put(
                &mut out,
                "redis_cpu_pct",
                round1(cpu / 1e4 / span.max(publish_wall)).into(),
            );
        }
    }
    if o.failover {
        put(&mut out, "failovers", failovers.into());
    }
    if o.kill_pid.is_some() {
        let k = killed_ns.get();
        put(&mut out, "killed", (k > 0).into());
        if k > 0 && last_failover >= k {
            // From the SIGKILL to the last dropped connection's `connected` on another node.
            put(
                &mut out,
                "recovery_ms",
                round1((last_failover - k) as f64 / 1e6).into(),
            );
        }
    }
    if scenario == Scenario::Resume {
        put(&mut out, "reconnects", reconnects.into());
        put(&mut out, "unrecovered", unrecovered.into());
    }
    put(&mut out, "closed_by_server", closed.into());
    put(&mut out, "errors", errors.into());
    if let Some(e) = err {
        put(&mut out, "first_error", e.into());
    }
    if let (Some(a), Some(b), Some(c)) = (s0, s1, s2) {
        put(&mut out, "server_rss_base_bytes", a.rss_bytes.into());
        put(&mut out, "server_rss_bytes", c.rss_bytes.into());
        // No connections (rooms --offline): no per-connection figure.
        if let Some(per_conn) = c
            .rss_bytes
            .saturating_sub(a.rss_bytes)
            .checked_div(connected)
        {
            put(&mut out, "server_rss_per_conn_bytes", per_conn.into());
        }
        if scenario == Scenario::Hold {
            put(
                &mut out,
                "server_idle_cpu_pct",
                round2((c.cpu_us - b.cpu_us) as f64 / 1e4 / publish_wall).into(),
            );
        }
    }
    finish(out)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn finish(out: serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let v = serde_json::Value::Object(out);
    println!("{v}");
    eprintln!("{}", summary(&v));
    Ok(())
}

fn summary(v: &serde_json::Value) -> String {
    let g = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let ms = |k: &str| {
        g(k).as_f64()
            .map_or("-".into(), |x| format!("{:.2} ms", x / 1000.0))
    };
    let mut s = format!(
        "{} {} {}:",
        g("scenario").as_str().unwrap_or(""),
        g("label").as_str().unwrap_or(""),
        g("transport").as_str().unwrap_or("")
    );
    if let Some(t) = g("target").as_str() {
        s.insert_str(s.len() - 1, &format!(" --target {t}"));
    }
    if let Some(c) = g("connections").as_u64() {
        s += &format!(
            " {c} conns ({} failed), connect p50 {} p99 {}, {}/s;",
            g("connect_failed"),
            ms("connect_p50_us"),
            ms("connect_p99_us"),
            g("connects_per_s")
        );
    }
    if let Some(c) = g("connects").as_u64() {
        s += &format!(
            " {c} connects, {}/s, connect p50 {} p99 {}, errors {};",
            g("connects_per_s"),
            ms("connect_p50_us"),
            ms("connect_p99_us"),
            g("errors")
        );
    }
    if g("deliveries").is_u64() {
        s += &format!(
            "\n  {} publishes, {} deliveries ({}/s), latency p50 {} p99 {} max {}, gaps {}, duplicates {}",
            g("publishes"),
            g("deliveries"),
            g("deliveries_per_s"),
            ms("latency_p50_us"),
            ms("latency_p99_us"),
            ms("latency_max_us"),
            g("gaps"),
            g("duplicates")
        );
    }
    if let Some(f) = g("failovers").as_u64() {
        s += &format!(", failovers {f}, recovery {} ms", g("recovery_ms"));
    }
    if g("reconnects").is_u64() {
        s += &format!(
            ", reconnects {}, unrecovered {}",
            g("reconnects"),
            g("unrecovered")
        );
    }
    if let Some(r) = g("server_rss_per_conn_bytes").as_u64() {
        s += &format!("\n  server: {:.2} KiB RSS/conn", r as f64 / 1024.0);
    }
    for (k, label) in [
        ("server_cpu_us_per_conn", "CPU-µs/conn"),
        ("server_cpu_us_per_delivery", "CPU-µs/delivery"),
        ("server_cpu_us_per_player_event", "CPU-µs/player-event"),
        ("server_cpu_pct", "CPU %"),
        ("redis_cpu_us_per_player_event", "Redis CPU-µs/player-event"),
        ("redis_cpu_pct", "Redis CPU %"),
        ("client_cpu_pct", "client CPU %"),
    ] {
        if let Some(x) = g(k).as_f64() {
            s += &format!(", {label} {x}");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Publishers

fn payload(o: &Opts, k: u64) -> String {
    format!(
        r#"{{"t":{},"k":{k},"pad":"{}"}}"#,
        now_ns(),
        "x".repeat(o.pad)
    )
}

#[derive(Deserialize)]
struct PublishAnswer {
    events: Vec<PublishedEvent>,
}

#[derive(Deserialize)]
struct PublishedEvent {
    player_id: String,
    sequence_number: u64,
}

#[derive(Deserialize)]
struct Membership {
    member_count: usize,
}

/// Puts every player in its room, once, through the first node (under Redis membership is
/// cluster-wide). Answers how many joins were made. Each room must end up holding exactly its
/// players: a member left from another run would get events the checks do not expect.
async fn join_rooms(o: &Opts, spec: RoomSpec, admin: &str, tls: Option<&Tls>) -> Result<u64> {
    let mut client =
        dualconn_bench::http::Client::connect_with("127.0.0.1", o.port[0], tls).await?;
    let mut joined = 0u64;
    for r in 0..spec.rooms {
        let room = spec.id(&o.prefix, r);
        let mut count = 0;
        for p in spec.members(r) {
            let path = format!("/api/rooms/{room}/members/{}{p}", o.prefix);
            let (status, body) = client.put(&path, admin, b"").await?;
            if status != 200 {
                bail!("PUT {path}: {status}: {}", String::from_utf8_lossy(body));
            }
            let m: Membership = serde_json::from_slice(body)
                .with_context(|| format!("PUT {path}: {}", String::from_utf8_lossy(body)))?;
            count = m.member_count;
            joined += 1;
        }
        if count != spec.size as usize {
            bail!(
                "room {room} holds {count} members after the joins, not {}: use a fresh server \
                 or another --prefix",
                spec.size
            );
        }
    }
    Ok(joined)
}

async fn publish(o: &Opts, admin: &str, tls: Option<&Tls>) -> Result<Published> {
    let shared = Rc::new(RefCell::new(Published {
        per_player: vec![None; o.players as usize],
        global: None,
        publishes: 0,
        failed: 0,
        player_events: 0,
        short: 0,
        rtt: check::histogram(),
        first_error: None,
    }));
    let next_player = Rc::new(Cell::new(0u32));
    let count = Rc::new(Cell::new(0u64));
    let k = o.publishers.max(1);
    let period = Duration::from_secs_f64(k as f64 / o.rate().max(0.001));
    let until = Instant::now() + Duration::from_secs_f64(o.secs);
    let mut tasks = Vec::new();
    for i in 0..k {
        let (o, admin, shared, next_player, count, tls) = (
            o.clone(),
            admin.to_owned(),
            shared.clone(),
            next_player.clone(),
            count.clone(),
            tls.cloned(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            // One keep-alive client per node, opened on first use and again after a failure.
            let mut clients: Vec<Option<dualconn_bench::http::Client>> =
                o.port.iter().map(|_| None).collect();
            // A node killed on purpose fails some publishes; they are counted, not fatal.
            let tolerate = o.failover || o.kill_pid.is_some();
            let start = Instant::now() + period.mul_f64(i as f64 / k as f64);
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if Instant::now() >= until || (o.publishes > 0 && count.get() >= o.publishes) {
                    break;
                }
                let n = count.get();
                count.set(n + 1);
                let data = payload(&o, n);
                let (path, body) = match (o.room, o.mode) {
                    // Rooms are published in turn, by publish number, so each gets its share.
                    (Some(spec), _) => {
                        let r = (n % u64::from(spec.rooms)) as u32;
                        let room = spec.id(&o.prefix, r);
                        match spec.target {
                            Target::Room => (
                                format!("/api/rooms/{room}/publish"),
                                format!(r#"{{"event_type":"bench","data":{data}}}"#),
                            ),
                            Target::List => {
                                let ids: Vec<String> = spec
                                    .members(r)
                                    .map(|p| format!("\"{}{p}\"", o.prefix))
                                    .collect();
                                // `room_id` too, so both targets write the same envelope to
                                // every connection and differ only in how members are found.
                                (
                                    "/api/publish".to_owned(),
                                    format!(
                                        r#"{{"player_ids":[{}],"room_id":"{room}","event_type":"bench","data":{data}}}"#,
                                        ids.join(",")
                                    ),
                                )
                            }
                        }
                    }
                    (None, Mode::Broadcast) => (
                        "/api/publish".to_owned(),
                        format!(r#"{{"broadcast":true,"event_type":"bench","data":{data}}}"#),
                    ),
                    (None, Mode::Targeted) => {
                        let mut ids = String::new();
                        for j in 0..o.batch.max(1) {
                            let p = next_player.get();
                            next_player.set((p + 1) % o.players.max(1));
                            if j > 0 {
                                ids.push(',');
                            }
                            ids += &format!("\"{}{p}\"", o.prefix);
                        }
                        (
                            "/api/publish".to_owned(),
                            format!(
                                r#"{{"player_ids":[{ids}],"event_type":"bench","data":{data}}}"#
                            ),
                        )
                    }
                };
                // Round-robin over the nodes, by publish number so it holds across publishers.
                let node = n as usize % clients.len();
                // A server that never answers must not hang the run.
                let sent = tokio::time::timeout(Duration::from_secs(10), async {
                    if clients[node].is_none() {
                        clients[node] = Some(
                            dualconn_bench::http::Client::connect_with(
                                "127.0.0.1",
                                o.port[node],
                                tls.as_ref(),
                            )
                            .await?,
                        );
                    }
                    let client = clients[node].as_mut().context("client just opened")?;
                    let asked = Instant::now();
                    let (status, answer) =
                        client.post(&path, &admin, body.as_bytes()).await?;
                    anyhow::Ok((status, answer.to_vec(), asked.elapsed()))
                })
                .await
                .context("no answer to a publish within 10 s")
                .and_then(|r| r);
                let (status, answer, rtt) = match sent {
                    Ok(a) => a,
                    Err(e) if tolerate => {
                        clients[node] = None;
                        let mut pb = shared.borrow_mut();
                        pb.publishes += 1;
                        pb.failed += 1;
                        pb.first_error.get_or_insert(format!("{e:#}"));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let answer = answer.as_slice();
                let mut pb = shared.borrow_mut();
                pb.publishes += 1;
                pb.rtt
                    .saturating_record((rtt.as_micros() as u64).max(1));
                if status != 200 {
                    pb.failed += 1;
                    if pb.first_error.is_none() {
                        pb.first_error =
                            Some(format!("{status}: {}", String::from_utf8_lossy(answer)));
                    }
                    continue;
                }
                let answer: PublishAnswer = serde_json::from_slice(answer)?;
                pb.player_events += answer.events.len() as u64;
                if o.room.is_some_and(|spec| answer.events.len() != spec.size as usize) {
                    pb.short += 1;
                }
                for ev in answer.events {
                    if let Some(slot) = ev
                        .player_id
                        .strip_prefix(o.prefix.as_str())
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| pb.per_player.get_mut(i))
                    {
                        Expected::widen(slot, ev.sequence_number);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let pb = Rc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("publisher still running"))?;
    Ok(pb.into_inner())
}

/// The floor's control port (`port + 1`): a line with the send time in, the round number out.
async fn publish_floor(o: &Opts) -> Result<Published> {
    let mut control = TcpStream::connect(("127.0.0.1", o.port[0] + 1))
        .await
        .context("floor control port")?;
    control.set_nodelay(true)?;
    let mut pb = Published {
        per_player: Vec::new(),
        global: None,
        publishes: 0,
        failed: 0,
        player_events: 0,
        short: 0,
        rtt: check::histogram(),
        first_error: None,
    };
    let period = Duration::from_secs_f64(1.0 / o.rate().max(0.001));
    let until = Instant::now() + Duration::from_secs_f64(o.secs);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = Vec::with_capacity(64);
    loop {
        tick.tick().await;
        if Instant::now() >= until || (o.publishes > 0 && pb.publishes >= o.publishes) {
            break;
        }
        let sent = Instant::now();
        control
            .write_all(format!("{}\n", now_ns()).as_bytes())
            .await?;
        buf.clear();
        loop {
            let mut b = [0u8; 32];
            let n = control.read(&mut b).await?;
            if n == 0 {
                bail!("floor closed its control port");
            }
            buf.extend_from_slice(&b[..n]);
            if buf.ends_with(b"\n") {
                break;
            }
        }
        let round: u64 = std::str::from_utf8(&buf)?.trim().parse()?;
        // Answered once every socket has been written: comparable with a publish's answer.
        pb.rtt
            .saturating_record((sent.elapsed().as_micros() as u64).max(1));
        pb.publishes += 1;
        Expected::widen(&mut pb.global, round);
    }
    Ok(pb)
}
