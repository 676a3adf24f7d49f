//! The Bitcoin networks btcpeer can join: magic bytes, default port, DNS seeds, genesis.

use std::fmt;
use std::str::FromStr;

use bitcoin::BlockHash;
use serde::{Deserialize, Serialize};

/// A Bitcoin network (chain) and its peer-to-peer parameters.
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
