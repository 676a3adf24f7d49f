use std::sync::Arc;

use actix::{Actor, ActorContext, Context, Handler, Message, MessageResult};

use super::*;
use crate::peer::{PeerAddr, PeerId, PeerState};

/// Counts what it receives; a small mailbox so overflow is easy to provoke.
#[derive(Default)]
struct Probe {
    inv: usize,
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<InvReceived> for Probe {
    type Result = ();
    fn handle(&mut self, _: InvReceived, _: &mut Context<Self>) {
        self.inv += 1;
    }
}

impl Handler<PeerStateChanged> for Probe {
    type Result = ();
    fn handle(&mut self, _: PeerStateChanged, _: &mut Context<Self>) {}
}

#[derive(Message)]
#[rtype(result = "usize")]
struct Counts;

impl Handler<Counts> for Probe {
    type Result = usize;
    fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> usize {
        self.inv
    }
}

#[derive(Default)]
struct Internal {
    seen: Vec<PeerState>,
}

impl Actor for Internal {
    type Context = Context<Self>;
}

impl Handler<Notice<PeerStateChanged>> for Internal {
    type Result = ();
    fn handle(&mut self, m: Notice<PeerStateChanged>, _: &mut Context<Self>) {
        self.seen.push(m.0.state);
    }
}

#[derive(Message)]
#[rtype(result = "Vec<PeerState>")]
struct Seen;

impl Handler<Seen> for Internal {
    type Result = MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.seen.clone())
    }
}

fn addr() -> PeerAddr {
    "127.0.0.1:18444".parse().expect("literal address")
}

#[actix_rt::test]
async fn table_adds_removes_and_counts_every_kind() {
    let probe = Probe::default().start();
    let mut subs = Subscribers::new();
    let a = subs.add(Subscription::to::<InvReceived, _>(&probe));
    let b = subs.add_all([
        Subscription::State(probe.clone().recipient()),
        Subscription::Inv(probe.clone().recipient()),
    ]);
    let kinds: Vec<_> = subs.stats().iter().map(|s| (s.id, s.kind)).collect();
    assert_eq!(kinds, vec![(b, "state"), (a, "inv"), (b, "inv")]);
    assert_eq!(subs.remove(b), 2);
    assert_eq!(subs.stats().len(), 1);
    assert_eq!(subs.remove(b), 0);
}

#[actix_rt::test]
async fn common_set_has_the_eight_usual_kinds() {
    struct All;
    impl Actor for All {
        type Context = Context<Self>;
    }
    macro_rules! ignore {
        ($($t:ty),*) => {$(impl Handler<$t> for All { type Result = (); fn handle(&mut self, _: $t, _: &mut Context<Self>) {} })*};
    }
    ignore!(
        PeerStateChanged,
        PeerReady,
        PeerDisconnected,
        InvReceived,
        TxReceived,
        AddrReceived,
        HeadersReceived,
        BlockReceived
    );
    let all = All.start();
    let kinds: Vec<_> = Subscription::common(&all).iter().map(Subscription::kind).collect();
    assert_eq!(kinds, ["state", "ready", "disconnected", "inv", "tx", "addr", "headers", "block"]);
}

fn empty_inv_weight() -> usize {
    use super::budget::{Weight, NOTICE_OVERHEAD};
    InvReceived { peer: PeerId(1), addr: addr(), items: Arc::new(Vec::new()) }.weight() + NOTICE_OVERHEAD
}

/// Waits (bounded) until the subscriber has handled everything charged to `budget`.
async fn drained(budget: &Budget) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while budget.queued_bytes() > 0 {
        assert!(std::time::Instant::now() < deadline, "bytes never came back: {budget:?}");
        tokio::task::yield_now().await;
    }
}

#[actix_rt::test]
async fn a_full_budget_drops_and_counts_and_bytes_return_once_handled() {
    let probe = Probe::default().start();
    let mut subs = Subscribers::new();
    let budget = Budget::new(10 * empty_inv_weight());
    subs.add(Subscription::Inv(probe.clone().recipient()).with_budget(&budget));
    // Nothing is handled until we yield: ten fit, ninety are dropped.
    for _ in 0..100 {
        subs.received(PeerId(1), &addr(), crate::wire::Message::Inv(Vec::new()), true);
    }
    let stats = subs.stats();
    assert_eq!((stats[0].delivered, stats[0].dropped), (10, 90), "{stats:?}");
    assert_eq!(budget.dropped(), 90);
    assert_eq!(budget.dropped_by_kind().get("inv"), Some(&90));
    assert_eq!(budget.queued_bytes(), 10 * empty_inv_weight());
    assert_eq!(probe.send(Counts).await.expect("probe alive"), 10);
    drained(&budget).await;
    subs.received(PeerId(1), &addr(), crate::wire::Message::Inv(Vec::new()), true);
    assert_eq!(subs.stats()[0].delivered, 11);
    assert_eq!(subs.total_dropped(), 90);
}

#[actix_rt::test]
async fn a_small_mailbox_does_not_drop_within_the_budget() {
    // actix's default mailbox (16) used to drop the rest of a burst; the byte budget is the
    // bound now.
    let probe = Probe::default().start();
    let mut subs = Subscribers::new();
    subs.add(Subscription::Inv(probe.clone().recipient()));
    for _ in 0..100 {
        subs.received(PeerId(1), &addr(), crate::wire::Message::Inv(Vec::new()), true);
    }
    assert_eq!(subs.total_dropped(), 0);
    assert_eq!(probe.send(Counts).await.expect("probe alive"), 100);
}

#[actix_rt::test]
async fn a_backpressure_budget_reports_congestion_until_the_subscriber_catches_up() {
    let probe = Probe::default().start();
    let mut subs = Subscribers::new();
    let budget = Budget::backpressure(3 * empty_inv_weight());
    subs.add(Subscription::Inv(probe.clone().recipient()).with_budget(&budget));
    for _ in 0..5 {
        subs.received(PeerId(1), &addr(), crate::wire::Message::Inv(Vec::new()), true);
    }
    // Nothing dropped, and the peer is told to stop reading.
    assert_eq!(subs.total_dropped(), 0);
    assert!(subs.congested(PeerId(1)).is_some());
    // Another peer, with nothing waiting, reads on.
    assert!(subs.congested(PeerId(2)).is_none());
    assert_eq!(probe.send(Counts).await.expect("probe alive"), 5);
    drained(&budget).await;
    assert!(subs.congested(PeerId(1)).is_none());
}

#[actix_rt::test]
async fn internal_subscriptions_deliver_through_a_private_type() {
    let internal = Internal::default().start();
    let mut subs = Subscribers::new();
    subs.add(Subscription::internal::<PeerStateChanged, _>(&internal));
    subs.state_changed(PeerId(7), &addr(), PeerState::Handshaking);
    subs.state_changed(PeerId(7), &addr(), PeerState::Ready);
    assert_eq!(internal.send(Seen).await.expect("alive"), vec![PeerState::Handshaking, PeerState::Ready]);
    assert_eq!(subs.stats()[0].delivered, 2);
}

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for Probe {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_rt::test]
async fn stopped_subscribers_are_removed() {
    let mut subs = Subscribers::new();
    let probe = Probe::default().start();
    subs.add(Subscription::Inv(probe.clone().recipient()));
    probe.send(Stop).await.expect("probe alive");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !subs.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "stopped subscriber kept");
        subs.received(PeerId(1), &addr(), crate::wire::Message::Inv(Vec::new()), true);
        tokio::task::yield_now().await;
    }
}

/// Keeps the `MessageSent` notifications it receives.
#[derive(Default)]
struct Sent(Vec<MessageSent>);

impl Actor for Sent {
    type Context = Context<Self>;
}

impl Handler<MessageSent> for Sent {
    type Result = ();
    fn handle(&mut self, m: MessageSent, _: &mut Context<Self>) {
        self.0.push(m);
    }
}

#[derive(Message)]
#[rtype(result = "Vec<MessageSent>")]
struct TakeSent;

impl Handler<TakeSent> for Sent {
    type Result = MessageResult<TakeSent>;
    fn handle(&mut self, _: TakeSent, _: &mut Context<Self>) -> Self::Result {
        MessageResult(std::mem::take(&mut self.0))
    }
}

#[actix_rt::test]
async fn sent_carries_the_message_only_to_those_who_asked() {
    let light = Sent::default().start();
    let full = Sent::default().start();
    let mut subs = Subscribers::new();
    subs.add(Subscription::Sent(light.clone().recipient()));
    subs.add(Subscription::SentWithMessage(full.clone().recipient()));
    subs.sent(PeerId(3), &addr(), "ping", 32, &crate::wire::Message::Ping(9));
    let light_seen = light.send(TakeSent).await.expect("alive");
    let full_seen = full.send(TakeSent).await.expect("alive");
    assert_eq!(light_seen.len(), 1);
    assert_eq!((light_seen[0].command, light_seen[0].wire_len, light_seen[0].peer), ("ping", 32, PeerId(3)));
    assert!(light_seen[0].message.is_none());
    assert_eq!(full_seen[0].message.as_deref(), Some(&crate::wire::Message::Ping(9)));
    let stats = subs.stats();
    assert!(stats.iter().all(|s| s.kind == "sent" && s.delivered == 1), "{stats:?}");
    // A group copies its subscriptions to every peer: the flag goes with the copy.
    let mut copy = subs.clone();
    copy.sent(PeerId(4), &addr(), "pong", 32, &crate::wire::Message::Pong(9));
    assert!(full.send(TakeSent).await.expect("alive")[0].message.is_some());
    assert!(light.send(TakeSent).await.expect("alive")[0].message.is_none());
}
