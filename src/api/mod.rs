//! The carbonshift API: custom resources (`carbonshift.dev/v1alpha1`) and the annotation contract on
//! every workload carbonshift holds.
//!
//! Everything here is plain data plus pure functions; no client, no I/O.

pub mod annotations;
pub mod budget;
pub mod condition;
pub mod crd;
#[cfg(test)]
pub mod fixtures;
pub mod forecast;
pub mod ledger;
pub mod workload;

pub use budget::{BudgetAction, CarbonBudget, CarbonBudgetSpec, CarbonBudgetStatus};
pub use condition::Condition;
pub use forecast::{CarbonForecast, CarbonForecastSpec, CarbonForecastStatus, ProviderSpec};
pub use ledger::{CarbonLedger, CarbonLedgerSpec, CarbonLedgerStatus};
pub use workload::{CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, Phase};

/// The API group of every carbonshift resource and the prefix of its annotations.
pub const GROUP: &str = "carbonshift.dev";

/// The API version of the custom resources.
pub const VERSION: &str = "v1alpha1";

/// The field manager carbonshift uses for every server-side apply.
pub const FIELD_MANAGER: &str = "carbonshift";
