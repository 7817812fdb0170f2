//! The shell's part of verifying a finished workload: ask its forecast's provider for the
//! measured intensity over the time the verification needs (`lifecycle::verify::needed`), and
//! hand the answer to the state machine as a fact.

use kube::Api;

use crate::api::{CarbonForecast, CarbonWorkload};
use crate::controller::{Context, Error, forecasts};
use crate::lifecycle::{Measured, verify};

/// What the provider says about the measured intensity `workload` needs.
pub(super) async fn measured(ctx: &Context, workload: &CarbonWorkload) -> Result<Measured, Error> {
    let needed = workload
        .status
        .as_ref()
        .and_then(|status| verify::needed(&workload.spec, status));
    let Some((from, to)) = needed else {
        // Nothing ran: the state machine says so.
        return Ok(Measured::Pieces {
            segments: Vec::new(),
            source: String::new(),
        });
    };
    let name = &workload.spec.forecast;
    let forecasts: Api<CarbonForecast> = Api::all(ctx.client.clone());
    let Some(forecast) = forecasts
        .get_opt(name)
        .await
        .map_err(Error::api(format!("reading CarbonForecast {name}")))?
    else {
        return Ok(Measured::Unavailable {
            reason: format!("CarbonForecast {name} no longer exists"),
            permanent: true,
        });
    };
    let provider = match forecasts::provider_for(ctx, &forecast.spec).await? {
        Ok(provider) => provider,
        // A spec problem can be fixed: keep asking until the wait runs out.
        Err((_, message)) => {
            return Ok(Measured::Unavailable {
                reason: message,
                permanent: false,
            });
        }
    };
    Ok(match provider.history(from, to).await {
        Ok(history) => Measured::Pieces {
            segments: history.segments(),
            source: history.source,
        },
        Err(error) => Measured::Unavailable {
            permanent: error.category() == "unsupported",
            reason: error.to_string(),
        },
    })
}
