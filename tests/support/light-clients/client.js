// A light client run by tests/serve.rs against btcpeerd --serve on regtest.
//
//   node client.js bitcoin-net tcp|ws HOST:PORT BLOCK_HASH
//   node client.js bitcoin-net-filtered tcp|ws HOST:PORT BLOCK_HASH FILTER_HEX HASH_FUNCS TWEAK TXID
//   node client.js bitcoin-net-blocks tcp|ws HOST:PORT HASH[,HASH...]
//   node client.js bitcore-p2p tcp HOST:PORT
//
// bitcoin-net-blocks (scripts/bench-serve) fetches the blocks one after the other and prints
// {"block_ms":[..]}, the milliseconds each took from getdata to block.
//
// bitcoin-net-filtered asks for NODE_BLOOM (requireBloom), loads the BIP37 filter given
// (BLOOM_UPDATE_NONE), asks for BLOCK_HASH as a filtered block and waits for the merkleblock and
// the tx TXID; it prints the merkleblock ({"block","total","hashes","flags"}: hashes in internal
// byte order, flags in hex, to be checked by the caller) and the txids of the txs received.
//
// Connects, completes the handshake, pages through every header from genesis (locator: the
// last header received) and, for bitcoin-net, downloads BLOCK_HASH. Prints one JSON line with
// what it got ({"services":..,"headers":N,"tip":HASH,"block":HASH}, with the milliseconds the
// headers and the block took) and exits 0, or prints
// {"error":..} and exits 1. Hashes are in display (RPC) byte order.
'use strict'

const net = require('net')

const [client, transport, target, blockHash] = process.argv.slice(2)
const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))]

function done (result) {
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(result.error ? 1 : 0)
}
setTimeout(() => done({ error: 'timed out' }), 60000)

const reverse = (buf) => Buffer.from(buf).reverse()
const toHex = (internal) => reverse(internal).toString('hex')
const fromHex = (display) => reverse(Buffer.from(display, 'hex'))
// An empty locator asks for the stop header alone: start from regtest's genesis instead.
const GENESIS = '0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206'

// A bitcoin-net Peer connecting over `transport`; `opts` go to the Peer.
function bitcoinNetPeer (opts, { noDelay = false } = {}) {
  const { Peer } = require('bitcoin-net')
  // Regtest: the magic bytes fa bf b5 da read as a little-endian number.
  const params = { magic: 0xdab5bffa, defaultPort: 18444 }
  const socket = transport === 'ws'
    ? require('websocket-stream')(`ws://${host}:${port}`, { binary: true })
    : net.connect(port, host)
  if (noDelay && transport === 'tcp') socket.setNoDelay(true)
  const peer = new Peer(params, { handshakeTimeout: 20000, ...opts })
  peer.on('error', (err) => done({ error: err.message }))
  socket.once('connect', () => peer.connect(socket))
  return peer
}

function bitcoinNetFiltered () {
  const utils = require('bitcoin-net/src/utils.js')
  const [filterHex, hashFuncs, tweak, txid] = process.argv.slice(6)
  const peer = bitcoinNetPeer({ requireBloom: true })
  peer.once('ready', () => {
    const result = { services: peer.services, txs: [] }
    peer.on('tx', (tx) => result.txs.push(toHex(utils.getTxHash(tx))))
    peer.send('filterload', {
      data: Array.from(Buffer.from(filterHex, 'hex')),
      nHashFuncs: Number(hashFuncs),
      nTweak: Number(tweak),
      nFlags: 0
    })
    const asked = Date.now()
    const gotTx = new Promise((resolve) => peer.once(`tx:${fromHex(txid).toString('base64')}`, resolve))
    peer.getBlocks([fromHex(blockHash)], { filtered: true, timeout: 20000 }, (err, blocks) => {
      if (err) return done({ error: `getdata filtered: ${err.message}` })
      const mb = blocks[0]
      result.block = toHex(utils.getBlockHash(mb.header))
      result.total = mb.numTransactions
      result.hashes = mb.hashes.map((h) => Buffer.from(h).toString('hex'))
      result.flags = Buffer.from(mb.flags).toString('hex')
      gotTx.then(() => {
        result.ms = Date.now() - asked
        done(result)
      })
    })
  })
}

function bitcoinNetBlocks () {
  // No Nagle: otherwise the kernel's delayed ACK (~40 ms) is most of the latency measured.
  const peer = bitcoinNetPeer({}, { noDelay: true })
  peer.once('ready', () => {
    const hashes = blockHash.split(',')
    const result = { block_ms: [] }
    const next = (i) => {
      if (i === hashes.length) return done(result)
      const asked = process.hrtime.bigint()
      peer.getBlocks([fromHex(hashes[i])], { timeout: 20000 }, (err) => {
        if (err) return done({ error: `getdata: ${err.message}` })
        result.block_ms.push(Number(process.hrtime.bigint() - asked) / 1e6)
        next(i + 1)
      })
    }
    next(0)
  })
}

function bitcoinNet () {
  const utils = require('bitcoin-net/src/utils.js')
  const peer = bitcoinNetPeer({})
  peer.once('ready', () => {
    const result = { services: peer.services, headers: 0 }
    const started = Date.now()
    const page = (locator) => peer.getHeaders(locator, { timeout: 20000 }, (err, headers) => {
      if (err) return done({ error: `getheaders: ${err.message}` })
      if (headers.length === 0) {
        result.headers_ms = Date.now() - started
        const asked = Date.now()
        return peer.getBlocks([fromHex(blockHash)], { timeout: 20000 }, (err, blocks) => {
          if (err) return done({ error: `getdata: ${err.message}` })
          result.block = toHex(utils.getBlockHash(blocks[0].header))
          result.txs = blocks[0].transactions.length
          result.block_ms = Date.now() - asked
          done(result)
        })
      }
      result.headers += headers.length
      const last = utils.getBlockHash(headers[headers.length - 1].header || headers[headers.length - 1])
      result.tip = toHex(last)
      page([last])
    })
    page([fromHex(GENESIS)])
  })
}

function bitcoreP2p () {
  const p2p = require('bitcore-p2p')
  const peer = new p2p.Peer({ host, port, network: 'regtest' })
  const result = { headers: 0 }
  peer.on('error', (err) => done({ error: err.message }))
  peer.on('disconnect', () => done({ error: 'disconnected' }))
  const ask = (starts) => peer.sendMessage(peer.messages.GetHeaders({ starts, stop: '00'.repeat(32) }))
  peer.on('headers', (message) => {
    if (message.headers.length === 0) {
      peer.removeAllListeners('disconnect')
      peer.disconnect()
      return done(result)
    }
    result.headers += message.headers.length
    result.tip = message.headers[message.headers.length - 1].hash
    ask([result.tip])
  })
  peer.on('ready', () => {
    result.version = peer.version
    ask([GENESIS])
  })
  peer.connect()
}

if (client === 'bitcoin-net') bitcoinNet()
else if (client === 'bitcoin-net-filtered') bitcoinNetFiltered()
else if (client === 'bitcoin-net-blocks') bitcoinNetBlocks()
else if (client === 'bitcore-p2p') bitcoreP2p()
else done({ error: `unknown client ${client}` })
