//! The national clouds: where credentials, Graph requests and blob ledgers may go. A leaf module:
//! settings choose one, endpoints and ledger locations check against it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The national cloud the tenant lives in; it fixes the Graph root, login host and token scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    #[default]
    Global,
    Usgov,
    UsgovDod,
    China,
}

impl Cloud {
    /// Every cloud.
    pub(crate) const ALL: [Cloud; 4] = [Cloud::Global, Cloud::Usgov, Cloud::UsgovDod, Cloud::China];

    /// Its name in `reconcile.yaml` and `AZURE_CLOUD`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::Usgov => "usgov",
            Cloud::UsgovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// Parses a name as written in `AZURE_CLOUD`.
    pub(crate) fn parse(name: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The cloud a common other name means (`gcc-high` → `usgov`), for a "did you mean".
    pub(crate) fn suggest(name: &str) -> Option<Cloud> {
        let n: String = name.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
        match n.as_str() {
            "global" | "public" | "commercial" | "azurecloud" | "azurepubliccloud" | "worldwide" | "gcc" => {
                Some(Cloud::Global)
            }
            "usgov"
            | "gcchigh"
            | "usgovernment"
            | "azureusgovernment"
            | "azureusgovernmentcloud"
            | "usgovhigh"
            | "fairfax" => Some(Cloud::Usgov),
            "usgovdod" | "dod" | "usdod" | "gccdod" | "dodcon" => Some(Cloud::UsgovDod),
            "china" | "azurechinacloud" | "mooncake" | "21vianet" | "chinacloud" => Some(Cloud::China),
            _ => None,
        }
    }

    /// `name` as a cloud, or the hint that says which names are.
    pub(crate) fn parse_or_hint(name: &str) -> Result<Cloud, String> {
        Cloud::parse(name).ok_or_else(|| match Cloud::suggest(name) {
            Some(c) => format!("did you mean `{}`? The clouds are global, usgov, usgov-dod and china", c.as_str()),
            None => "use global, usgov, usgov-dod or china".to_owned(),
        })
    }
}
