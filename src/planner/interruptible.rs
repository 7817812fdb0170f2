//! Interruptible jobs: `d` of run time anywhere inside `[now, finish_by − margin)`.
//!
//! # Without further constraints: exact
//!
//! The cost of a set of run time is the integral of intensity over it, so the optimum is the
//! cheapest `d` of time: the available pieces sorted by intensity (ties: known before prior, then
//! earliest), taken whole until the last, which is taken partly — on the side that touches an
//! already chosen piece, so as not to add a resume. Touching pieces are merged into windows.
//! O(k log k) for k pieces. When the forecast does not know `d` of the time, unknown time competes
//! at the forecast's mean (the neutral prior) and the plan reports coverage < 1.
//!
//! # With a minimum chunk `c` and a resume overhead `o`: heuristic
//!
//! Every window must last at least `min(c, d)`, and each window after the first needs `o` more run
//! time (reloading a checkpoint), so `w` windows need `d + (w − 1)·o` in total. The heuristic:
//!
//! 1. start from the exact unconstrained optimum;
//! 2. merge neighbouring windows whose gap is no longer than `o` and fully available (running
//!    through the gap costs no more time than the resume it saves);
//! 3. grow each window shorter than `min(c, d)`, shortest first, into the cheaper adjacent time
//!    (merging with a neighbour when they touch); a window boxed in by unavailable time is dropped;
//! 4. extend with the cheapest adjacent time until the windows hold `d + (w − 1)·o` (merges lower
//!    the need), then trim the most expensive ends beyond it without going below `min(c, d)`;
//! 5. compare with the best single window (always feasible, no resume) and keep the cheaper,
//!    preferring full forecast coverage.
//!
//! The result is always feasible (tested), not necessarily optimal.

use super::capacity::{Room, Unlimited};
use super::contiguous::{self, Outcome};
use super::forecast::{Forecast, dt};
use super::{Constraints, NoPlan, Range};

/// A stretch of available time with one intensity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Cost per millisecond in the units of [`Forecast::prior_score`] (the prior for unknown
    /// time), so pieces compare exactly.
    pub(crate) rate: i128,
    pub(crate) known: bool,
}

/// The chosen windows and how they came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    pub(crate) windows: Vec<(i64, i64)>,
    pub(crate) partial: bool,
    pub(crate) heuristic: bool,
    pub(crate) shifted: bool,
}

/// Plans an interruptible job within `range` using only time with room; `Ok(None)` when there is
/// not enough time with room.
pub(crate) fn choose<R: Room>(
    forecast: &Forecast,
    constraints: &Constraints,
    range: &Range,
    room: &R,
) -> Result<Option<Choice>, NoPlan> {
    let (lo, end, d) = (range.lo, range.end(), range.d);
    let tl = &forecast.tl;
    let known_any = tl.known_at(tl.locate(end), end) - tl.known_at(tl.locate(lo), lo);
    if known_any == 0 {
        return Err(NoPlan::NoCoverage {
            from: dt(lo),
            to: dt(end),
        });
    }
    let free = room.free(lo, end);
    let Some(pieces) = available(forecast, lo, end, &free, d) else {
        return Ok(None);
    };
    let min_chunk = constraints
        .min_chunk
        .map_or(0, super::forecast::delta_ms_ceil);
    let overhead = super::forecast::delta_ms_ceil(constraints.resume_overhead).max(0);
    let constrained = min_chunk > 0 || overhead > 0;
    let windows = if constrained {
        let chunked = chunked(&pieces, d, min_chunk, overhead);
        let single = match contiguous::best_start(forecast, range, room) {
            Outcome::Found { start, .. } => Some(vec![(start, start + d)]),
            Outcome::NoRoom | Outcome::NoCoverage => None,
        };
        match (chunked, single) {
            (Some(c), Some(s)) => {
                if rank(forecast, &c) < rank(forecast, &s) {
                    c
                } else {
                    s
                }
            }
            (Some(c), None) => c,
            (None, Some(s)) => s,
            (None, None) => return Ok(None),
        }
    } else {
        cheapest(&pieces, d)
    };
    let (cost, known, total) = totals(forecast, &windows);
    let partial = known < total;
    let shifted = if R::LIMITED {
        match choose(forecast, constraints, range, &Unlimited)? {
            Some(free_choice) => {
                let (free_cost, free_known, free_total) = totals(forecast, &free_choice.windows);
                free_cost != cost || (free_known < free_total) != partial
            }
            None => false,
        }
    } else {
        false
    };
    Ok(Some(Choice {
        windows,
        partial,
        heuristic: constrained,
        shifted,
    }))
}

/// Ordering key of candidate window sets: full coverage first, then lower cost.
fn rank(forecast: &Forecast, windows: &[(i64, i64)]) -> (bool, i128) {
    let (cost, known, total) = totals(forecast, windows);
    (known < total, cost)
}

/// Exact cost, known and total milliseconds of a set of windows.
fn totals(forecast: &Forecast, windows: &[(i64, i64)]) -> (i128, i64, i64) {
    windows.iter().fold((0, 0, 0), |(c, k, t), &(a, b)| {
        let (cost, known) = contiguous::cost(forecast, a, b);
        (c + cost, k + known, t + (b - a))
    })
}

/// The pieces to choose from: known time with room if it holds `d`, else all time with room with
/// unknown time at the prior; `None` if even that is shorter than `d`.
fn available(
    forecast: &Forecast,
    lo: i64,
    end: i64,
    free: &[(i64, i64)],
    d: i64,
) -> Option<Vec<Piece>> {
    let known = pieces(forecast, lo, end, free, false);
    if known.iter().map(|p| p.end - p.start).sum::<i64>() >= d {
        return Some(known);
    }
    let all = pieces(forecast, lo, end, free, true);
    (all.iter().map(|p| p.end - p.start).sum::<i64>() >= d).then_some(all)
}

/// The forecast's pieces inside the free intervals (sorted, disjoint, within `[lo, end)`).
pub(crate) fn pieces(
    forecast: &Forecast,
    lo: i64,
    end: i64,
    free: &[(i64, i64)],
    include_unknown: bool,
) -> Vec<Piece> {
    let tl = &forecast.tl;
    let (total, known_ms) = forecast.prior_parts();
    let mut out = Vec::new();
    for &(fa, fb) in free {
        let (fa, fb) = (fa.max(lo), fb.min(end));
        if fa >= fb {
            continue;
        }
        let mut p = tl.locate(fa);
        while p < tl.len() && tl.t[p] < fb {
            let a = tl.t[p].max(fa);
            let b = tl.end(p).min(fb);
            if b > a {
                if tl.known(p) {
                    out.push(Piece {
                        start: a,
                        end: b,
                        rate: i128::from(tl.rate[p]) * known_ms,
                        known: true,
                    });
                } else if include_unknown {
                    out.push(Piece {
                        start: a,
                        end: b,
                        rate: total,
                        known: false,
                    });
                }
            }
            p += 1;
        }
    }
    out
}

/// The exact cheapest `need` of time from `pieces` (sorted by time), merged into windows.
pub(crate) fn cheapest(pieces: &[Piece], need: i64) -> Vec<(i64, i64)> {
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_unstable_by_key(|&i| (pieces[i].rate, !pieces[i].known, pieces[i].start));
    let mut take = vec![0i64; pieces.len()];
    let mut remaining = need;
    let mut partial = None;
    for &i in &order {
        if remaining <= 0 {
            break;
        }
        let len = pieces[i].end - pieces[i].start;
        let amount = len.min(remaining);
        take[i] = amount;
        remaining -= amount;
        if amount < len {
            partial = Some(i);
        }
    }
    // At equal cost, move the partial take to an equal piece that touches a chosen one: it saves
    // a resume.
    if let Some(i) = partial {
        // Whether piece j touches a chosen piece other than the partial one.
        let touches = |j: usize| {
            (j > 0 && j - 1 != i && take[j - 1] > 0 && pieces[j - 1].end == pieces[j].start)
                || (j + 1 < pieces.len()
                    && j + 1 != i
                    && take[j + 1] > 0
                    && pieces[j + 1].start == pieces[j].end)
        };
        if !touches(i) {
            let amount = take[i];
            let same =
                |j: usize| pieces[j].rate == pieces[i].rate && pieces[j].known == pieces[i].known;
            let swap = (0..pieces.len()).find(|&j| {
                j != i
                    && take[j] == 0
                    && same(j)
                    && pieces[j].end - pieces[j].start >= amount
                    && touches(j)
            });
            if let Some(j) = swap {
                take[i] = 0;
                take[j] = amount;
                partial = Some(j);
            }
        }
    }
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let amount = take[i];
        if amount == 0 {
            continue;
        }
        let interval = if partial == Some(i) {
            let left = i > 0 && take[i - 1] > 0 && pieces[i - 1].end == p.start;
            let right = i + 1 < pieces.len() && take[i + 1] > 0 && pieces[i + 1].start == p.end;
            if left || !right {
                (p.start, p.start + amount)
            } else {
                (p.end - amount, p.end)
            }
        } else {
            (p.start, p.end)
        };
        push_merged(&mut out, interval);
    }
    out
}

fn push_merged(out: &mut Vec<(i64, i64)>, interval: (i64, i64)) {
    match out.last_mut() {
        Some(last) if last.1 >= interval.0 => last.1 = last.1.max(interval.1),
        _ => out.push(interval),
    }
}

/// Merges windows that touch.
fn normalise(windows: &mut Vec<(i64, i64)>) {
    windows.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(windows.len());
    for &w in windows.iter() {
        push_merged(&mut out, w);
    }
    *windows = out;
}

/// Index of the piece containing `t`.
fn piece_at(pieces: &[Piece], t: i64) -> Option<usize> {
    let i = pieces.partition_point(|p| p.start <= t);
    (i > 0 && pieces[i - 1].end > t).then(|| i - 1)
}

/// Index of the piece containing the instant just before `t`.
fn piece_before(pieces: &[Piece], t: i64) -> Option<usize> {
    let i = pieces.partition_point(|p| p.start < t);
    (i > 0 && pieces[i - 1].end >= t).then(|| i - 1)
}

/// Rate and length of the available time just before window `k`.
fn room_left(pieces: &[Piece], w: &[(i64, i64)], k: usize) -> Option<(i128, i64)> {
    let s = w[k].0;
    let p = pieces[piece_before(pieces, s)?];
    let floor = if k > 0 {
        p.start.max(w[k - 1].1)
    } else {
        p.start
    };
    (s > floor).then_some((p.rate, s - floor))
}

/// Rate and length of the available time just after window `k`.
fn room_right(pieces: &[Piece], w: &[(i64, i64)], k: usize) -> Option<(i128, i64)> {
    let e = w[k].1;
    let p = pieces[piece_at(pieces, e)?];
    let ceiling = match w.get(k + 1) {
        Some(next) => p.end.min(next.0),
        None => p.end,
    };
    (ceiling > e).then_some((p.rate, ceiling - e))
}

/// Rate and length of the piece at the start of window `k`, inside it.
fn head(pieces: &[Piece], w: &[(i64, i64)], k: usize) -> Option<(i128, i64)> {
    let (s, e) = w[k];
    let p = pieces[piece_at(pieces, s)?];
    Some((p.rate, p.end.min(e) - s))
}

/// Rate and length of the piece at the end of window `k`, inside it.
fn tail(pieces: &[Piece], w: &[(i64, i64)], k: usize) -> Option<(i128, i64)> {
    let (s, e) = w[k];
    let p = pieces[piece_before(pieces, e)?];
    Some((p.rate, e - p.start.max(s)))
}

/// Whether `[a, b)` is covered by touching pieces.
fn fully_available(pieces: &[Piece], a: i64, b: i64) -> bool {
    let Some(mut i) = piece_at(pieces, a) else {
        return false;
    };
    let mut reached = pieces[i].end;
    while reached < b {
        i += 1;
        match pieces.get(i) {
            Some(p) if p.start == reached => reached = p.end,
            _ => return false,
        }
    }
    true
}

/// The heuristic for a minimum chunk and a resume overhead (module documentation); `None` when it
/// cannot find a feasible set of windows in `pieces`.
pub(crate) fn chunked(
    pieces: &[Piece],
    d: i64,
    min_chunk: i64,
    overhead: i64,
) -> Option<Vec<(i64, i64)>> {
    let c = min_chunk.min(d).max(1);
    let mut w = cheapest(pieces, d);
    // 2. Run through short, available gaps instead of paying for a resume.
    let mut k = 0;
    while k + 1 < w.len() {
        let gap = w[k + 1].0 - w[k].1;
        if gap <= overhead && fully_available(pieces, w[k].1, w[k + 1].0) {
            w[k].1 = w[k + 1].1;
            w.remove(k + 1);
        } else {
            k += 1;
        }
    }
    // Each step either consumes a piece boundary, reaches a target or removes a window.
    let limit = 8 * (pieces.len() + w.len()) + 64;
    let mut steps = 0;
    // 3. Grow windows shorter than the minimum chunk, shortest first.
    while let Some(k) = (0..w.len())
        .filter(|&k| w[k].1 - w[k].0 < c)
        .min_by_key(|&k| (w[k].1 - w[k].0, w[k].0))
    {
        steps += 1;
        if steps > limit {
            return None;
        }
        let short = c - (w[k].1 - w[k].0);
        match (room_left(pieces, &w, k), room_right(pieces, &w, k)) {
            (Some((left_rate, avail)), Some((right_rate, _))) if left_rate <= right_rate => {
                w[k].0 -= avail.min(short);
            }
            (_, Some((_, avail))) => w[k].1 += avail.min(short),
            (Some((_, avail)), None) => w[k].0 -= avail.min(short),
            (None, None) => {
                w.remove(k);
            }
        }
        normalise(&mut w);
    }
    // 4. Hold exactly d + (w − 1)·o where possible.
    loop {
        steps += 1;
        if steps > 2 * limit || w.is_empty() {
            return None;
        }
        let need = d + (w.len() as i64 - 1) * overhead;
        let total: i64 = w.iter().map(|x| x.1 - x.0).sum();
        if total < need {
            // Cheapest adjacent time; on ties the earliest.
            let mut best: Option<((i128, i64), usize, bool, i64)> = None;
            for k in 0..w.len() {
                if let Some((rate, avail)) = room_left(pieces, &w, k) {
                    let key = (rate, w[k].0 - avail);
                    if best.is_none_or(|b| key < b.0) {
                        best = Some((key, k, true, avail));
                    }
                }
                if let Some((rate, avail)) = room_right(pieces, &w, k) {
                    let key = (rate, w[k].1);
                    if best.is_none_or(|b| key < b.0) {
                        best = Some((key, k, false, avail));
                    }
                }
            }
            let (_, k, left, avail) = best?;
            let amount = avail.min(need - total);
            if left {
                w[k].0 -= amount;
            } else {
                w[k].1 += amount;
            }
            normalise(&mut w);
        } else if total > need {
            // Most expensive end of a window longer than the minimum; on ties the latest.
            let mut best: Option<((i128, i64), usize, bool, i64)> = None;
            for k in 0..w.len() {
                if w[k].1 - w[k].0 <= c {
                    continue;
                }
                if let Some((rate, len)) = head(pieces, &w, k) {
                    let key = (rate, w[k].0);
                    if best.is_none_or(|b| key > b.0) {
                        best = Some((key, k, true, len));
                    }
                }
                if let Some((rate, len)) = tail(pieces, &w, k) {
                    let key = (rate, w[k].1);
                    if best.is_none_or(|b| key > b.0) {
                        best = Some((key, k, false, len));
                    }
                }
            }
            let Some((_, k, left, len)) = best else {
                break;
            };
            let amount = len.min(total - need).min(w[k].1 - w[k].0 - c);
            if amount <= 0 {
                break;
            }
            if left {
                w[k].0 += amount;
            } else {
                w[k].1 -= amount;
            }
        } else {
            break;
        }
    }
    feasible(&w, d, c, overhead).then_some(w)
}

/// Whether windows meet the chunk and overhead constraints: sorted, not touching, each at least
/// `c`, together at least `d + (w − 1)·o`.
pub(crate) fn feasible(w: &[(i64, i64)], d: i64, c: i64, overhead: i64) -> bool {
    let ordered = w.windows(2).all(|p| p[0].1 < p[1].0);
    let long_enough = w.iter().all(|x| x.1 - x.0 >= c);
    let total: i64 = w.iter().map(|x| x.1 - x.0).sum();
    !w.is_empty() && ordered && long_enough && total >= d + (w.len() as i64 - 1) * overhead
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(start: i64, end: i64, rate: i128) -> Piece {
        Piece {
            start,
            end,
            rate,
            known: true,
        }
    }

    #[test]
    fn cheapest_takes_the_partial_piece_next_to_a_chosen_one() {
        let pieces = [
            piece(0, 10, 5),
            piece(10, 20, 1),
            piece(20, 30, 3),
            piece(30, 40, 2),
        ];
        // 1: [10,20); 2: [30,40); 3 partly: 5 of [20,30), touching both → left side.
        assert_eq!(cheapest(&pieces, 25), vec![(10, 25), (30, 40)]);
        // 1 and 3 partly: [20,30) touches the chosen [10,20) on its left.
        let pieces = [piece(0, 10, 5), piece(10, 20, 1), piece(20, 30, 2)];
        assert_eq!(cheapest(&pieces, 15), vec![(10, 25)]);
        // Partial piece touching only a chosen piece on its right.
        let pieces = [piece(0, 10, 2), piece(10, 20, 1)];
        assert_eq!(cheapest(&pieces, 15), vec![(5, 20)]);
    }

    #[test]
    fn an_equal_piece_touching_a_chosen_one_takes_the_partial_share() {
        let pieces = [piece(0, 10, 5), piece(20, 30, 5), piece(30, 40, 1)];
        assert_eq!(cheapest(&pieces, 15), vec![(25, 40)]);
    }

    #[test]
    fn equal_rates_take_the_earliest_time() {
        let pieces = [piece(0, 10, 1), piece(20, 30, 1), piece(40, 50, 1)];
        assert_eq!(cheapest(&pieces, 15), vec![(0, 10), (20, 25)]);
    }

    #[test]
    fn chunked_merges_gaps_cheaper_than_a_resume() {
        let pieces = [piece(0, 10, 1), piece(10, 12, 9), piece(12, 22, 1)];
        // Unconstrained: [0,10) and [12,20). With a 5 ms overhead the 2 ms gap is run through.
        let w = chunked(&pieces, 18, 0, 5).expect("feasible");
        assert_eq!(w.len(), 1);
        assert!(feasible(&w, 18, 1, 5));
        assert_eq!(w[0].1 - w[0].0, 18);
    }

    #[test]
    fn chunked_grows_short_windows_to_the_minimum() {
        let pieces = [
            piece(0, 100, 5),
            piece(100, 103, 1),
            piece(103, 200, 5),
            piece(200, 300, 2),
        ];
        let w = chunked(&pieces, 30, 20, 0).expect("feasible");
        assert!(feasible(&w, 30, 20, 0), "{w:?}");
    }

    #[test]
    fn chunked_fails_when_nothing_fits() {
        // Two separate 5 ms pieces cannot hold a 6 ms job in chunks of at least 4 ms with a 5 ms
        // resume overhead.
        let pieces = [piece(0, 5, 1), piece(10, 15, 1)];
        assert_eq!(chunked(&pieces, 6, 4, 5), None);
    }
}
