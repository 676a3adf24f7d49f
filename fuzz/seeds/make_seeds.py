#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (small, deterministic; committed).

Run from anywhere: python3 fuzz/seeds/make_seeds.py. The frames are the ones the codec tests
use (version, verack, ping, inv, headers, addrv2, sendcmpct, the regtest genesis block); the
headers are real regtest proof of work mined here (target 0x207fffff: one try in two).
"""
import hashlib, json, os, struct, shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
REGTEST = bytes.fromhex("fabfb5da")
MAINNET = bytes.fromhex("f9beb4d9")
COMMANDS = ["version", "verack", "addr", "inv", "getdata", "notfound", "getblocks", "getheaders", "mempool",
            "block", "headers", "sendheaders", "getaddr", "ping", "pong", "merkleblock", "filterload",
            "filteradd", "filterclear", "tx", "getcfilters", "cfilter", "getcfheaders", "cfheaders",
            "getcfcheckpt", "cfcheckpt", "reject", "alert", "feefilter", "sendcmpct", "cmpctblock",
            "getblocktxn", "blocktxn", "wtxidrelay", "addrv2", "sendaddrv2", "feature", "sendtxrcncl",
            "unknownxyz", ""]
# The peer-machine driver's own list (src/fuzz_api.rs COMMANDS).
PM_COMMANDS = ["version", "verack", "addr", "inv", "getdata", "notfound", "getblocks", "getheaders",
               "mempool", "block", "headers", "sendheaders", "getaddr", "ping", "pong", "merkleblock",
               "filterload", "filteradd", "filterclear", "tx", "getcfilters", "cfilter", "feefilter",
               "sendcmpct", "cmpctblock", "getblocktxn", "blocktxn", "wtxidrelay", "addrv2", "sendaddrv2",
               "reject", "alert", "feature", "sendtxrcncl", "getcfheaders", "cfcheckpt"]


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def varint(n):
    if n < 0xfd:
        return bytes([n])
    if n <= 0xffff:
        return b"\xfd" + struct.pack("<H", n)
    return b"\xfe" + struct.pack("<I", n)


def frame(magic, cmd, payload):
    return magic + cmd.encode().ljust(12, b"\0") + struct.pack("<I", len(payload)) + sha256d(payload)[:4] + payload


def netaddr(services=0):
    return struct.pack("<Q", services) + bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]) + struct.pack(">H", 18444)


def version(ver=70016, services=0x409):
    ua = b"/Satoshi:27.0.0/"
    return (struct.pack("<iQq", ver, services, 1700000000) + netaddr() + netaddr(services)
            + struct.pack("<Q", 0x1234) + varint(len(ua)) + ua + struct.pack("<i", 100) + b"\x01")


GENESIS_HEADER = (struct.pack("<i", 1) + bytes(32)
                  + bytes.fromhex("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b")[::-1]
                  + struct.pack("<III", 1296688602, 0x207fffff, 2))
GENESIS_COINBASE = bytes.fromhex(
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d"
    "0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66"
    "207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe55"
    "48271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba"
    "0b8d578a4c702b6bf11d5fac00000000")
GENESIS_BLOCK = GENESIS_HEADER + b"\x01" + GENESIS_COINBASE
assert sha256d(GENESIS_HEADER)[::-1].hex() == "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"


def mine(n):
    """n regtest headers on top of genesis, each passing proof of work."""
    target = 0x7fffff * (1 << (8 * (0x20 - 3)))
    prev, out = sha256d(GENESIS_HEADER), []
    for i in range(n):
        nonce = 0
        while True:
            h = (struct.pack("<i", 0x20000000) + prev + sha256d(bytes([i]))
                 + struct.pack("<III", 1296688602 + 600 * (i + 1), 0x207fffff, nonce))
            d = sha256d(h)
            if int.from_bytes(d, "little") <= target:
                break
            nonce += 1
        out.append(h)
        prev = d
    return out


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    hdrs = mine(6)
    headers_payload = varint(2) + hdrs[0] + b"\0" + hdrs[1] + b"\0"
    inv_payload = varint(2) + struct.pack("<I", 1) + bytes(range(32)) + struct.pack("<I", 2) + sha256d(hdrs[0])
    addrv2_payload = varint(1) + struct.pack("<I", 1700000000) + varint(0x409) + b"\x01\x04" + bytes([1, 2, 3, 4]) + struct.pack(">H", 8333)
    getheaders_payload = struct.pack("<I", 70016) + varint(1) + sha256d(GENESIS_HEADER) + bytes(32)
    tx_payload = GENESIS_COINBASE
    payloads = [("version", version()), ("verack", b""), ("wtxidrelay", b""), ("sendaddrv2", b""),
                ("ping", struct.pack("<Q", 7)), ("pong", struct.pack("<Q", 7)), ("inv", inv_payload),
                ("headers", headers_payload), ("addrv2", addrv2_payload), ("getheaders", getheaders_payload),
                ("sendcmpct", b"\x01" + struct.pack("<Q", 2)), ("feefilter", struct.pack("<q", 1000)),
                ("tx", tx_payload), ("block", GENESIS_BLOCK)]

    # codec: raw regtest stream, raw mainnet stream, and the same as records to frame.
    write("codec", "regtest_stream", b"\x00" + b"".join(frame(REGTEST, c, p) for c, p in payloads))
    write("codec", "mainnet_ping", b"\x05" + frame(MAINNET, "ping", struct.pack("<Q", 1)))
    records = b"".join(bytes([COMMANDS.index(c)]) + struct.pack("<H", len(p)) + p for c, p in payloads)
    write("codec", "records", b"\x02" + records)
    write("codec", "records_mainnet", b"\x03" + records)

    # peer_machine: outbound handshake, then traffic (see fuzz_api::peer_machine for the ops).
    def pm_frame(c, p):
        return bytes([8, PM_COMMANDS.index(c)]) + struct.pack("<H", len(p)) + p
    hs_version = bytes([1]) + struct.pack("<IQ", 70016, 0x409) + b"\x00" + struct.pack("<I", 100) + b"\x01\x05"
    handshake = hs_version + bytes([3, 4, 2])
    traffic = b"".join(pm_frame(c, p) for c, p in payloads if c not in ("version", "verack"))
    write("peer_machine", "outbound", b"\x06" + handshake + traffic + b"\x00\x10\x27" + bytes([6]))
    write("peer_machine", "inbound", b"\x07" + handshake + traffic)
    write("peer_machine", "framed_handshake", b"\x06" + pm_frame("version", version()) + pm_frame("verack", b"")
          + pm_frame("ping", struct.pack("<Q", 9)) + bytes([13, 1]) + sha256d(hdrs[2]))

    # addrbook: an addrbook.json and a bans.json as the daemon writes them.
    book = {"version": 1, "key": "ab" * 32, "entries": [
        {"addr": "1.2.3.4:8333", "services": 1033, "last_seen": 1699990000, "last_attempt": 1699990000,
         "last_success": 1699990000, "attempts": 0, "source_group": {"ipv4": [1, 2]}, "table": "tried"},
        {"addr": "[2001:db9::1]:8333", "services": 1, "last_seen": 1699000000,
         "source_group": {"ipv6": [32, 1, 13, 185, 0]}, "table": "new"},
        {"addr": "example.onion:8333", "services": 0, "last_seen": 1699000000, "source_group": "unroutable",
         "table": "new"}]}
    write("addrbook", "addrbook.json", json.dumps(book, indent=1).encode())
    bans = {"version": 1, "bans": [
        {"target": "10.0.0.1", "since": 1699990000, "until": 1800000000, "reason": "misbehaving"},
        {"target": "2001:db8::", "since": 1699990000, "until": 1800000000, "reason": "api", "manual": True}]}
    write("addrbook", "bans.json", json.dumps(bans).encode())

    # headers_dat: a short valid regtest file (mode 0: as is) and raw records (mode 7: fixed up).
    body = b"".join(h + sha256d(h)[:4] for h in hdrs)
    write("headers_dat", "valid", b"\x00" + b"BTCPHDR1" + REGTEST + body)
    write("headers_dat", "fixup", b"\x07" + body)
    write("headers_dat", "torn", b"\x00" + b"BTCPHDR1" + REGTEST + body[:-10])

    # config: the shipped defaults, a regtest file with env, a small one.
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config")
    with open(os.path.join(here, "default.toml"), "rb") as f:
        write("config", "default.toml", f.read())
    write("config", "regtest_env", b'network = "regtest"\nconnect = ["127.0.0.1:18444"]\n[group]\nmax_outbound = 2\n'
          b"\0GROUP__TARGET_OUTBOUND=4\nSEEDS=\nLISTEN=127.0.0.1:0,[::1]:0\n")
    write("config", "small", b'network = "signet"\n[log]\nfilter = "info,btcpeer=debug"\n')


if __name__ == "__main__":
    main()
