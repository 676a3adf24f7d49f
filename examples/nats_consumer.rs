//! Reads btcpeerd's events from NATS JetStream with a durable pull consumer: prints each new
//! transaction and block once, however many daemons publish them (JetStream stored one copy),
//! and after a restart resumes after the last event it acknowledged.
//!
//!   cargo run --example nats_consumer -- [nats://127.0.0.1:4222] [btcpeer.regtest] [BTCPEER] [printer]
//!
//! Arguments: server URL, subject prefix, stream, durable consumer name. Each event is
//! acknowledged after it is printed, and the ack is confirmed by the server (double ack): a
//! crash in between can print that one event again on restart, never skip it.

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), async_nats::Error> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let prefix = args.next().unwrap_or_else(|| "btcpeer.regtest".into());
    let stream_name = args.next().unwrap_or_else(|| "BTCPEER".into());
    let durable = args.next().unwrap_or_else(|| "printer".into());

    let js = jetstream::new(async_nats::connect(&server).await?);
    let stream = js.get_stream(&stream_name).await?;
    // Created once with "new events only"; afterwards the server keeps its position.
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                deliver_policy: consumer::DeliverPolicy::New,
                ack_policy: consumer::AckPolicy::Explicit,
                filter_subject: format!("{prefix}.>"),
                ..Default::default()
            },
        )
        .await?;
    println!("consuming {stream_name} ({prefix}.>) as {durable}");

    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
        let text = |key: &str| event[key].as_str().unwrap_or("?").to_owned();
        match event["event"].as_str() {
            Some("tx") => println!("tx {} wtxid {} from {}", text("txid"), text("wtxid"), text("daemon")),
            Some("block") => {
                // `ts` is when the daemon had the block: this is the end-to-end latency.
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let ms = (now.as_secs_f64() - event["ts"].as_f64().unwrap_or(0.0)) * 1e3;
                println!(
                    "block {} {} from {} latency_ms {ms:.1}",
                    event["height"], event["hash"], event["daemon"]
                );
            }
            Some("dropped") => println!("dropped {} events at {}", event["count"], text("daemon")),
            _ => {}
        }
        message.double_ack().await?;
    }
    Ok(())
}
