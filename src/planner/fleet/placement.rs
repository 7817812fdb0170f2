//! Placement over candidate forecasts: a workload annotated `carbonshift.dev/forecasts` may run
//! on the nodes behind any of them (node pools on different grids, each named by its forecast's
//! `spec.placement.nodeSelector`). [`place`] plans it against every candidate's [`Fleet`] (so caps
//! apply) and picks the cleanest feasible candidate × window.
//!
//! Compatibility is decided on plain data ([`PodPlacement`]: the workload's own `nodeSelector`
//! and required node affinity, per pod template). Node labels other than the pool's selector are
//! unknown here, so only definite contradictions drop a candidate:
//!
//! - a `nodeSelector` key the pool also selects, with another value ([`Incompatible::ConflictingKey`]);
//! - required node affinity none of whose terms any node with the pool's labels (and any other
//!   labels) can match together with the template's `nodeSelector`: decided exactly per label key
//!   (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`; an empty term matches nothing, as in
//!   Kubernetes);
//! - a pool selector key that is not a label key ([`label_key_problem`]).
//!
//! Ranking of the eligible candidates, best first: a plan within the caps, by expected intensity,
//! then earliest start, then candidate order; a plan above the cap (overflow) likewise; a workload
//! already past its release time (it must start now) in the candidate with the lowest intensity
//! now; a plan-less one (no forecast coverage, the deadline rule applies) in the first candidate.
//! A workload that has started is never moved ([`Decision::Kept`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::{Demand, Fleet, Scheduled};
use crate::planner::{Constraints, NoPlan};

/// A node selector requirement's operator, as in `NodeSelectorRequirement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value, as an integer, is greater than `values[0]`.
    Gt,
    /// The label's value, as an integer, is less than `values[0]`.
    Lt,
}

/// One requirement of a required node affinity term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRequirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// The values.
    pub values: Vec<String>,
}

/// A `nodeSelectorTerm` of required node affinity (`matchExpressions` on labels): all its
/// requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTerm {
    /// The requirements.
    pub requirements: Vec<NodeRequirement>,
}

/// Where one pod template of a workload may run, as it says itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPlacement {
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`
    /// (any one must hold); empty when there is no required node affinity.
    pub required_terms: Vec<NodeTerm>,
}

/// Why a candidate's nodes cannot run the workload.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Incompatible {
    /// The workload's `nodeSelector` sets a key of the pool's selector to another value.
    #[error(
        "nodeSelector {key}={workload:?} conflicts with the forecast's placement {key}={pool:?}"
    )]
    ConflictingKey {
        /// The label key.
        key: String,
        /// The workload's value.
        workload: String,
        /// The pool's value.
        pool: String,
    },
    /// No term of the workload's required node affinity can hold on the pool's nodes.
    #[error("required node affinity cannot match the forecast's placement: {detail}")]
    Affinity {
        /// The first contradiction of each term.
        detail: String,
    },
    /// The pool's selector has a key that is not a label key.
    #[error("the forecast's placement key {key:?} is not a label key: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a candidate was not chosen.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Excluded {
    /// Its nodes cannot run the workload.
    #[error("{0}")]
    Incompatible(#[from] Incompatible),
    /// It has no forecast data (not found, not ready).
    #[error("no usable forecast")]
    NoForecast,
    /// The workload's constraints are invalid (the same for every candidate).
    #[error("{0}")]
    NoPlan(NoPlan),
}

/// One candidate forecast: its name, its nodes' selector (`None`: the whole cluster) and its
/// schedule (`None`: no usable forecast).
#[derive(Debug, Clone, Copy)]
pub struct Pool<'a, K: Ord + Clone> {
    /// The CarbonForecast's name.
    pub name: &'a str,
    /// Its `spec.placement.nodeSelector`.
    pub selector: Option<&'a BTreeMap<String, String>>,
    /// Its capacity schedule.
    pub fleet: Option<&'a Fleet<K>>,
}

/// A candidate that was not chosen, for `status.placement.alternatives`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    /// The CarbonForecast.
    pub forecast: String,
    /// Its plan's expected intensity, gCO2eq/kWh.
    pub expected_intensity: Option<f64>,
    /// When its plan would start.
    pub start: Option<DateTime<Utc>>,
    /// Its plan would go above the cap.
    pub overflow: bool,
    /// Why it was not eligible; `None` when it was, but not the best.
    pub excluded: Option<Excluded>,
}

/// Where a workload that has not started goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Index of the chosen candidate.
    pub index: usize,
    /// The chosen CarbonForecast.
    pub forecast: String,
    /// Its plan there (admit it into that forecast's [`Fleet`] with the same inputs to reserve it).
    pub scheduled: Scheduled,
    /// The chosen pool's node selector: the keys the release adds to every pod template (see
    /// [`selector_additions`]).
    pub node_selector: BTreeMap<String, String>,
    /// Every other candidate, in candidate order.
    pub alternatives: Vec<Alternative>,
}

/// What [`place`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The workload has started: it stays where it runs.
    Kept {
        /// The forecast it runs under.
        forecast: String,
    },
    /// The workload goes here.
    Placed(Placement),
}

/// Why no candidate can take the workload.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlacementError {
    /// The candidate list is empty.
    #[error("no candidate forecasts")]
    NoCandidates,
    /// Every candidate was excluded.
    #[error("no candidate forecast can take the workload: {}", Reasons(.0))]
    NoneEligible(Vec<(String, Excluded)>),
}

struct Reasons<'a>(&'a [(String, Excluded)]);

impl fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, why)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}: {why}")?;
        }
        Ok(())
    }
}

/// What is wrong with a label key (`[prefix/]name`: a DNS-1123 subdomain prefix of at most 253
/// characters, a name of 1–63 letters, digits, `-`, `_`, `.` starting and ending alphanumeric);
/// `None` when it is valid.
pub fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || prefix.len() > 253 {
            return Some("the prefix must be 1 to 253 characters");
        }
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            match (b.first(), b.last()) {
                (Some(f), Some(e)) => {
                    f.is_ascii_alphanumeric()
                        && e.is_ascii_alphanumeric()
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                }
                _ => false,
            }
        };
        if !prefix.split('.').all(label_ok) {
            return Some("the prefix must be a DNS-1123 subdomain (lower case)");
        }
    }
    if name.is_empty() || name.len() > 63 {
        return Some("the name must be 1 to 63 characters");
    }
    let b = name.as_bytes();
    let ends = b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric);
    if !ends
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Some(
            "the name must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
    None
}

/// The keys of `pool` that a pod template with node selector `own` lacks: what the release adds.
/// A key `own` sets to another value is an error (never overwritten).
pub fn selector_additions(
    own: &BTreeMap<String, String>,
    pool: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Incompatible> {
    let mut add = BTreeMap::new();
    for (key, value) in pool {
        match own.get(key) {
            Some(v) if v == value => {}
            Some(v) => {
                return Err(Incompatible::ConflictingKey {
                    key: key.clone(),
                    workload: v.clone(),
                    pool: value.clone(),
                });
            }
            None => {
                add.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(add)
}

/// Whether `r` holds on a node whose label `r.key` is `value` (`None`: absent).
fn holds(r: &NodeRequirement, value: Option<&str>) -> bool {
    let int = |s: &str| s.trim().parse::<i64>().ok();
    let threshold = || r.values.first().and_then(|v| int(v));
    match (r.operator, value) {
        (Operator::In, v) => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
        (Operator::NotIn, v) => v.is_none_or(|v| r.values.iter().all(|x| x != v)),
        (Operator::Exists, v) => v.is_some(),
        (Operator::DoesNotExist, v) => v.is_none(),
        (Operator::Gt, Some(v)) => matches!((int(v), threshold()), (Some(a), Some(b)) if a > b),
        (Operator::Lt, Some(v)) => matches!((int(v), threshold()), (Some(a), Some(b)) if a < b),
        (Operator::Gt | Operator::Lt, None) => false,
    }
}

/// Whether some node label value (or its absence) meets every requirement on one key: exactly
/// `fixed` when the pool's selector sets the key, anything otherwise. The values worth trying are
/// the ones the requirements name, their integer thresholds ± 1, and one value none of them names.
fn key_satisfiable(fixed: Option<&str>, reqs: &[&NodeRequirement]) -> bool {
    if let Some(value) = fixed {
        return reqs.iter().all(|r| holds(r, Some(value)));
    }
    if reqs.iter().all(|r| holds(r, None)) {
        return true;
    }
    let mut tries: Vec<String> = vec!["\u{0}unnamed".to_string()];
    for r in reqs {
        for v in &r.values {
            tries.push(v.clone());
            if let Ok(n) = v.trim().parse::<i64>() {
                tries.push(n.saturating_add(1).to_string());
                tries.push(n.saturating_sub(1).to_string());
            }
        }
    }
    tries
        .iter()
        .any(|v| reqs.iter().all(|r| holds(r, Some(v.as_str()))))
}

/// The first key of a term (with the template's own `nodeSelector` folded in as `In`
/// requirements) that no node of the pool can satisfy; `None` when some node may match it.
fn unsatisfiable_key(
    pool: &BTreeMap<String, String>,
    selector: &[NodeRequirement],
    term: &NodeTerm,
) -> Option<String> {
    let mut by_key: BTreeMap<&str, Vec<&NodeRequirement>> = BTreeMap::new();
    for r in selector.iter().chain(&term.requirements) {
        by_key.entry(r.key.as_str()).or_default().push(r);
    }
    by_key
        .into_iter()
        .find(|(key, reqs)| !key_satisfiable(pool.get(*key).map(String::as_str), reqs))
        .map(|(key, _)| key.to_string())
}

/// Whether the nodes selected by `pool` can run every pod template of `own`: for each template,
/// some node labelled with the pool's selector (any other labels) matches its `nodeSelector` and
/// one term of its required node affinity.
pub fn compatible(
    pool: &BTreeMap<String, String>,
    own: &[PodPlacement],
) -> Result<(), Incompatible> {
    for key in pool.keys() {
        if let Some(reason) = label_key_problem(key) {
            return Err(Incompatible::BadKey {
                key: key.clone(),
                reason,
            });
        }
    }
    for template in own {
        selector_additions(&template.node_selector, pool)?;
        if template.required_terms.is_empty() {
            continue;
        }
        let selector: Vec<NodeRequirement> = template
            .node_selector
            .iter()
            .map(|(k, v)| NodeRequirement {
                key: k.clone(),
                operator: Operator::In,
                values: vec![v.clone()],
            })
            .collect();
        let mut details = Vec::new();
        let any = template.required_terms.iter().enumerate().any(|(i, term)| {
            if term.requirements.is_empty() {
                details.push(format!("term {} is empty and matches no node", i + 1));
                return false;
            }
            match unsatisfiable_key(pool, &selector, term) {
                Some(key) => {
                    details.push(format!("term {} cannot be met on key {key}", i + 1));
                    false
                }
                None => true,
            }
        });
        if !any {
            return Err(Incompatible::Affinity {
                detail: details.join("; "),
            });
        }
    }
    Ok(())
}

/// Rank of an eligible candidate (lower is better).
#[derive(Debug, Clone, Copy)]
struct Rank {
    class: u8,
    intensity: f64,
    start: i64,
    index: usize,
}

impl Rank {
    fn cmp(&self, other: &Rank) -> Ordering {
        self.class
            .cmp(&other.class)
            .then(self.intensity.total_cmp(&other.intensity))
            .then(self.start.cmp(&other.start))
            .then(self.index.cmp(&other.index))
    }
}

/// Chooses where a workload runs: the cleanest feasible candidate × window (see the module
/// documentation for the ranking). `started_in`: the forecast it runs under if it has started (it
/// is then never moved). Plans are made with [`Fleet::probe`], so nothing is reserved: admit the
/// workload into the chosen fleet afterwards.
pub fn place<K: Ord + Clone + fmt::Debug>(
    pools: &[Pool<'_, K>],
    constraints: &Constraints,
    demand: Demand,
    own: &[PodPlacement],
    started_in: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Decision, PlacementError> {
    if let Some(forecast) = started_in {
        return Ok(Decision::Kept {
            forecast: forecast.to_string(),
        });
    }
    if pools.is_empty() {
        return Err(PlacementError::NoCandidates);
    }
    let empty = BTreeMap::new();
    let mut options: Vec<(Option<Rank>, Alternative, Option<Scheduled>)> = Vec::new();
    for (index, pool) in pools.iter().enumerate() {
        let mut alternative = Alternative {
            forecast: pool.name.to_string(),
            expected_intensity: None,
            start: None,
            overflow: false,
            excluded: None,
        };
        let selector = pool.selector.unwrap_or(&empty);
        if let Err(why) = compatible(selector, own) {
            alternative.excluded = Some(why.into());
            options.push((None, alternative, None));
            continue;
        }
        let Some(fleet) = pool.fleet else {
            alternative.excluded = Some(Excluded::NoForecast);
            options.push((None, alternative, None));
            continue;
        };
        let scheduled = fleet.probe(constraints, demand, now);
        let rank = match &scheduled.plan {
            Ok(plan) => {
                alternative.expected_intensity = Some(plan.expected_intensity);
                alternative.start = Some(plan.start);
                alternative.overflow = scheduled.overflow;
                Some(Rank {
                    class: u8::from(scheduled.overflow),
                    intensity: plan.expected_intensity,
                    start: plan.start.timestamp_millis(),
                    index,
                })
            }
            Err(NoPlan::DeadlinePassed { .. }) => Some(Rank {
                class: 2,
                intensity: fleet.forecast().intensity_at(now).unwrap_or(f64::INFINITY),
                start: 0,
                index,
            }),
            Err(NoPlan::NoCoverage { .. }) => Some(Rank {
                class: 3,
                intensity: 0.0,
                start: 0,
                index,
            }),
            Err(error @ NoPlan::InvalidConstraints { .. }) => {
                alternative.excluded = Some(Excluded::NoPlan(error.clone()));
                None
            }
        };
        options.push((rank, alternative, Some(scheduled)));
    }
    let best = options
        .iter()
        .enumerate()
        .filter_map(|(i, (rank, _, _))| rank.map(|r| (i, r)))
        .min_by(|a, b| a.1.cmp(&b.1))
        .map(|(i, _)| i);
    let Some(best) = best else {
        return Err(PlacementError::NoneEligible(
            options
                .into_iter()
                .filter_map(|(_, a, _)| a.excluded.map(|e| (a.forecast, e)))
                .collect(),
        ));
    };
    let mut chosen = None;
    let mut alternatives = Vec::with_capacity(options.len().saturating_sub(1));
    for (i, (_, alternative, scheduled)) in options.into_iter().enumerate() {
        if i == best {
            chosen = scheduled.map(|s| (alternative.forecast, s));
        } else {
            alternatives.push(alternative);
        }
    }
    let Some((forecast, scheduled)) = chosen else {
        return Err(PlacementError::NoCandidates);
    };
    Ok(Decision::Placed(Placement {
        index: best,
        forecast,
        scheduled,
        node_selector: pools[best].selector.cloned().unwrap_or_default(),
        alternatives,
    }))
}
