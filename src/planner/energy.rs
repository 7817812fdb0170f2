//! Energy and emissions estimates of a plan, from the job's power draw and the facility's PUE.
//!
//! ```text
//! energy    [kWh]    = power [W] × PUE × run time [h] / 1000
//! emissions [gCO2eq] = energy [kWh] × expected intensity [gCO2eq/kWh]
//! run now   [gCO2eq] = power [W] × PUE × duration [h] / 1000 × run-now intensity
//! avoided   [gCO2eq] = run now − emissions
//! ```
//!
//! The run time is the plan's windows together: the job's duration plus any resume overhead of an
//! interruptible job, which running now (in one piece) does not pay. With forecast coverage below
//! one the intensities include the neutral prior, so the estimates do too.

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Plan;

/// Why a power model is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum EnergyError {
    /// Power that is not a positive, finite number of watts.
    #[error("power must be a positive, finite number of watts, not {0}")]
    BadPower(f64),
    /// A PUE below 1 or not finite.
    #[error("PUE must be a finite number of at least 1, not {0}")]
    BadPue(f64),
}

/// A job's electrical draw and its facility's power usage effectiveness.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Power {
    watts: f64,
    pue: f64,
}

impl Power {
    /// `watts` of IT power (positive) in a facility with power usage effectiveness `pue` (≥ 1;
    /// 1 counts the IT power only).
    pub fn new(watts: f64, pue: f64) -> Result<Power, EnergyError> {
        if !watts.is_finite() || watts <= 0.0 {
            return Err(EnergyError::BadPower(watts));
        }
        if !pue.is_finite() || pue < 1.0 {
            return Err(EnergyError::BadPue(pue));
        }
        Ok(Power { watts, pue })
    }

    /// IT power, W.
    pub fn watts(&self) -> f64 {
        self.watts
    }

    /// Power usage effectiveness.
    pub fn pue(&self) -> f64 {
        self.pue
    }

    /// Facility energy for `run_time`, kWh.
    pub fn energy_kwh(&self, run_time: TimeDelta) -> f64 {
        let hours = run_time.num_milliseconds() as f64 / 3_600_000.0;
        self.watts * self.pue * hours / 1_000.0
    }
}

/// Energy and emissions of a plan and of running the job now instead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Facility energy of the plan, kWh.
    pub energy_kwh: f64,
    /// Emissions of the plan, gCO2eq.
    pub emissions_grams: f64,
    /// Emissions of running the whole job now, gCO2eq; `None` when that intensity is unknown.
    pub run_now_emissions_grams: Option<f64>,
    /// `run now − plan`, gCO2eq (negative if the plan emits more, e.g. through resume overhead).
    pub avoided_grams: Option<f64>,
}

impl Estimate {
    /// The estimate from its inputs: the plan's run time and mean intensity, and the job's
    /// duration and run-now intensity.
    pub fn new(
        power: &Power,
        run_time: TimeDelta,
        intensity: f64,
        duration: TimeDelta,
        run_now_intensity: Option<f64>,
    ) -> Estimate {
        let energy_kwh = power.energy_kwh(run_time);
        let emissions_grams = energy_kwh * intensity;
        let run_now_emissions_grams = run_now_intensity.map(|i| power.energy_kwh(duration) * i);
        Estimate {
            energy_kwh,
            emissions_grams,
            run_now_emissions_grams,
            avoided_grams: run_now_emissions_grams.map(|now| now - emissions_grams),
        }
    }

    /// The estimate of `plan` for a job of `duration`.
    pub fn for_plan(power: &Power, plan: &Plan, duration: TimeDelta) -> Estimate {
        Self::new(
            power,
            plan.run_time(),
            plan.expected_intensity,
            duration,
            plan.run_now_intensity,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_in_exact_figures() {
        // 1.4 kW × 1.5 PUE × 3 h = 6.3 kWh; × 100 g/kWh = 630 g; now: 6.3 × 250 = 1575 g.
        let power = Power::new(1_400.0, 1.5).expect("valid");
        let e = Estimate::new(
            &power,
            TimeDelta::hours(3),
            100.0,
            TimeDelta::hours(3),
            Some(250.0),
        );
        assert!((e.energy_kwh - 6.3).abs() < 1e-12);
        assert!((e.emissions_grams - 630.0).abs() < 1e-9);
        assert!((e.run_now_emissions_grams.unwrap_or(f64::NAN) - 1_575.0).abs() < 1e-9);
        assert!((e.avoided_grams.unwrap_or(f64::NAN) - 945.0).abs() < 1e-9);
        let unknown = Estimate::new(
            &power,
            TimeDelta::minutes(30),
            100.0,
            TimeDelta::minutes(30),
            None,
        );
        assert_eq!(unknown.run_now_emissions_grams, None);
        assert_eq!(unknown.avoided_grams, None);
        assert!((unknown.energy_kwh - 1.05).abs() < 1e-12);
    }

    #[test]
    fn invalid_power_models() {
        assert_eq!(Power::new(0.0, 1.2), Err(EnergyError::BadPower(0.0)));
        assert!(Power::new(f64::INFINITY, 1.2).is_err());
        assert_eq!(Power::new(100.0, 0.9), Err(EnergyError::BadPue(0.9)));
        assert!(Power::new(100.0, f64::NAN).is_err());
    }
}
