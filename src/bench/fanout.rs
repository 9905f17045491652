//! `bench fanout`: one room or service with `--members` receivers and
//! `--senders` senders; measures delivered messages per second and
//! send->receive latency.
//!
//! Each payload carries its send time, so every receiver measures its own
//! latency against the clock of this one process. Flat out (`--rate 0`) is
//! closed-loop: at most `--window` messages are in flight (sent, not yet
//! delivered to every receiver: the slowest receiver bounds the sender, not
//! the average one), so the figure is the sustained rate, not the rate at
//! which queues fill, and no receiver falls far enough behind for the
//! broker to evict it as a slow consumer. `--raw` drives the baseline relay
//! (`benches/relay`) with the chat's message shape.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::stream::{self, SplitSink};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, BenchError, Endpoints, Ws};
use super::report::{latency_histogram, Report};
use super::{
    drained, now_nanos, progress, rate_parameter, run_tag, run_until, stamp_in, stamped_payload,
    Common, Proto, Secrets,
};

/// `bench fanout` options.
#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// Drive the baseline relay at `--url` instead of the broker.
    #[arg(long)]
    pub raw: bool,
    /// The broker protocol whose room or service is measured.
    #[arg(long, value_enum, default_value = "chat")]
    pub protocol: Proto,
    /// Receiving members (the senders come on top).
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Sending members.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Messages per second from all senders together; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Flat out: the most messages in flight at once (sent but not yet read
    /// by the slowest receiver).
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// Connections set up at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    #[command(flatten)]
    pub secrets: Secrets,
}

/// How a sender wraps a payload into its protocol's frame.
type FrameFn = Box<dyn Fn(&str) -> String + Send + Sync>;

/// A connection that sends. Its socket is drained from the moment it
/// joins (by a task of its own), so announcements never back up on it.
struct Sender {
    sink: SplitSink<Ws, Message>,
    /// Answers owed to the protocol's JSON pings, found by the drain task.
    pongs: mpsc::UnboundedReceiver<String>,
    frame: FrameFn,
}

/// A receiving member's task: its deliveries and their latencies.
type Receiving = JoinHandle<(u64, Histogram<u64>)>;

/// The members, ready: receivers (already reading) and senders.
struct Group {
    receivers: Vec<Receiving>,
    senders: Vec<Sender>,
}

/// Counters every task of the run shares.
struct Progress {
    sent: AtomicU64,
    received: AtomicU64,
    /// Every frame receivers read, stamped or not (to see setup settle).
    frames: AtomicU64,
    last_receive: AtomicU64,
    lost_connections: AtomicU64,
    delivered_all: Notify,
    /// Deliveries each receiver has published, by receiver.
    per_receiver: Box<[AtomicU64]>,
    next_receiver: AtomicUsize,
    /// The slowest receiver's count when last looked at: a lower bound,
    /// since counts only grow, so the window is checked against every
    /// receiver only when this bound says it is closed.
    slowest: AtomicU64,
}

impl Progress {
    fn new(receivers: usize) -> Self {
        Progress {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            last_receive: AtomicU64::new(0),
            lost_connections: AtomicU64::new(0),
            delivered_all: Notify::new(),
            per_receiver: (0..receivers).map(|_| AtomicU64::new(0)).collect(),
            next_receiver: AtomicUsize::new(0),
            slowest: AtomicU64::new(0),
        }
    }

    /// How many messages every receiver has had.
    fn delivered_to_slowest(&self, sent: u64, window: u64) -> u64 {
        let bound = self.slowest.load(Ordering::Relaxed);
        if sent.saturating_sub(bound) < window {
            return bound;
        }
        let slowest = self
            .per_receiver
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        self.slowest.fetch_max(slowest, Ordering::Relaxed);
        slowest
    }
}

/// What members need from the moment they join: a member reads from the
/// start, or the announcements of later joins would fill its queue.
struct Members {
    shared: Arc<Progress>,
    stopped: watch::Receiver<bool>,
    receivers: u64,
    answers_pings: bool,
}

impl Members {
    /// Starts reading `ws` as a receiver.
    fn receiver(&self, ws: Ws) -> Receiving {
        let index = self.shared.next_receiver.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(receive(
            ws,
            index,
            self.shared.clone(),
            self.stopped.clone(),
            self.receivers,
            self.answers_pings,
        ))
    }

    /// Starts draining `ws` and keeps its sink for sending `frame`s.
    fn sender(&self, ws: Ws, frame: FrameFn) -> Sender {
        let (sink, source) = ws.split();
        let (pongs_to_send, pongs) = mpsc::unbounded_channel();
        tokio::spawn(drain(source, pongs_to_send, self.stopped.clone()));
        Sender { sink, pongs, frame }
    }
}

/// Runs the scenario.
pub async fn run(common: &Common, args: FanoutArgs) -> Result<Report, BenchError> {
    if args.members == 0 || args.senders == 0 {
        return Err(BenchError::Usage(
            "--members and --senders must be at least 1".into(),
        ));
    }
    let endpoints = Endpoints::parse(&common.url)?;
    let target = if args.raw {
        "raw relay"
    } else {
        args.protocol.name()
    };
    let shared = Arc::new(Progress::new(args.members));
    let (stop, stopped) = watch::channel(false);
    let receivers = args.members as u64;
    let members = Members {
        shared: shared.clone(),
        stopped: stopped.clone(),
        receivers,
        answers_pings: !args.raw && args.protocol == Proto::Rooms,
    };
    let setup = Instant::now();
    let group = match (args.raw, args.protocol) {
        (true, _) => raw_group(&endpoints, &args, &members).await?,
        (false, Proto::Chat) => chat_group(&endpoints, &args, &members).await?,
        (false, Proto::Concierge) => concierge_group(&endpoints, &args, &members).await?,
        (false, Proto::Rooms) => rooms_group(&endpoints, &args, &members).await?,
    };
    settle(&shared).await;
    let setup = setup.elapsed();
    let drops_before = broker_drops(&endpoints, args.raw).await;
    let receiving = group.receivers;

    let bar = progress(common, &format!("fanout {target}"));
    let started = Instant::now();
    let started_nanos = now_nanos();
    let deadline = started + common.duration;
    let per_sender = args.rate as f64 / args.senders as f64;
    let sending: Vec<_> = group
        .senders
        .into_iter()
        .map(|sender| {
            tokio::spawn(send(
                sender,
                shared.clone(),
                Pace {
                    per_second: per_sender,
                    window: args.window.max(1),
                    size: args.size,
                    deadline,
                },
            ))
        })
        .collect();
    run_until(&bar, deadline, || {
        format!("{} delivered", shared.received.load(Ordering::Relaxed))
    })
    .await;
    let mut send_errors = 0u64;
    for task in sending {
        if !matches!(task.await, Ok(Ok(()))) {
            send_errors += 1;
        }
    }
    let send_time = started.elapsed();
    bar.finish_and_clear();

    // Drain: wait until every sent message has reached every receiver, or
    // nothing has arrived for a second.
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = sent * receivers;
    drained(&shared.received, expected).await;
    // Read before the members leave: their departures are announced too.
    let drops_after = broker_drops(&endpoints, args.raw).await;
    let _ = stop.send(true);
    let mut latency = latency_histogram();
    let mut delivered = 0u64;
    for task in receiving {
        if let Ok((count, histogram)) = task.await {
            delivered += count;
            let _ = latency.add(&histogram);
        }
    }

    let last = shared.last_receive.load(Ordering::Relaxed);
    let active =
        Duration::from_nanos(last.saturating_sub(started_nanos)).max(Duration::from_millis(1));

    let mut report = Report::new("fanout");
    report
        .parameter("target", target)
        .parameter("url", common.url.clone())
        .parameter("members", args.members)
        .parameter("senders", args.senders)
        .parameter("size", args.size)
        .parameter("rate", rate_parameter(args.rate))
        .parameter("window", args.window)
        .parameter("duration_s", common.duration.as_secs_f64());
    report
        .figure("setup", setup.as_secs_f64(), "s")
        .figure("messages sent", sent as f64, "msg")
        .figure("send rate", sent as f64 / send_time.as_secs_f64(), "msg/s")
        .figure("deliveries", delivered as f64, "msg")
        .figure(
            "delivered rate",
            delivered as f64 / active.as_secs_f64(),
            "msg/s",
        )
        .figure(
            "not delivered",
            expected.saturating_sub(delivered) as f64,
            "msg",
        )
        .figure(
            "connections lost",
            (shared.lost_connections.load(Ordering::Relaxed) + send_errors) as f64,
            "conn",
        );
    if let (Some(before), Some(after)) = (drops_before, drops_after) {
        report.figure("broker drops", after - before, "msg");
    }
    report.latency("latency", &latency);
    Ok(report)
}

/// Waits until the join announcements have stopped arriving (no frame for
/// half a second; at most two minutes), so the measured phase starts with
/// empty queues.
async fn settle(shared: &Progress) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = shared.frames.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = shared.frames.load(Ordering::Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// The broker's `switchboard_messages_dropped_total` (none for the relay).
async fn broker_drops(endpoints: &Endpoints, raw: bool) -> Option<f64> {
    if raw {
        return None;
    }
    let text = client::scrape_async(&endpoints.http).await.ok()?;
    client::metric(&text, "switchboard_messages_dropped_total")
}

/// How a sender paces itself.
#[derive(Clone, Copy)]
struct Pace {
    /// Messages per second for this sender; 0 = flat out.
    per_second: f64,
    window: u64,
    size: usize,
    deadline: Instant,
}

async fn send(sender: Sender, shared: Arc<Progress>, pace: Pace) -> Result<(), BenchError> {
    let Sender {
        mut sink,
        pongs: mut pending_pongs,
        frame,
    } = sender;
    let started = Instant::now();
    let mut sent = 0u64;
    let result = async {
        while Instant::now() < pace.deadline {
            while let Ok(pong) = pending_pongs.try_recv() {
                sink.send(Message::text(pong)).await?;
            }
            if pace.per_second > 0.0 {
                let due = (started.elapsed().as_secs_f64() * pace.per_second) as u64 + 1;
                if sent >= due {
                    let next = started + Duration::from_secs_f64(sent as f64 / pace.per_second);
                    tokio::time::sleep_until(next.min(pace.deadline).into()).await;
                    continue;
                }
                while sent < due {
                    sink.feed(Message::text(frame(&stamped_payload(pace.size))))
                        .await?;
                    sent += 1;
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                sink.flush().await?;
            } else {
                if !window_open(&shared, &pace) {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(1),
                        shared.delivered_all.notified(),
                    )
                    .await;
                    continue;
                }
                sink.send(Message::text(frame(&stamped_payload(pace.size))))
                    .await?;
                sent += 1;
                shared.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok::<(), BenchError>(())
    }
    .await;
    result
}

fn window_open(shared: &Progress, pace: &Pace) -> bool {
    let sent = shared.sent.load(Ordering::Relaxed);
    sent.saturating_sub(shared.delivered_to_slowest(sent, pace.window)) < pace.window
}

async fn drain(
    mut source: futures_util::stream::SplitStream<Ws>,
    pongs: mpsc::UnboundedSender<String>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            frame = source.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(pong) = client::rooms_pong(&text) {
                        let _ = pongs.send(pong);
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

async fn receive(
    mut ws: Ws,
    index: usize,
    shared: Arc<Progress>,
    mut stopped: watch::Receiver<bool>,
    receivers: u64,
    answers_pings: bool,
) -> (u64, Histogram<u64>) {
    let mut latency = latency_histogram();
    let mut count = 0u64;
    // Counted locally and published when the socket has nothing more to
    // read, so receivers do not contend on the shared counters per frame.
    let mut unpublished = Unpublished::default();
    loop {
        let frame = match ws.next().now_or_never() {
            Some(frame) => frame,
            None => {
                unpublished.publish(&shared, index, receivers);
                tokio::select! {
                    biased;
                    _ = stopped.changed() => break,
                    frame = ws.next() => frame,
                }
            }
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                unpublished.frames += 1;
                if let Some(stamp) = stamp_in(&text) {
                    unpublished.last = now_nanos();
                    latency.saturating_record(unpublished.last.saturating_sub(stamp) / 1000);
                    count += 1;
                    unpublished.deliveries += 1;
                } else if answers_pings {
                    if let Some(pong) = client::rooms_pong(&text) {
                        let _ = ws.send(Message::text(pong)).await;
                    }
                }
            }
            Some(Ok(_)) => {}
            _ => {
                shared.lost_connections.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    unpublished.publish(&shared, index, receivers);
    (count, latency)
}

/// A receiver's counts not yet added to the shared ones.
#[derive(Default)]
struct Unpublished {
    frames: u64,
    deliveries: u64,
    /// When the latest delivery arrived.
    last: u64,
}

impl Unpublished {
    /// Adds the counts to the shared ones; wakes a waiting sender when that
    /// completes a message's delivery to every receiver.
    fn publish(&mut self, shared: &Progress, index: usize, receivers: u64) {
        if self.frames > 0 {
            shared.frames.fetch_add(self.frames, Ordering::Relaxed);
            self.frames = 0;
        }
        if self.deliveries == 0 {
            return;
        }
        shared.last_receive.fetch_max(self.last, Ordering::Relaxed);
        if let Some(mine) = shared.per_receiver.get(index) {
            mine.fetch_add(self.deliveries, Ordering::Relaxed);
        }
        let before = shared
            .received
            .fetch_add(self.deliveries, Ordering::Relaxed);
        if (before + self.deliveries) / receivers > before / receivers {
            shared.delivered_all.notify_one();
        }
        self.deliveries = 0;
    }
}

/// Runs `make(i)` for `0..n`, `concurrency` at a time; the first error wins.
async fn set_up<T, F, Fut>(n: usize, concurrency: usize, make: F) -> Result<Vec<T>, BenchError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, BenchError>>,
{
    stream::iter(0..n)
        .map(make)
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

async fn raw_group(
    endpoints: &Endpoints,
    args: &FanoutArgs,
    members: &Members,
) -> Result<Group, BenchError> {
    let url = endpoints.ws.clone();
    let receivers = set_up(args.members, args.connect_concurrency, |_| async {
        Ok(members.receiver(client::connect(&url, None, None).await?))
    })
    .await?;
    let mut senders = Vec::with_capacity(args.senders);
    for i in 0..args.senders {
        let name = format!("sender{i}");
        let ws = client::connect(&url, None, None).await?;
        senders.push(members.sender(
            ws,
            Box::new(move |payload| client::chat_message(&name, payload)),
        ));
    }
    Ok(Group { receivers, senders })
}

async fn chat_group(
    endpoints: &Endpoints,
    args: &FanoutArgs,
    members: &Members,
) -> Result<Group, BenchError> {
    let tag = run_tag();
    let room = format!("bench-{tag}");
    let mut senders = Vec::with_capacity(args.senders);
    for i in 0..args.senders {
        let name = format!("s{tag}{i}");
        let ws = client::chat_join(endpoints, &room, &name).await?;
        senders.push(members.sender(
            ws,
            Box::new(move |payload| client::chat_message(&name, payload)),
        ));
    }
    let receivers = set_up(args.members, args.connect_concurrency, |i| {
        let (room, name) = (room.clone(), format!("r{tag}{i}"));
        async move { Ok(members.receiver(client::chat_join(endpoints, &room, &name).await?)) }
    })
    .await?;
    Ok(Group { receivers, senders })
}

async fn concierge_group(
    endpoints: &Endpoints,
    args: &FanoutArgs,
    members: &Members,
) -> Result<Group, BenchError> {
    let tag = run_tag();
    let secret = args.secrets.concierge_secret.as_deref();
    let tag = &tag;
    let services: Vec<String> = (0..args.senders)
        .map(|i| format!("bench{tag}{i}"))
        .collect();
    let mut senders = Vec::with_capacity(args.senders);
    for (i, service) in services.iter().enumerate() {
        let mut ws =
            client::concierge_identify(endpoints, &format!("s{tag}{i}"), secret, None).await?;
        client::concierge_request(
            &mut ws,
            &json!({"type": "SERVICE_CREATE", "service": service, "nickname": null}),
            "SERVICE_CREATE_RESULT",
        )
        .await?;
        let service = service.clone();
        senders.push(members.sender(
            ws,
            Box::new(move |payload| client::concierge_message(&service, payload)),
        ));
    }
    let receivers = set_up(args.members, args.connect_concurrency, |i| {
        let services = services.clone();
        async move {
            let name = format!("r{tag}{i}");
            let mut ws = client::concierge_identify(endpoints, &name, secret, None).await?;
            for service in &services {
                client::concierge_request(
                    &mut ws,
                    &json!({"type": "SELF_SUBSCRIBE", "service": service}),
                    "SELF_SUBSCRIBE_RESULT",
                )
                .await?;
            }
            Ok(members.receiver(ws))
        }
    })
    .await?;
    Ok(Group { receivers, senders })
}

async fn rooms_group(
    endpoints: &Endpoints,
    args: &FanoutArgs,
    members: &Members,
) -> Result<Group, BenchError> {
    let secret = args.secrets.jwt()?;
    let tag = run_tag();
    let mut admin = client::rooms_connect(endpoints, &secret, &format!("s{tag}0"), None).await?;
    let room = admin.create_room(&format!("bench-{tag}")).await?;
    let mut sessions = vec![admin];
    for i in 1..args.senders {
        let mut s = client::rooms_connect(endpoints, &secret, &format!("s{tag}{i}"), None).await?;
        s.enter(&room).await?;
        sessions.push(s);
    }
    let senders = sessions
        .into_iter()
        .map(|s| {
            let (key, room) = (s.key.clone(), room.clone());
            members.sender(
                s.ws,
                Box::new(move |payload| {
                    json!({"type": "message", "key": key, "content": payload, "room_id": room})
                        .to_string()
                }),
            )
        })
        .collect();
    let tag = &tag;
    let receivers = set_up(args.members, args.connect_concurrency, |i| {
        let (secret, room) = (secret.clone(), room.clone());
        async move {
            let mut s =
                client::rooms_connect(endpoints, &secret, &format!("r{tag}{i}"), None).await?;
            s.enter(&room).await?;
            Ok(members.receiver(s.ws))
        }
    })
    .await?;
    Ok(Group { receivers, senders })
}
