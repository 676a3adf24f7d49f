//! The minimal scripted peer of the load generators (`handshake_load`, `inv_flood`): our
//! `version`, then wait for the remote's `version` and `verack`, then our `verack`.

use btcpeer::wire::version::{build, LocalVersion};
use btcpeer::wire::{Codec, Message};
use btcpeer::Network;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// Completes the handshake on `stream` (regtest) with `nonce`; returns the framed reader, the
/// writer and the codec to encode more messages with.
pub async fn handshake(
    stream: TcpStream,
    nonce: u64,
) -> Result<(FramedRead<OwnedReadHalf, Codec>, OwnedWriteHalf, Codec), String> {
    let (read, mut write) = stream.into_split();
    let codec = Codec::new(Network::Regtest.magic());
    let version = build(&LocalVersion { nonce, ..Default::default() }, None);
    write.write_all(&codec.encode_to_bytes(&Message::Version(version))).await.map_err(|e| e.to_string())?;
    let mut frames = FramedRead::new(read, codec.clone());
    let (mut got_version, mut got_verack) = (false, false);
    while !(got_version && got_verack) {
        let frame = frames.next().await.ok_or("closed during the handshake")?.map_err(|e| e.to_string())?;
        match frame.into_message() {
            Ok(Message::Version(_)) => got_version = true,
            Ok(Message::Verack) => got_verack = true,
            _ => {}
        }
    }
    write.write_all(&codec.encode_to_bytes(&Message::Verack)).await.map_err(|e| e.to_string())?;
    Ok((frames, write, codec))
}
