#!/usr/bin/env node
/*
 * Starts an in-memory bcoin regtest full node for btcpeer's integration tests.
 *
 *   node node.js --host 127.0.0.2 [--port 48444] [--http-port 48445]
 *                [--api-key KEY] [--connect 127.0.0.3:18444 ...]
 *                [--max-inbound N] [--log-level warning] [--bip37 true]
 *                [--filterload HEX,HEX,...|-]
 *
 * On success it prints exactly one line to stdout, e.g.
 *   {"ready":true,"p2p":"127.0.0.2:48444","http":"127.0.0.2:48445"}
 * (port 0 means "pick a free port"; the real ports are reported).
 * Logs go to stderr only. The process exits on SIGTERM/SIGINT and when its
 * stdin is closed, so a crashed test harness never leaves it running.
 *
 * Network safety: only loopback addresses are ever used. DNS seeds, external
 * IP discovery (which would query OpenDNS) and UPnP are disabled, and any
 * outbound connection to a non-loopback address is refused locally.
 */

'use strict';

const net = require('net');
const util = require('util');
const { FullNode, Peer, TX } = require('bcoin');

const LOOPBACK = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

function fail(msg) {
  process.stderr.write(`node.js: ${msg}\n`);
  process.exit(2);
}

function parsePort(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0xffff)
    fail(`invalid ${name}: ${value}`);
  return n;
}

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1',
    port: 48444,
    httpPort: null,
    apiKey: null,
    connect: [],
    maxInbound: null,
    logLevel: 'warning',
    bip37: false,
    filterload: null
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[++i];
    if (value === undefined)
      fail(`missing value for ${arg}`);

    switch (arg) {
      case '--host': opts.host = value; break;
      case '--port': opts.port = parsePort(value, arg); break;
      case '--http-port': opts.httpPort = parsePort(value, arg); break;
      case '--api-key': opts.apiKey = value; break;
      case '--connect': opts.connect.push(value); break;
      case '--max-inbound': opts.maxInbound = parsePort(value, arg); break;
      case '--log-level': opts.logLevel = value; break;
      case '--bip37': opts.bip37 = value === 'true'; break;
      case '--filterload': opts.filterload = value; break;
      default: fail(`unknown argument: ${arg}`);
    }
  }

  if (!LOOPBACK.test(opts.host))
    fail(`--host must be a 127.x.x.x address: ${opts.host}`);

  for (const peer of opts.connect) {
    const m = /^(.+):(\d+)$/.exec(peer);
    if (!m || !LOOPBACK.test(m[1]))
      fail(`--connect must be 127.x.x.x:PORT: ${peer}`);
  }

  if (opts.httpPort == null)
    opts.httpPort = opts.port === 0 ? 0 : opts.port + 1;

  return opts;
}

// bcoin's logger (blgr) writes everything but errors to stdout, which must
// carry nothing but the ready line: send all of it to stderr instead.
const LEVELS = ['none', 'error', 'warning', 'info', 'debug', 'spam'];

function logToStderr(logger) {
  logger.writeConsole = (level, module, args) => {
    const tag = `[${LEVELS[level]}]` + (module ? ` (${module})` : '');
    process.stderr.write(`${tag} ${util.format(...args)}\n`);
  };
}

// Outbound sockets: loopback only, bound to our --host (else they would come
// from 127.0.0.1). Anything else fails locally like a refused connection and
// never leaves the machine.
function createSocket(localAddress, port, host) {
  if (LOOPBACK.test(host))
    return net.connect({ port, host, localAddress });
  const socket = new net.Socket();
  process.nextTick(() => {
    socket.destroy(new Error(`refusing non-loopback address ${host}:${port}`));
  });
  return socket;
}

function rpcError(code, message) {
  return Object.assign(new Error(message), { type: 'RPCError', code });
}

// bcoin 1.0.2's sendrawtransaction returns the txid even when the mempool
// rejects the tx (and then relays it anyway). Make it behave like Core's:
// an RPC error (-26 rejected, -25 missing inputs) unless the tx is accepted.
function strictSendRawTransaction(node) {
  node.rpc.calls.sendrawtransaction = async (args) => {
    if (!Array.isArray(args) || typeof args[0] !== 'string')
      throw rpcError(-1, 'sendrawtransaction "hexstring"');

    const tx = TX.fromRaw(Buffer.from(args[0], 'hex'));
    if (node.mempool.hasEntry(tx.hash('hex')))
      return tx.txid();

    let missing;
    try {
      missing = await node.mempool.addTX(tx);
    } catch (err) {
      if (err.type === 'VerifyError')
        throw rpcError(-26, `${err.reason} (code=${err.code})`);
      throw err;
    }
    if (missing)
      throw rpcError(-25, 'missing inputs');
    return tx.txid();
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));

  // Tx invs are batched per peer and flushed every 5 s (block invs go out at
  // once); flush faster so tests need not wait for relayed txs.
  Peer.INV_INTERVAL = 250;

  const node = new FullNode({
    network: 'regtest',
    memory: true,             // chain, mempool and address book in memory
    workers: false,
    logLevel: opts.logLevel,
    logConsole: true,
    listen: true,
    host: opts.host,
    // bcoin asserts a non-zero p2p port at construction; for port 0 start
    // with a placeholder and swap in 0 right before listening (see below).
    port: opts.port || 48444,
    publicHost: opts.host,
    seeds: [],                // regtest's default seed is 127.0.0.1:48444
    only: opts.connect,       // outbound to these peers only (may be empty)
    maxInbound: opts.maxInbound == null ? undefined : opts.maxInbound,
    bip37: opts.bip37,        // serve BIP37 filters and merkleblocks (NODE_BLOOM)
    createSocket: (port, host) => createSocket(opts.host, port, host),
    httpHost: opts.host,
    httpPort: opts.httpPort,
    apiKey: opts.apiKey || undefined,
    // bcoin only waives auth by itself on 127.0.0.1 and makes up a random
    // key elsewhere: be explicit.
    noAuth: !opts.apiKey
  });

  logToStderr(node.logger.logger);

  // No external IP lookup (OpenDNS) and no DNS resolution of any kind.
  const hosts = node.pool.hosts;
  node.pool.discoverExternal = async () => {};
  hosts.resolve = async (name) => {
    throw new Error(`DNS disabled: ${name}`);
  };

  // Gossiped (routable) addresses stay in the address book, so getaddr can
  // return them, but are never picked for outbound connections.
  const getHost = hosts.getHost.bind(hosts);
  hosts.getHost = () => {
    const entry = getHost();
    return entry && LOOPBACK.test(entry.addr.host) ? entry : null;
  };

  strictSendRawTransaction(node);

  // --filterload: load a BIP37 filter (holding the given hex elements; "-" for none) on every
  // peer once its handshake completes, the way an SPV client does. Unlike bcoin's own
  // sendFilterLoad it does so whatever services the peer offers, so a test can check that a
  // peer without NODE_BLOOM refuses it.
  if (opts.filterload != null) {
    const { BloomFilter } = require('bfilter');
    const packets = require('bcoin/lib/net/packets');
    const filter = BloomFilter.fromRate(1000, 0.0001, BloomFilter.flags.ALL);
    for (const hex of opts.filterload.split(','))
      if (hex !== '-' && hex !== '')
        filter.add(Buffer.from(hex, 'hex'));
    node.pool.on('peer open', (peer) => peer.send(new packets.FilterLoadPacket(filter)));
  }

  let closing = false;
  const shutdown = async (code) => {
    if (closing)
      return;
    closing = true;
    try {
      await node.close();
    } catch (e) {
      process.stderr.write(`close failed: ${e.stack}\n`);
    }
    process.exit(code);
  };

  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();

  await node.open();
  if (opts.port === 0)
    node.pool.options.port = 0;
  await node.connect();
  node.startSync();

  const p2p = node.pool.server.address();
  node.pool.options.port = node.pool.options.publicPort = p2p.port;
  hosts.address.setPort(p2p.port);
  const http = node.http.address();
  process.stdout.write(JSON.stringify({
    ready: true,
    p2p: `${p2p.address}:${p2p.port}`,
    http: `${http.address}:${http.port}`
  }) + '\n');
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${err && err.stack}\n`);
  process.exit(1);
});

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
