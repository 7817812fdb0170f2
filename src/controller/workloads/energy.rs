//! The shell's part of measured energy ([`crate::kepler`]): when a workload finishes, its pods'
//! energy over its runs is asked of Prometheus (`--prometheus-url`) and put into the decision
//! before anything is written; without Prometheus, or without Kepler data, the declared or
//! estimated figures stay and `status.energySource` says which. A later verification keeps the
//! measured energy.

use std::time::Duration;

use tracing::{info, warn};

use crate::controller::Context;
use crate::kepler::{self, SOURCE_KEPLER};
use crate::lifecycle::Decision;
use crate::note::{Note, NoteKind};

/// How long one question to Prometheus may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Puts the energy source, and Kepler's measured energy when there is one, into `decision` about
/// the workload `name` of `kind` in `namespace`.
pub(super) async fn apply(
    ctx: &Context,
    namespace: &str,
    kind: &str,
    name: &str,
    decision: &mut Decision,
) {
    let (Some(status), Some(spec)) = (decision.status.as_ref(), decision.spec.as_ref()) else {
        return;
    };
    if decision.completion.is_none() {
        // Verified later: with the energy measured at completion.
        if decision.verified.is_some()
            && status.energy_source.as_deref() == Some(SOURCE_KEPLER)
            && let Some(kwh) = status.estimated_energy_kwh
        {
            kepler::apply(decision, kwh);
        }
        return;
    }
    let declared = kepler::declared_source(&spec.power_source);
    let runs = kepler::runs(status);
    let measured = match &ctx.config.prometheus_url {
        None => None,
        Some(url) => {
            let client = reqwest::Client::builder().timeout(TIMEOUT).build();
            let answer = match client {
                Ok(client) => kepler::fetch(&client, url, namespace, kind, name, &runs).await,
                Err(e) => Err(kepler::KeplerError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                }),
            };
            match answer {
                Ok(Some(kwh)) => Some(kwh),
                Ok(None) => {
                    info!(%url, "Kepler has no energy series of the workload's pods; keeping the {declared} energy");
                    None
                }
                Err(error) => {
                    warn!(%error, "cannot measure the workload's energy; keeping the {declared} energy");
                    decision.events.push(Note {
                        kind: NoteKind::Warning,
                        reason: "EnergyNotMeasured",
                        action: "Measure",
                        message: format!("{error}; the {declared} energy is kept"),
                    });
                    None
                }
            }
        }
    };
    match measured {
        Some(kwh) => kepler::apply(decision, kwh),
        None => {
            if let Some(status) = decision.status.as_mut() {
                status.energy_source = Some(declared.to_string());
            }
        }
    }
}
