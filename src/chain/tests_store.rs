//! `HeaderStore`: round trips, recovery from torn and corrupt files, forks, checkpoints.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bitcoin::block::Header;

use super::tests::{build, genesis, mine_with, regtest, NOW};
use super::*;
use crate::Network;

const HEAD: u64 = 12;
const REC: u64 = RECORD_LEN as u64;

fn open(path: &Path) -> (HeaderStore, HeaderChain, LoadReport) {
    HeaderStore::open(path, regtest(), NOW).expect("no I/O error")
}

/// A store holding `n` regtest headers, closed; returns the headers.
fn stored(path: &Path, n: usize) -> Vec<Header> {
    let (mut store, mut chain, report) = open(path);
    assert_eq!(report, LoadReport::default());
    let headers = build(&genesis(Network::Regtest), n, 0);
    let c = chain.connect(&headers, NOW).expect("valid");
    store.append(&c.added_headers).expect("append");
    store.flush().expect("flush");
    headers
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("exists").len()
}

fn corrupt(path: &Path, n: u32) -> PathBuf {
    let name = if n == 0 { "headers.dat.corrupt".to_owned() } else { format!("headers.dat.corrupt.{n}") };
    path.with_file_name(name)
}

#[test]
fn a_new_store_round_trips_headers_and_forks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = HeaderStore::path_in(dir.path());
    let (mut store, mut chain, report) = open(&path);
    assert_eq!(report, LoadReport::default());
    assert_eq!(file_len(&path), HEAD);
    assert_eq!(fs::read(&path).expect("read")[..8], FILE_MAGIC);

    let main = build(&genesis(Network::Regtest), 30, 0);
    let fork = build(&main[19], 3, 1);
    for batch in [&main[..], &fork[..]] {
        let c = chain.connect(batch, NOW).expect("valid");
        store.append(&c.added_headers).expect("append");
    }
    store.flush().expect("flush");
    assert_eq!(store.records(), 33);
    drop(store);

    let (store, replayed, report) = open(&path);
    assert_eq!(report, LoadReport { loaded: 33, ..LoadReport::default() });
    assert_eq!(replayed.tip(), chain.tip());
    assert_eq!(replayed.fork_len(), 3);
    assert!(replayed.contains(&fork[2].block_hash()));
    assert_eq!((store.records(), file_len(&path)), (33, HEAD + 33 * REC));
}

#[test]
fn appends_after_reopening_continue_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let first = stored(&path, 10);
    let (mut store, mut chain, report) = open(&path);
    assert_eq!(report.loaded, 10);
    let more = build(&first[9], 5, 0);
    let c = chain.connect(&more, NOW).expect("valid");
    store.append(&c.added_headers).expect("append");
    store.flush().expect("flush");
    drop(store);
    let (_, chain, report) = open(&path);
    assert_eq!((report.loaded, report.problem), (15, None));
    assert_eq!(chain.tip().hash, more[4].block_hash());
}

#[test]
fn reorgs_replay_to_the_same_tip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let (mut store, mut chain, _) = open(&path);
    let main = build(&genesis(Network::Regtest), 10, 0);
    let fork = build(&main[3], 7, 1); // heights 5..=11: overtakes
    let rival = build(&main[3], 7, 2); // ties at 11 later: first seen wins
    for batch in [&main, &fork, &rival] {
        let c = chain.connect(batch, NOW).expect("valid");
        store.append(&c.added_headers).expect("append");
    }
    assert_eq!(chain.tip().hash, fork[6].block_hash());
    store.flush().expect("flush");
    drop(store);
    let (_, replayed, report) = open(&path);
    assert_eq!(report.loaded, 24);
    assert_eq!(replayed.tip(), chain.tip());
    assert_eq!((replayed.len(), replayed.fork_len()), (chain.len(), chain.fork_len()));
}

#[test]
fn a_torn_last_record_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let headers = stored(&path, 10);
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&[0xab; 40]).expect("write a partial record");
    drop(f);

    let (_, chain, report) = open(&path);
    assert_eq!(report.loaded, 10);
    let problem = report.problem.expect("reported");
    assert!(problem.contains("incomplete") && problem.contains("40 of 84"), "{problem}");
    assert_eq!(chain.tip().hash, headers[9].block_hash());
    assert_eq!(file_len(&path), HEAD + 10 * REC);
    assert!(!corrupt(&path, 0).exists(), "nothing worth keeping aside");
    assert_eq!(open(&path).2, LoadReport { loaded: 10, ..LoadReport::default() });
}

#[test]
fn a_corrupt_record_keeps_the_prefix_and_the_original_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let headers = stored(&path, 20);
    let original = fs::read(&path).expect("read");
    let mut bytes = original.clone();
    bytes[(HEAD + 10 * REC + 40) as usize] ^= 0x01; // inside record 10's header
    fs::write(&path, &bytes).expect("write");

    let (mut store, mut chain, report) = open(&path);
    assert_eq!(report.loaded, 10);
    let problem = report.problem.expect("reported");
    assert!(problem.contains("record 10") && problem.contains("checksum"), "{problem}");
    assert!(problem.contains("headers.dat.corrupt"), "{problem}");
    assert_eq!(chain.tip().hash, headers[9].block_hash());
    assert_eq!(fs::read(corrupt(&path, 0)).expect("copy"), bytes, "the whole original is kept");
    assert_eq!(fs::read(&path).expect("read")[..], original[..(HEAD + 10 * REC) as usize]);
    assert!(!path.with_file_name("headers.dat.tmp").exists());

    // The repaired file works: sync again, append, reopen cleanly.
    let c = chain.connect(&headers[10..], NOW).expect("valid");
    store.append(&c.added_headers).expect("append");
    drop(store);
    assert_eq!(open(&path).2, LoadReport { loaded: 20, ..LoadReport::default() });

    // A second corruption never overwrites the first copy.
    let mut again = fs::read(&path).expect("read");
    let last = again.len() - 1;
    again[last] ^= 0xff; // the last record's checksum
    fs::write(&path, &again).expect("write");
    let report = open(&path).2;
    assert_eq!(report.loaded, 19);
    assert_eq!(fs::read(corrupt(&path, 0)).expect("first copy"), bytes);
    assert_eq!(fs::read(corrupt(&path, 1)).expect("second copy"), again);
}

#[test]
fn a_record_that_fails_validation_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let (mut store, mut chain, _) = open(&path);
    let good = build(&genesis(Network::Regtest), 5, 0);
    chain.connect(&good, NOW).expect("valid");
    // Intact bytes and checksum, but version 1 breaks BIP34 on regtest.
    let bad = mine_with(good[4].block_hash(), good[4].time + 600, 0x207f_ffff, 1, 0);
    let after = build(&bad, 3, 0);
    let mut all = good.clone();
    all.push(bad);
    all.extend(after);
    store.append(&all).expect("append");
    drop(store);

    let (_, chain, report) = open(&path);
    assert_eq!((report.loaded, chain.height()), (5, 5));
    let problem = report.problem.expect("reported");
    assert!(problem.contains("record 5") && problem.contains("version"), "{problem}");
    assert_eq!(file_len(&path), HEAD + 5 * REC);
    assert_eq!(file_len(&corrupt(&path, 0)), HEAD + 9 * REC);
}

#[test]
fn bad_proof_of_work_mid_batch_keeps_the_records_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let (mut store, _, _) = open(&path);
    let mut headers = build(&genesis(Network::Regtest), 8, 0);
    while headers[6].target().is_met_by(headers[6].block_hash()) {
        headers[6].nonce += 1; // checksum stays right: it is computed on append
    }
    store.append(&headers).expect("append");
    drop(store);
    let (_, chain, report) = open(&path);
    assert_eq!((report.loaded, chain.height()), (6, 6));
    assert!(report.problem.expect("reported").contains("record 6"));
    assert_eq!(file_len(&path), HEAD + 6 * REC);
}

#[test]
fn another_networks_file_is_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    stored(&path, 5);
    let before = fs::read(&path).expect("read");
    let (_, chain, report) =
        HeaderStore::open(&path, HeaderChain::new(Network::Testnet4), NOW).expect("no I/O error");
    assert_eq!((report.loaded, chain.height()), (0, 0));
    let problem = report.problem.expect("reported");
    assert!(problem.contains("another network") && problem.contains("testnet4"), "{problem}");
    assert_eq!(fs::read(corrupt(&path, 0)).expect("copy"), before);
    let now = fs::read(&path).expect("read");
    assert_eq!(now.len() as u64, HEAD);
    assert_eq!(now[8..], Network::Testnet4.magic());
}

#[test]
fn a_foreign_or_half_created_file_is_handled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    fs::write(&path, b"{\"json\": true}\n and more text").expect("write");
    let report = open(&path).2;
    assert!(report.problem.expect("reported").contains("bad magic"));
    assert!(corrupt(&path, 0).exists());
    assert_eq!(file_len(&path), HEAD);

    // A crash while creating the file left part of its header: start afresh, nothing aside.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    fs::write(&path, &FILE_MAGIC[..5]).expect("write");
    let report = open(&path).2;
    assert!(report.problem.expect("reported").contains("incomplete file header"));
    assert!(!corrupt(&path, 0).exists());
    assert_eq!(file_len(&path), HEAD);
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir").join(FILE_NAME);
    let e = HeaderStore::open(&path, regtest(), NOW).unwrap_err();
    assert!(e.to_string().contains("missing-dir"), "{e}");
    // A directory where the file should be.
    let path = dir.path().to_path_buf();
    assert!(HeaderStore::open(&path, regtest(), NOW).is_err());
}

#[test]
fn a_genesis_file_replays_onto_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let headers = stored(&path, 30);
    let cp = Checkpoint { height: 10, header: headers[9] };
    let chain = HeaderChain::with_checkpoint(Network::Regtest, cp).expect("valid");
    let (_, chain, report) = HeaderStore::open(&path, chain, NOW).expect("no I/O error");
    // Records 1..=9 do not connect, 10 is the checkpoint itself: skipped, not corruption.
    assert_eq!(report, LoadReport { loaded: 20, skipped: 10, ..LoadReport::default() });
    assert_eq!(chain.tip().hash, headers[29].block_hash());
}

#[test]
fn many_dead_records_are_compacted_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let headers = stored(&path, 10_030);
    let cp = Checkpoint { height: 10_020, header: headers[10_019] };
    let chain = HeaderChain::with_checkpoint(Network::Regtest, cp).expect("valid");
    let (mut store, mut chain, report) = HeaderStore::open(&path, chain, NOW).expect("no I/O error");
    assert_eq!((report.loaded, report.skipped, report.compacted), (10, 10_020, true));
    assert_eq!((store.records(), file_len(&path)), (10, HEAD + 10 * REC));
    let more = build(&headers[10_029], 2, 0);
    let c = chain.connect(&more, NOW).expect("valid");
    store.append(&c.added_headers).expect("append");
    drop(store);
    let cp_chain = HeaderChain::with_checkpoint(Network::Regtest, cp).expect("valid");
    let (_, chain, report) = HeaderStore::open(&path, cp_chain, NOW).expect("no I/O error");
    assert_eq!(report, LoadReport { loaded: 12, ..LoadReport::default() });
    assert_eq!(chain.height(), 10_032);
}

#[test]
fn a_tip_from_the_future_warns_about_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let headers = stored(&path, 3);
    // Replay ignores the future limit (the headers passed it when they came), but says so.
    let then = u64::from(headers[2].time) - MAX_FUTURE_BLOCK_TIME - 60;
    let (_, chain, report) = HeaderStore::open(&path, regtest(), then).expect("no I/O error");
    assert_eq!(chain.height(), 3);
    assert!(report.clock_warning.expect("warned").contains("clock"));
    assert_eq!(report.problem, None, "the file is fine");
}
