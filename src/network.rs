//! The Bitcoin networks btcpeer can join: magic bytes, default port, DNS seeds, genesis.

use std::fmt;
use std::str::FromStr;

use bitcoin::BlockHash;
use serde::{Deserialize, Serialize};

/// A Bitcoin network (chain) and its peer-to-peer parameters. Distinct from `bitcoin::Network`
/// (which carries no ports, seeds or checkpoints); convert either way
/// with `From`, or [`Network::to_bitcoin`].
///
/// ```
/// use btcpeer::Network;
/// let net: Network = "regtest".parse().unwrap();
/// assert_eq!(net.magic(), [0xfa, 0xbf, 0xb5, 0xda]);
/// assert_eq!(net.default_port(), 18444);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The main Bitcoin network.
    #[default]
    Mainnet,
    /// The legacy test network (testnet3).
    Testnet3,
    /// The BIP94 test network (testnet4).
    Testnet4,
    /// The default public signet (default challenge).
    Signet,
    /// Local regression-test network.
    Regtest,
}

/// Every supported network, for help texts and tests.
pub const ALL_NETWORKS: [Network; 5] =
    [Network::Mainnet, Network::Testnet3, Network::Testnet4, Network::Signet, Network::Regtest];

impl Network {
    /// Lower-case name used in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet3 => "testnet3",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    /// The network's message-start bytes in wire order (Core's `pchMessageStart`).
    pub fn magic(self) -> [u8; 4] {
        self.to_bitcoin().magic().to_bytes()
    }

    /// The default P2P port (`nDefaultPort` in Core's `kernel/chainparams.cpp`).
    pub fn default_port(self) -> u16 {
        match self {
            Network::Mainnet => 8333,
            Network::Testnet3 => 18333,
            Network::Testnet4 => 48333,
            Network::Signet => 38333,
            Network::Regtest => 18444,
        }
    }

    /// DNS seeds listed in Core's `kernel/chainparams.cpp` (`vSeeds`).
    pub fn dns_seeds(self) -> &'static [&'static str] {
        match self {
            Network::Mainnet => &[
                "seed.bitcoin.sipa.be",
                "dnsseed.bluematt.me",
                "seed.bitcoin.jonasschnelli.ch",
                "seed.btc.petertodd.net",
                "seed.bitcoin.sprovoost.nl",
                "dnsseed.emzy.de",
                "seed.bitcoin.wiz.biz",
                "seed.mainnet.achownodes.xyz",
            ],
            Network::Testnet3 => &[
                "testnet-seed.bitcoin.jonasschnelli.ch",
                "seed.tbtc.petertodd.net",
                "seed.testnet.bitcoin.sprovoost.nl",
                "testnet-seed.bluematt.me",
                "seed.testnet.achownodes.xyz",
            ],
            Network::Testnet4 => &["seed.testnet4.bitcoin.sprovoost.nl", "seed.testnet4.wiz.biz"],
            Network::Signet => &["seed.signet.bitcoin.sprovoost.nl", "seed.signet.achownodes.xyz"],
            Network::Regtest => &[],
        }
    }

    /// Hash of the network's genesis block.
    pub fn genesis_hash(self) -> BlockHash {
        bitcoin::constants::genesis_block(self.to_bitcoin()).block_hash()
    }

    /// Bitcoin Core's historical checkpoints (`checkpointData`, `kernel/chainparams.cpp` at
    /// bitcoin/bitcoin 0083e015, before checkpoints were removed): a header at one of these heights must have this hash, and once the best chain has
    /// passed one, forks below it are refused ("bad-fork-prior-to-checkpoint"). They make a
    /// cheap low-difficulty chain from genesis useless: it would have to contain these blocks.
    pub fn checkpoints(self) -> &'static [(u32, &'static str)] {
        match self {
            Network::Mainnet => &[
                (11_111, "0000000069e244f73d78e8fd29ba2fd2ed618bd6fa2ee92559f542fdb26e7c1d"),
                (33_333, "000000002dd5588a74784eaa7ab0507a18ad16a236e7b1ce69f00d7ddfb5d0a6"),
                (74_000, "0000000000573993a3c9e41ce34471c079dcf5f52a0e824a81e7f953b8661a20"),
                (105_000, "00000000000291ce28027faea320c8d2b054b2e0fe44a773f3eefb151d6bdc97"),
                (134_444, "00000000000005b12ffd4cd315cd34ffd4a594f430ac814c91184a0d42d2b0fe"),
                (168_000, "000000000000099e61ea72015e79632f216fe6cb33d7899acb35b75c8303b763"),
                (193_000, "000000000000059f452a5f7340de6682a977387c17010ff6e6c3bd83ca8b1317"),
                (210_000, "000000000000048b95347e83192f69cf0366076336c639f9b7228e9ba171342e"),
                (216_116, "00000000000001b4f4b433e81ee46494af945cf96014816a4e2370f11b23df4e"),
                (225_430, "00000000000001c108384350f74090433e7fcf79a606b8e797f065b130575932"),
                (250_000, "000000000000003887df1f29024b06fc2200b55f8af8f35453d7be294df2d214"),
                (279_000, "0000000000000001ae8c72a0b0c301f67e3afca10e819efa9041e458e9bd7e40"),
                (295_000, "00000000000000004d9b4ef50f0f9d686fd69db2e03af35a100370c64632a983"),
            ],
            Network::Testnet3 => &[(546, "000000002a936ca763904c3c35fce2f3556c559c0214345d31b1bcebf76acb70")],
            Network::Testnet4 | Network::Signet | Network::Regtest => &[],
        }
    }

    /// Bitcoin Core's `nMinimumChainWork` (`kernel/chainparams.cpp` at bitcoin/bitcoin 0083e015,
    /// about v27) as big-endian hex: a
    /// chain with less work is not the network's, so the header sync never calls it synced.
    pub fn min_chain_work_hex(self) -> &'static str {
        match self {
            Network::Mainnet => "000000000000000000000000000000000000000063c4ebd298db40af57541800",
            Network::Testnet3 => "000000000000000000000000000000000000000000000c59b14e264ba6c15db9",
            Network::Signet => "00000000000000000000000000000000000000000000000000000206e86f08e8",
            // Not in the Core release these values come from; regtest has none.
            Network::Testnet4 | Network::Regtest => "00",
        }
    }

    /// [`min_chain_work_hex`](Self::min_chain_work_hex) as chainwork.
    pub fn min_chain_work(self) -> bitcoin::pow::Work {
        let hex = self.min_chain_work_hex();
        let mut be = [0u8; 32];
        let digits = hex.as_bytes();
        // Constant input, right-aligned: the last 64 digits at most.
        for (i, pair) in digits.rchunks(2).take(32).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("0");
            be[31 - i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
        bitcoin::pow::Work::from_be_bytes(be)
    }

    /// The matching `bitcoin` crate network.
    pub fn to_bitcoin(self) -> bitcoin::Network {
        match self {
            Network::Mainnet => bitcoin::Network::Bitcoin,
            Network::Testnet3 => bitcoin::Network::Testnet,
            Network::Testnet4 => bitcoin::Network::Testnet4,
            Network::Signet => bitcoin::Network::Signet,
            Network::Regtest => bitcoin::Network::Regtest,
        }
    }
}

impl From<Network> for bitcoin::Network {
    fn from(n: Network) -> bitcoin::Network {
        n.to_bitcoin()
    }
}

/// Converts from the `bitcoin` crate's network (which btcpeer's `Network` extends with peer
/// parameters: magic, port, seeds, checkpoints), so code holding one can get the other:
///
/// ```
/// use btcpeer::{bitcoin, Network};
/// assert_eq!(Network::from(bitcoin::Network::Regtest), Network::Regtest);
/// assert_eq!(bitcoin::Network::from(Network::Testnet4), bitcoin::Network::Testnet4);
/// ```
impl From<bitcoin::Network> for Network {
    fn from(n: bitcoin::Network) -> Network {
        match n {
            bitcoin::Network::Bitcoin => Network::Mainnet,
            bitcoin::Network::Testnet => Network::Testnet3,
            bitcoin::Network::Testnet4 => Network::Testnet4,
            bitcoin::Network::Signet => Network::Signet,
            bitcoin::Network::Regtest => Network::Regtest,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name given is not a network btcpeer knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?} (expected mainnet, testnet3, testnet4, signet or regtest)")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mainnet" | "main" | "bitcoin" => Ok(Network::Mainnet),
            "testnet3" | "testnet" | "test" => Ok(Network::Testnet3),
            "testnet4" => Ok(Network::Testnet4),
            "signet" => Ok(Network::Signet),
            "regtest" => Ok(Network::Regtest),
            _ => Err(UnknownNetwork(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from peer-etiquette.md §1.2 (Core's kernel/chainparams.cpp).
    #[test]
    fn magic_port_and_genesis_match_core() {
        let table = [
            (
                Network::Mainnet,
                "f9beb4d9",
                8333,
                "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
            ),
            (
                Network::Testnet3,
                "0b110907",
                18333,
                "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
            ),
            (
                Network::Testnet4,
                "1c163f28",
                48333,
                "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043",
            ),
            (
                Network::Signet,
                "0a03cf40",
                38333,
                "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
            ),
            (
                Network::Regtest,
                "fabfb5da",
                18444,
                "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            ),
        ];
        for (net, magic, port, genesis) in table {
            let hex: String = net.magic().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, magic, "{net}");
            assert_eq!(net.default_port(), port, "{net}");
            assert_eq!(net.genesis_hash().to_string(), genesis, "{net}");
            assert_eq!(net.name().parse::<Network>().unwrap(), net);
        }
        assert!("moon".parse::<Network>().is_err());
        assert!(Network::Regtest.dns_seeds().is_empty());
        assert!(!Network::Mainnet.dns_seeds().is_empty());
    }
}
