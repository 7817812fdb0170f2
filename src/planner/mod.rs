//! Pure planning: given a carbon-intensity forecast, a job's constraints and `now`, decide when
//! the job runs. No kube, tokio or reqwest types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One forecast value: `intensity` (gCO2eq/kWh) holds from `start` until the next point's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// When the value starts to hold.
    pub start: DateTime<Utc>,
    /// Carbon intensity, gCO2eq/kWh.
    pub intensity: f64,
}
