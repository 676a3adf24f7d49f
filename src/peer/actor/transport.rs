//! The transport under a [`PeerActor`]: starting the reader (v1 codec, v2 handshake or
//! inbound detection) and writer over a stream, settling, and Core's v1 retry of a v2 attempt.
//! The decisions about bytes live in `peer::transport`; this only wires them to the actor.

use futures_util::StreamExt;

use super::*;

impl PeerActor {
    /// Starts the reader (the transport decoder) and the writer task over `stream`.
    pub(super) fn attach_stream(
        &mut self,
        stream: BoxStream,
        _remote: Option<SocketAddr>,
        ctx: &mut Context<Self>,
    ) {
        if self.start == Start::V2Initiator
            && !self.config.v2_only
            && self.config.v1_only.contains(&self.addr)
        {
            self.start = Start::V1;
        }
        let (read, write) = tokio::io::split(stream);
        let magic = self.config.network.magic();
        let mut rng = StdRng::from_entropy();
        let secret: [u8; 32] = rng.gen();
        let max_garbage = if self.start == Start::V2Initiator {
            MAX_INITIATOR_GARBAGE
        } else {
            crate::peer::transport::v2::MAX_GARBAGE_LEN
        };
        let garbage: Vec<u8> = (0..rng.gen_range(0..=max_garbage)).map(|_| rng.gen()).collect();
        let (decoder, first) = TransportDecoder::new(magic, self.start, secret, garbage);
        let decoder = decoder.counting(self.settle_received.clone());
        // Each stream is numbered and ends with an explicit marker: the v2 attempt's reader,
        // replaced by the v1 retry's, may still deliver its last items.
        self.writer_gen += 1;
        let generation = self.writer_gen;
        let reader = FramedRead::new(read, decoder)
            .map(move |item| Read { generation, item: Some(item) })
            .chain(futures_util::stream::once(future::ready(Read { generation, item: None })));
        // Paused while a lossless subscriber's budget is full (see the `StreamHandler` below).
        self.reader = Some(ctx.add_stream(Gated::new(reader, self.gate.clone())));
        let (tx, rx) = mpsc::unbounded_channel();
        let me = ctx.address();
        let writer = generation;
        let task = actix::spawn(outbound::run_writer(write, rx, move |event| {
            let event = match event {
                WriteEvent::Failed { error, .. } => WriteEvent::Failed { error, writer },
                other => other,
            };
            me.do_send(WriterReport(event))
        }));
        if let Some(bytes) = first {
            let _ = tx.send(WriteCmd::Raw(bytes));
        }
        self.writer = Some((tx, task));
        if self.start == Start::V1 && matches!(self.encoder, TransportEncoder::Settling(_)) {
            // The v1 retry: what the machine queued during the v2 attempt goes out now.
            self.on_transport_ready(Ready::V1, ctx);
        }
    }

    /// The transport is settled: remember which, and send what waited for it.
    pub(super) fn on_transport_ready(&mut self, ready: Ready, ctx: &mut Context<Self>) {
        let (version, encoder) = match ready {
            Ready::V1 => {
                (TransportVersion::V1, TransportEncoder::V1(Codec::new(self.config.network.magic())))
            }
            Ready::V2 { session_id, encoder } => {
                self.session_id = Some(session_id);
                (TransportVersion::V2, TransportEncoder::V2(encoder))
            }
        };
        self.transport = Some(version);
        {
            let _g = self.span.enter();
            debug!(
                transport = version.as_str(),
                session_id = self.session_id.map(|s| crate::peer::transport::v2::hex(&s)),
                "transport ready"
            );
        }
        let waiting = match std::mem::replace(&mut self.encoder, encoder) {
            TransportEncoder::Settling(queue) => queue,
            _ => Vec::new(),
        };
        for msg in waiting {
            if let Err(SendError::QueueFull { queued, .. }) = self.enqueue(&msg, None) {
                self.machine.disconnect(DisconnectReason::SendQueueFull { queued });
            }
        }
        self.run_actions(ctx);
    }

    /// Core's rule for retrying a v2 attempt with v1 (`net.cpp` `V2Transport::ShouldReconnectV1`:
    /// an outbound attempt still waiting for the peer's key with nothing received, and
    /// `CConnman::DisconnectNodes` reconnecting with `use_v2transport = false`), extended to a
    /// peer whose first bytes are a v1 message (our magic where its key should be).
    pub(super) fn should_retry_v1(&self, error: Option<&TransportError>) -> bool {
        let nothing_received = self.settle_received.load(std::sync::atomic::Ordering::Relaxed) == 0;
        self.start == Start::V2Initiator
            && !self.config.v2_only
            && self.transport.is_none()
            && !self.fell_back
            && !self.machine.is_closed()
            && match error {
                Some(TransportError::V2(V2Error::V1Peer)) => true,
                None
                | Some(TransportError::Codec(CodecError::Io(_)))
                | Some(TransportError::V2(V2Error::Truncated)) => nothing_received,
                _ => false,
            }
    }

    /// Drops the v2 attempt's stream and dials again at once with v1; the address is remembered
    /// v1-only so the next dial goes straight to v1.
    pub(super) fn retry_v1(&mut self, ctx: &mut Context<Self>) {
        self.fell_back = true;
        // What the attempt's reader and writer still deliver is stale from here on.
        self.writer_gen += 1;
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        if let Some((writer, task)) = self.writer.take() {
            drop(writer);
            task.abort();
        }
        self.config.v1_only.insert(&self.addr);
        self.count(|m| m.v2_fallback());
        {
            let _g = self.span.enter();
            info!("v2 handshake closed by the peer; retrying with v1");
        }
        self.start = Start::V1;
        self.settle_received.store(0, std::sync::atomic::Ordering::Relaxed);
        self.open(true, ctx);
    }
}

/// One item of a numbered reader stream; `None` marks its end.
pub(super) struct Read {
    generation: u64,
    item: Option<Result<Inbound, TransportError>>,
}

impl StreamHandler<Read> for PeerActor {
    fn handle(&mut self, read: Read, ctx: &mut Context<Self>) {
        if read.generation != self.writer_gen {
            return;
        }
        match read.item {
            Some(Ok(Inbound::Frame(frame))) => self.on_frame(frame, ctx),
            Some(Ok(Inbound::Send(bytes))) => {
                if let Some((writer, _)) = &self.writer {
                    let _ = writer.send(WriteCmd::Raw(bytes));
                }
            }
            Some(Ok(Inbound::Ready(ready))) => self.on_transport_ready(ready, ctx),
            Some(Err(error)) if self.should_retry_v1(Some(&error)) => self.retry_v1(ctx),
            Some(Err(TransportError::Codec(error))) => {
                self.machine.on_stream_error(&error);
                self.run_actions(ctx);
            }
            Some(Err(TransportError::V2(error))) => {
                self.machine.disconnect(DisconnectReason::V2Transport(error));
                self.run_actions(ctx);
            }
            None if self.should_retry_v1(None) => self.retry_v1(ctx),
            None => {
                self.machine.disconnect(DisconnectReason::ClosedByPeer);
                self.run_actions(ctx);
            }
        }
        // A lossless subscriber is behind: read no further until it catches up (TCP then slows
        // the sender) instead of queueing without bound or dropping.
        if let Some(budget) = self.subscribers.congested(self.id) {
            self.gate.pause_for(budget, self.id.0);
        }
    }

    // The end marker above does what `finished` would (and knows which stream ended).
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}
