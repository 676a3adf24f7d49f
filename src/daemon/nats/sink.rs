//! The sink task: connects, makes the stream ready, publishes with bounded pipelining and
//! waits for each ack; on any failure switches to the spool and flushes it, in order, once the
//! server is back.
//!
//! Order: one connection, one FIFO of in-flight publishes; after a failure nothing new is
//! published until every in-flight publish has resolved and the failures are in the spool, so
//! the spool replays events in the order they happened. (A publish that was stored but whose ack
//! was lost is replayed too; JetStream drops the copy by its `Nats-Msg-Id` within the duplicate
//! window: at-least-once, never silently lost.)

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::Arbiter;
use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::settings::NatsSettings;
use super::spool::{Spool, SpoolRecord};
use super::status::{SinkState, SinkStatus};
use super::stream::{StreamError, StreamSpec};
use super::{dropped_record, Feed, Running, QUEUE};
use crate::config::ConfigError;
use crate::network::Network;
use crate::Error;

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, jetstream::context::PublishError>> + Send>>;

/// How often the spool is fsynced and a flush is tried while spooling.
const TICK: Duration = Duration::from_millis(250);

/// Stops the sink task.
pub(crate) struct StopHandle {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
    arbiter: Arbiter,
    limit: Duration,
}

impl StopHandle {
    /// Publishes or spools what is queued, waits for in-flight acks (spooling failures), syncs
    /// the spool; gives up after the ack timeout plus a margin.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(self.limit, self.done).await;
        self.arbiter.stop();
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn connect_options(
    s: &NatsSettings,
    daemon: &str,
    conn: watch::Sender<bool>,
) -> Result<async_nats::ConnectOptions, Error> {
    let mut o = async_nats::ConnectOptions::new();
    if let Some(path) = &s.creds_file {
        o = o.credentials_file(path).await.map_err(|e| {
            ConfigError::new("sink.nats.creds_file", format!("cannot use credentials file {path}: {e}"))
        })?;
    }
    if let (Some(user), Some(password)) = (&s.user, &s.password) {
        o = o.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &s.token {
        o = o.token(token.clone());
    }
    if let Some(ca) = &s.tls_ca_file {
        o = o.add_root_certificates(ca.into());
    }
    if let (Some(cert), Some(key)) = (&s.tls_client_cert, &s.tls_client_key) {
        o = o.add_client_certificate(cert.into(), key.into());
    }
    let ack_timeout = Duration::from_millis(s.ack_timeout_ms);
    Ok(o.require_tls(s.tls_required)
        .name(format!("btcpeerd {daemon}"))
        .connection_timeout(ack_timeout)
        .retry_on_initial_connect()
        .max_reconnects(None)
        // Quick first retries (a restarted server is back within seconds), then every 2 s.
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(100u64 << attempt.min(4)).min(Duration::from_secs(2))
        })
        .event_callback(move |event| {
            let conn = conn.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        info!("NATS connected");
                        conn.send_replace(true);
                    }
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        warn!(%event, "NATS link down: events go to the spool");
                        conn.send_replace(false);
                    }
                    other => warn!(event = %other, "NATS"),
                }
            }
        }))
}

/// Starts the sink: opens the spool, connects (waiting up to the ack timeout), makes the stream
/// ready when the server is reachable (a mismatched stream is a configuration error), and
/// spawns the task on its own thread. An unreachable server is not an error: events spool.
pub(crate) async fn start(s: &NatsSettings, network: Network, data_dir: &Path) -> Result<Running, Error> {
    let prefix = s.prefix(network);
    let daemon = s.daemon_id();
    let boot = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let status = Arc::new(SinkStatus::new(s.stream.clone(), prefix.clone()));
    let dir = data_dir.join("nats-spool");
    let (spool, report) = Spool::open(&dir, s.spool_max_bytes).map_err(|source| Error::Io {
        context: format!("cannot open the NATS spool in {}", dir.display()),
        source,
    })?;
    if report.cursor_damaged {
        error!(dir = %dir.display(), "NATS spool cursor unreadable: replaying the spool from its oldest event");
    }
    for (segment, problem) in &report.damaged_segments {
        error!(dir = %dir.display(), segment, %problem, "NATS spool segment damaged: events after the damage are lost");
    }
    if report.records > 0 {
        info!(records = report.records, "NATS spool holds events from a previous run");
    }
    let spec = StreamSpec {
        name: s.stream.clone(),
        subject: format!("{prefix}.>"),
        duplicate_window: Duration::from_secs(s.duplicate_window_secs),
        max_age: Duration::from_secs(s.max_age_secs),
    };
    let (conn_tx, mut conn) = watch::channel(false);
    let options = connect_options(s, &daemon, conn_tx).await?;
    let servers: Vec<async_nats::ServerAddr> = s.servers.iter().filter_map(|u| u.parse().ok()).collect();
    // The client's connection task runs on the sink's own thread (it is spawned where
    // `connect` runs), away from the group and the HTTP API.
    let arbiter = Arbiter::new();
    let (client_tx, client_rx) = oneshot::channel();
    arbiter.spawn(async move {
        let _ = client_tx.send(options.connect(servers).await);
    });
    let client = match client_rx.await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            arbiter.stop();
            return Err(ConfigError::new("sink.nats.servers", e.to_string()).into());
        }
        Err(_) => return Err(ConfigError::new("sink.nats.servers", "the NATS client thread stopped").into()),
    };
    let ack_timeout = Duration::from_millis(s.ack_timeout_ms);
    let js = jetstream::context::ContextBuilder::new()
        .timeout(ack_timeout)
        .max_ack_inflight(s.max_in_flight + 1)
        .build(client);
    let _ = tokio::time::timeout(ack_timeout, conn.wait_for(|c| *c)).await;
    let mut stream_ready = false;
    if *conn.borrow() {
        match spec.ensure(&js).await {
            Ok(()) => stream_ready = true,
            Err(StreamError::Mismatch(m)) => {
                arbiter.stop();
                return Err(ConfigError::new("sink.nats.stream", m.to_string()).into());
            }
            Err(e) => warn!(error = %e, "NATS stream not ready yet: events spool until it is"),
        }
    } else {
        warn!(servers = ?s.servers, "NATS server unreachable at start: events spool until it answers");
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let overflow = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let task = Task {
        js,
        spool,
        spec,
        stream_ready,
        conn,
        rx,
        status: status.clone(),
        overflow: overflow.clone(),
        max_in_flight: s.max_in_flight,
        prefix: prefix.clone(),
        daemon: daemon.clone(),
        boot,
        dropped_events: 0,
        in_flight: VecDeque::new(),
        spooling: true,
        io_failed: false,
        stream_warned: false,
        publish_dropped: s.publishes("dropped"),
    };
    arbiter.spawn(async move {
        task.run(stop_rx).await;
        let _ = done_tx.send(());
    });
    info!(stream = %s.stream, %prefix, %daemon, "NATS sink started");
    let feed =
        Feed { tx, settings: s.clone(), prefix, daemon, boot, seq: 0, status: status.clone(), overflow };
    let stop =
        StopHandle { stop: stop_tx, done: done_rx, arbiter, limit: ack_timeout * 2 + Duration::from_secs(2) };
    Ok(Running { feed, status, stop })
}

struct Task {
    js: jetstream::Context,
    spool: Spool,
    spec: StreamSpec,
    stream_ready: bool,
    conn: watch::Receiver<bool>,
    rx: mpsc::Receiver<SpoolRecord>,
    status: Arc<SinkStatus>,
    overflow: Arc<AtomicU64>,
    max_in_flight: usize,
    prefix: String,
    daemon: String,
    boot: u128,
    /// `dropped` events published so far (their ids).
    dropped_events: u64,
    in_flight: VecDeque<(SpoolRecord, AckFuture)>,
    /// Events go to the spool (the link failed, or the spool is not empty yet).
    spooling: bool,
    io_failed: bool,
    stream_warned: bool,
    /// `dropped` is among the events to publish.
    publish_dropped: bool,
}

async fn send(
    js: &jetstream::Context,
    record: &SpoolRecord,
) -> Result<AckFuture, jetstream::context::PublishError> {
    let publish = PublishMessage::build().payload(record.payload.clone().into()).message_id(&record.msg_id);
    let fut = js.send_publish(record.subject.clone(), publish).await?;
    Ok(Box::pin(fut.into_future()))
}

async fn first_ack(
    in_flight: &mut VecDeque<(SpoolRecord, AckFuture)>,
) -> Result<PublishAck, jetstream::context::PublishError> {
    match in_flight.front_mut() {
        Some((_, fut)) => fut.await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.update_status();
            // New events are taken only when they can keep their order: publishing live with
            // room in flight, or spooling once nothing is in flight any more.
            let live = !self.spooling && *self.conn.borrow();
            let take =
                if live { self.in_flight.len() < self.max_in_flight } else { self.in_flight.is_empty() };
            tokio::select! {
                biased;
                _ = &mut stop => break,
                ack = first_ack(&mut self.in_flight), if !self.in_flight.is_empty() => {
                    let Some((record, _)) = self.in_flight.pop_front() else { continue };
                    match ack {
                        Ok(ack) => self.acked(&ack),
                        Err(e) => {
                            warn!(error = %e, "NATS publish not acknowledged: spooling");
                            self.spooling = true;
                            self.spool_record(&record);
                            // Everything after it goes to the spool too, in order.
                            while let Some((record, _)) = self.in_flight.pop_front() {
                                self.spool_record(&record);
                            }
                        }
                    }
                }
                record = self.rx.recv(), if take => {
                    let Some(record) = record else { break };
                    self.status.queued.fetch_sub(1, Relaxed);
                    if live {
                        self.publish(record).await;
                        // A burst: publish what is queued without a round through select.
                        while !self.spooling && self.in_flight.len() < self.max_in_flight {
                            let Ok(record) = self.rx.try_recv() else { break };
                            self.status.queued.fetch_sub(1, Relaxed);
                            self.publish(record).await;
                        }
                    } else {
                        // Once anything is spooled, everything after it is too until the
                        // spool is flushed (the link may come back before the next tick).
                        self.spooling = true;
                        self.spool_record(&record);
                    }
                }
                _ = tick.tick() => {
                    if self.spooling {
                        if let Err(e) = self.spool.sync() {
                            self.io_error(&e);
                        }
                        if *self.conn.borrow() && self.in_flight.is_empty() && self.flush().await {
                            info!(published = self.status.published.load(Relaxed), "NATS spool flushed: publishing live");
                            self.spooling = false;
                        }
                    }
                }
            }
        }
        self.shutdown().await;
    }

    /// At shutdown: what is queued is published (live) or spooled, in-flight acks are awaited
    /// (failures spooled), the spool is synced.
    async fn shutdown(mut self) {
        self.rx.close();
        while let Some(record) = self.rx.recv().await {
            self.status.queued.fetch_sub(1, Relaxed);
            if !self.spooling && *self.conn.borrow() && self.in_flight.len() < self.max_in_flight {
                self.publish(record).await;
            } else {
                while let Some((r, fut)) = self.in_flight.pop_front() {
                    self.resolve(r, fut).await;
                }
                self.spool_record(&record);
            }
        }
        while let Some((r, fut)) = self.in_flight.pop_front() {
            self.resolve(r, fut).await;
        }
        if let Err(e) = self.spool.sync() {
            self.io_error(&e);
        }
        self.update_status();
        info!(spooled = self.spool.records(), "NATS sink stopped");
    }

    async fn resolve(&mut self, record: SpoolRecord, fut: AckFuture) {
        match fut.await {
            Ok(ack) => self.acked(&ack),
            Err(_) => {
                self.spooling = true;
                self.spool_record(&record);
            }
        }
    }

    fn acked(&mut self, ack: &PublishAck) {
        self.status.published.fetch_add(1, Relaxed);
        if ack.duplicate {
            self.status.duplicates.fetch_add(1, Relaxed);
        }
        self.status.last_ack.store(now_secs(), Relaxed);
    }

    async fn publish(&mut self, record: SpoolRecord) {
        match send(&self.js, &record).await {
            Ok(fut) => self.in_flight.push_back((record, fut)),
            Err(e) => {
                warn!(error = %e, "NATS publish failed: spooling");
                self.spooling = true;
                // Not yet in flight: the in-flight ones come first in the spool.
                while let Some((r, fut)) = self.in_flight.pop_front() {
                    self.resolve(r, fut).await;
                }
                self.spool_record(&record);
            }
        }
    }

    fn spool_record(&mut self, record: &SpoolRecord) {
        let before = self.spool.dropped();
        match self.spool.append(record) {
            Ok(()) => {
                self.io_failed = false;
                let dropped = self.spool.dropped().saturating_sub(before);
                if dropped > 0 {
                    if self.status.dropped.load(Relaxed) == 0 {
                        warn!("NATS spool full: dropping the oldest events");
                    }
                    self.status.dropped.fetch_add(dropped, Relaxed);
                }
            }
            Err(e) => {
                self.status.dropped.fetch_add(1, Relaxed);
                self.io_error(&e);
            }
        }
    }

    fn io_error(&mut self, e: &std::io::Error) {
        if !self.io_failed {
            error!(error = %e, "NATS spool write failed: events are lost until it works again");
            self.io_failed = true;
        }
    }

    /// Makes the stream ready, reports drops, then publishes the spool oldest first in batches
    /// of `max_in_flight`, acking spool positions as JetStream acks. True when it is empty.
    async fn flush(&mut self) -> bool {
        if self.status.state() == SinkState::Refused {
            return false;
        }
        if !self.stream_ready {
            match self.spec.ensure(&self.js).await {
                Ok(()) => {
                    self.stream_ready = true;
                    self.stream_warned = false;
                }
                Err(StreamError::Mismatch(m)) => {
                    error!(error = %m, "NATS stream does not fit: nothing is published; events stay in the spool");
                    self.status.set_state(SinkState::Refused);
                    return false;
                }
                Err(e) => {
                    // Once per outage, not every tick.
                    if !self.stream_warned {
                        warn!(error = %e, "NATS stream not ready: events stay in the spool");
                        self.stream_warned = true;
                    }
                    return false;
                }
            }
        }
        let dropped = self.spool.dropped() + self.overflow.load(Relaxed);
        if dropped > 0 && !self.publish_dropped {
            warn!(dropped, "NATS sink lost events while the server was unreachable");
            self.overflow.fetch_sub(dropped - self.spool.dropped(), Relaxed);
            if let Err(e) = self.spool.clear_dropped() {
                self.io_error(&e);
            }
        } else if dropped > 0 {
            let record = dropped_record(&self.prefix, &self.daemon, self.boot, self.dropped_events, dropped);
            let Ok(fut) = send(&self.js, &record).await else { return false };
            match fut.await {
                Ok(ack) => {
                    self.acked(&ack);
                    warn!(dropped, "NATS sink lost events while the server was unreachable; reported");
                    self.dropped_events += 1;
                    self.overflow.fetch_sub(dropped - self.spool.dropped(), Relaxed);
                    if let Err(e) = self.spool.clear_dropped() {
                        self.io_error(&e);
                    }
                }
                Err(_) => return false,
            }
        }
        loop {
            // Events that arrived meanwhile join the spool's end, keeping their order.
            while let Ok(record) = self.rx.try_recv() {
                self.status.queued.fetch_sub(1, Relaxed);
                self.spool_record(&record);
            }
            self.update_status();
            let batch = match self.spool.peek(self.max_in_flight) {
                Ok(batch) => batch,
                Err(e) => {
                    self.io_error(&e);
                    return false;
                }
            };
            if batch.is_empty() {
                return true;
            }
            let mut futs = Vec::with_capacity(batch.len());
            for (record, _) in &batch {
                match send(&self.js, record).await {
                    Ok(fut) => futs.push(fut),
                    Err(_) => break,
                }
            }
            let mut acked = None;
            let mut count = 0u64;
            for (fut, (_, pos)) in futs.into_iter().zip(&batch) {
                match fut.await {
                    Ok(ack) => {
                        self.acked(&ack);
                        acked = Some(*pos);
                        count += 1;
                    }
                    Err(_) => break,
                }
            }
            if let Some(pos) = acked {
                if let Err(e) = self.spool.ack(pos, count) {
                    self.io_error(&e);
                    return false;
                }
            }
            if count < batch.len() as u64 {
                return false;
            }
        }
    }

    fn update_status(&self) {
        let s = &self.status;
        s.connected.store(*self.conn.borrow(), Relaxed);
        s.in_flight.store(self.in_flight.len() as u64, Relaxed);
        s.spool_records.store(self.spool.records(), Relaxed);
        s.spool_bytes.store(self.spool.bytes(), Relaxed);
        if s.state() != SinkState::Refused {
            let connecting = s.last_ack.load(Relaxed) == 0 && !*self.conn.borrow();
            s.set_state(match (self.spooling, connecting) {
                (_, true) => SinkState::Connecting,
                (true, false) => SinkState::Spooling,
                (false, false) => SinkState::Live,
            });
        }
    }
}
