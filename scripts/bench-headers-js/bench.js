#!/usr/bin/env node
/*
 * bitcoin-net 5.2.0 client for scripts/bench-headers: connects a PeerGroup to
 * exactly one regtest peer and calls getHeaders(locator, cb) from the regtest
 * genesis until a batch has fewer than 2,000 headers or the peer's startHeight
 * (from its version message) is reached: bcoin 1.0.2 sends no headers message
 * at all when asked from its tip, so a chain of exactly 2,000*k blocks would
 * hang otherwise. Each next locator is the hash of the last header received;
 * nothing else is checked.
 *
 *   node bench.js 127.0.0.2:48444
 *
 * Prints one JSON line: {"height":H,"headers":H+1,"elapsed_ms":..,"tip":".."},
 * the time running from peers.connect() to the last headers message.
 * Loopback peers only.
 */

'use strict';

const { PeerGroup } = require('bitcoin-net');
const { getBlockHash } = require('bitcoin-net/src/utils.js');
const u = require('bitcoin-util');

const MAX_HEADERS = 2000;
const GENESIS = '0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206';

function fail(msg) {
  process.stderr.write(`bench.js: ${msg}\n`);
  process.exit(1);
}

const peer = process.argv[2] || '';
const m = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d+)$/.exec(peer);
if (!m)
  fail(`usage: bench.js 127.x.x.x:PORT (got "${peer}")`);

// Regtest parameters in the shape of webcoin-bitcoin's `net` module: the only
// peer source is the one static address (no DNS seeds, no web seeds).
const params = {
  magic: 0xdab5bffa,          // bytes fa bf b5 da on the wire
  defaultPort: Number(m[2]),
  dnsSeeds: [],
  webSeeds: [],
  staticPeers: [peer]
};

const peers = new PeerGroup(params, { numPeers: 1, connectWeb: false });
peers.on('error', (err) => fail(`peer group: ${err.message}`));
peers.on('connectError', (err) => fail(`connect: ${err.message}`));
peers.on('peerError', (err) => fail(`peer: ${err.message}`));
setTimeout(() => fail('timed out after 300 s'), 300 * 1000).unref();

const start = process.hrtime.bigint();
let height = 0;

function next(locator, peerHeight) {
  peers.getHeaders([locator], (err, headers) => {
    if (err)
      fail(`getHeaders: ${err.message}`);
    if (headers.length > 0) {
      locator = getBlockHash(headers[headers.length - 1].header);
      height += headers.length;
    }
    if (headers.length === MAX_HEADERS && height < peerHeight)
      return next(locator, peerHeight);
    const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    const tip = Buffer.from(locator).reverse().toString('hex');
    process.stdout.write(JSON.stringify({
      height, headers: height + 1, elapsed_ms: Number(elapsedMs.toFixed(3)), tip
    }) + '\n');
    peers.close(() => process.exit(0));
  });
}

peers.once('peer', (peer) => next(u.toHash(GENESIS), peer.version.startHeight));
peers.connect();
