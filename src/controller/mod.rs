//! The controllers' shell. Until the shared controller module (Context, forecast store,
//! CarbonForecast controller) is merged, this file only declares the release patches.

pub mod release;
