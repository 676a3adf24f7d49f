//! Settings defaults and validation.

use super::*;

#[test]
fn defaults_are_valid() {
    Settings::default().validate().unwrap();
}

#[test]
fn validation_names_the_key() {
    let mut s = Settings::default();
    s.peer.ping_interval_secs = 0;
    assert_eq!(s.validate().unwrap_err().key, "peer.ping_interval_secs");
    let s = Settings { connect: vec!["not an address".into()], ..Settings::default() };
    assert_eq!(s.validate().unwrap_err().key, "connect");
    let s = Settings { listen: vec!["localhost:1".into()], ..Settings::default() };
    assert_eq!(s.validate().unwrap_err().key, "listen");
    let mut s = Settings::default();
    s.peer.v2_transport = false;
    s.peer.v2_only = true;
    assert_eq!(s.validate().unwrap_err().key, "peer.v2_only");
    let s = Settings { external: vec!["1.2.3.4:8333".into()], ..Settings::default() };
    assert_eq!(s.validate().unwrap_err().key, "external");
    let s = Settings { external: vec!["1.2.3.4".into(), "2001:db8::1".into()], ..Settings::default() };
    assert_eq!(s.external_ips().unwrap().len(), 2);
    let mut s = Settings::default();
    s.group.ban_time_secs = u64::MAX;
    assert_eq!(s.validate().unwrap_err().key, "group.ban_time_secs");
    let mut s = Settings::default();
    s.peer.ping_timeout_secs = u64::MAX;
    assert_eq!(s.validate().unwrap_err().key, "peer.ping_timeout_secs");
    let mut s = Settings::default();
    s.peer.user_agent_comment = Some("x".repeat(300));
    assert_eq!(s.validate().unwrap_err().key, "peer.user_agent_comment");
    let mut s = Settings::default();
    s.proxy.addr = Some("127.0.0.1:9050".into());
    s.proxy.username = Some("u".into());
    assert_eq!(s.validate().unwrap_err().key, "proxy.username");
    for bad in ["12", "x:00", "2016:abcd", &format!("2015:{}", "00".repeat(80))] {
        let mut s = Settings::default();
        s.sync.checkpoint = Some(bad.into());
        assert_eq!(s.validate().unwrap_err().key, "sync.checkpoint", "{bad}");
    }
}

#[test]
fn a_checkpoint_is_height_and_header() {
    let mut s = Settings { network: Network::Regtest, ..Settings::default() };
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
    s.sync.checkpoint = Some(format!("0:{}", bitcoin::consensus::encode::serialize_hex(&genesis)));
    let cp = s.checkpoint().unwrap().unwrap();
    assert_eq!((cp.height, cp.header), (0, genesis));
}

#[test]
fn connect_uses_the_network_default_port() {
    let s = Settings { network: Network::Regtest, connect: vec!["127.0.0.1".into()], ..Settings::default() };
    assert_eq!(s.static_peers().unwrap()[0].to_string(), "127.0.0.1:18444");
}
