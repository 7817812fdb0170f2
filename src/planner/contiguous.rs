//! The optimal start of a non-interruptible job, in O(log n + k).
//!
//! With `F(t)` the integral of intensity from the forecast start to `t`, a window `[s, s+d)` costs
//! `F(s+d) − F(s)`. `F` is piecewise linear with breakpoints at the forecast's segment boundaries,
//! so the cost is piecewise linear in `s` with breakpoints where `s` or `s+d` meets a boundary;
//! the set of fully-known windows changes at the same points (and a capacity cap only where a
//! window meets the edge of a run of full slots). The minimum over the allowed range is therefore
//! attained at a boundary, a boundary minus `d`, such an edge (or edge minus `d`), or an end of
//! the range — the candidates scanned here, each in O(1) with monotone cursors into the
//! precomputed prefix sums (index offsets on a regular grid). Scores are exact fixed-point
//! integers, so ties are resolved exactly: earliest start.

use super::Range;
use super::capacity::Room;
use super::forecast::{Forecast, Timeline};

/// The result of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The best start (ms); `partial` when no fully-known window had room and the prior was used,
    /// `shifted` when a capacity cap moved the job away from its unconstrained optimum.
    Found {
        start: i64,
        partial: bool,
        shifted: bool,
    },
    /// Some window is (partly) known but none has room under the cap.
    NoRoom,
    /// No allowed window contains any known time.
    NoCoverage,
}

/// Lowest score so far, earliest start on ties.
#[derive(Debug, Clone, Copy)]
struct Best {
    score: i128,
    start: i64,
}

impl Best {
    const NONE: Best = Best {
        score: i128::MAX,
        start: i64::MAX,
    };

    #[inline]
    fn improves(&self, score: i128, start: i64) -> bool {
        score < self.score || (score == self.score && start < self.start)
    }

    #[inline]
    fn offer(&mut self, score: i128, start: i64) {
        if self.improves(score, start) {
            *self = Best { score, start };
        }
    }

    fn found(&self) -> bool {
        self.start != i64::MAX
    }
}

/// Best windows with room (`fit`) and regardless of room (`any`), and the most known time seen.
#[derive(Debug, Clone, Copy)]
struct Acc {
    fit: Best,
    any: Best,
    max_known: i64,
}

/// How a window is scored: full mode skips windows with unknown time; prior mode values unknown
/// time at the known mean.
trait Mode {
    const PRIOR: bool;
}
struct Full;
impl Mode for Full {
    const PRIOR: bool = false;
}
struct Prior;
impl Mode for Prior {
    const PRIOR: bool = true;
}

struct Scanner<'a, R: Room, M: Mode> {
    tl: &'a Timeline,
    d: i64,
    forecast: &'a Forecast,
    room: &'a R,
    acc: Acc,
    _mode: std::marker::PhantomData<M>,
}

impl<R: Room, M: Mode> Scanner<'_, R, M> {
    #[inline(always)]
    fn consider(&mut self, cursor: &mut R::Cursor, s: i64, integral: i128, known: i64) {
        let score = if M::PRIOR {
            self.acc.max_known = self.acc.max_known.max(known);
            self.forecast.prior_score(integral, self.d - known)
        } else if known == self.d {
            integral
        } else {
            return;
        };
        if R::LIMITED {
            self.acc.any.offer(score, s);
            // Room is only worth checking for a candidate that would win.
            if self.acc.fit.improves(score, s) && self.room.fits(cursor, s, s + self.d) {
                self.acc.fit = Best { score, start: s };
            }
        } else {
            self.acc.fit.offer(score, s);
        }
    }

    /// Scores a few ascending starts, seeking by binary search (they may lie far apart).
    fn starts(&mut self, starts: impl Iterator<Item = i64>) {
        let tl = self.tl;
        let mut cursor = self.room.cursor();
        let mut ps = 0;
        let mut px = 0;
        for s in starts {
            let x = s + self.d;
            tl.seek(&mut ps, s);
            tl.seek(&mut px, x);
            let integral = tl.integral_at(px, x) - tl.integral_at(ps, s);
            let known = tl.known_at(px, x) - tl.known_at(ps, s);
            self.consider(&mut cursor, s, integral, known);
        }
    }

    fn run(&mut self, lo: i64, hi: i64) {
        match self.tl.grid {
            Some(g) if !R::LIMITED && !M::PRIOR => self.grid(lo, hi, g),
            _ => self.general(lo, hi),
        }
        // The ends of the range and the edges of full slots.
        let mut extra = self.room.extra_starts(lo, hi, self.d);
        extra.push(lo);
        extra.push(hi);
        extra.sort_unstable();
        extra.dedup();
        self.starts(extra.into_iter());
    }

    /// Fully-known windows on a regular grid (every piece one step `g` long, no gaps): with
    /// `d = m·g + r`, a window starting on boundary `i` ends `r` into piece `i + m`, and one ending
    /// on boundary `j` starts `g − r` into piece `j − m − 1`, so both candidate families are index
    /// offsets — no cursor.
    ///
    /// Each candidate is first scored in `f64` and only evaluated exactly when that score is within
    /// `tolerance` of the lowest approximate score so far. The `f64` score differs from the exact
    /// one by at most `err = 2⁻⁵⁰·(C + R·g)` (C the largest prefix sum, R the largest rate: two
    /// rounded prefix sums, a product and two sums, each off by at most 2⁻⁵³ of its magnitude),
    /// and `tolerance = 2·err`. A candidate skipped at some point has an exact score above
    /// `approx_e + 2·err − err ≥ exact_e` for an already evaluated `e`, so it can be neither the
    /// minimum nor tied with it: the result is exactly that of evaluating every candidate.
    fn grid(&mut self, lo: i64, hi: i64, g: i64) {
        let tl = self.tl;
        let d = self.d;
        let last = tl.len() - 1;
        let m = usize::try_from(d / g).unwrap_or(usize::MAX);
        let r = d % g;
        let tail = usize::from(r > 0);
        let err = (tl.cum_f[last] + tl.max_rate_f * g as f64) * (2.0f64).powi(-50);
        let tolerance = 2.0 * err;
        // Starts on a boundary i in [lo, hi] whose window ends by the horizon.
        let ia = tl.t.partition_point(|&t| t < lo).max(1);
        let ib = tl.t.partition_point(|&t| t <= hi);
        let ib = ib.min((last + 1).saturating_sub(m + tail));
        if ia < ib {
            let (rf, ri) = (r as f64, i128::from(r));
            let mut best = Best::NONE;
            let mut approx_min = f64::INFINITY;
            let starts = &tl.cum_f[ia..ib];
            let ends = &tl.cum_f[ia + m..ib + m];
            let rates = &tl.rate_f[ia + m..ib + m];
            for (k, ((&a, &b), &rate)) in starts.iter().zip(ends).zip(rates).enumerate() {
                let approx = (b - a) + rate * rf;
                if approx <= approx_min + tolerance {
                    approx_min = approx_min.min(approx);
                    let i = ia + k;
                    let score = tl.cum[i + m] - tl.cum[i] + i128::from(tl.rate[i + m]) * ri;
                    if score < best.score {
                        best = Best {
                            score,
                            start: tl.t[i],
                        };
                    }
                }
            }
            if best.found() {
                self.acc.fit.offer(best.score, best.start);
            }
        }
        if r == 0 {
            // Windows ending on a boundary then start on one: already covered.
            return;
        }
        // Ends on a boundary j: x = t[j] in [lo + d, hi + d], start inside piece j − m − 1 ≥ 1.
        let ja = tl.t.partition_point(|&t| t < lo + d).max(m + 2);
        let jb = tl.t.partition_point(|&t| t <= hi + d);
        if ja < jb {
            let (into_f, into) = ((g - r) as f64, i128::from(g - r));
            let mut best = Best::NONE;
            let mut approx_min = f64::INFINITY;
            let ends = &tl.cum_f[ja..jb];
            let starts = &tl.cum_f[ja - m - 1..jb - m - 1];
            let rates = &tl.rate_f[ja - m - 1..jb - m - 1];
            for (k, ((&b, &a), &rate)) in ends.iter().zip(starts).zip(rates).enumerate() {
                let approx = (b - a) - rate * into_f;
                if approx <= approx_min + tolerance {
                    approx_min = approx_min.min(approx);
                    let j = ja + k;
                    let score =
                        tl.cum[j] - tl.cum[j - m - 1] - i128::from(tl.rate[j - m - 1]) * into;
                    if score < best.score {
                        best = Best {
                            score,
                            start: tl.t[j] - d,
                        };
                    }
                }
            }
            if best.found() {
                self.acc.fit.offer(best.score, best.start);
            }
        }
    }

    /// Any forecast: two monotone cursors.
    fn general(&mut self, lo: i64, hi: i64) {
        let tl = self.tl;
        let d = self.d;
        let n = tl.len();
        // Starts on a boundary: F(s) is read directly; a cursor follows s + d.
        {
            let mut cursor = self.room.cursor();
            let mut i = tl.t.partition_point(|&t| t < lo);
            let mut q = tl.locate(lo + d);
            while i < n && tl.t[i] <= hi {
                let s = tl.t[i];
                let x = s + d;
                tl.advance(&mut q, x);
                let known = tl.known_at(q, x) - tl.kcum[i];
                if M::PRIOR || known == d {
                    let integral = tl.integral_at(q, x) - tl.cum[i];
                    self.consider(&mut cursor, s, integral, known);
                }
                i += 1;
            }
        }
        // Ends on a boundary: F(s + d) is read directly; a cursor follows s.
        {
            let mut cursor = self.room.cursor();
            let mut j = tl.t.partition_point(|&t| t < lo + d);
            let mut p = tl.locate(lo);
            while j < n && tl.t[j] <= hi + d {
                let x = tl.t[j];
                let s = x - d;
                tl.advance(&mut p, s);
                let known = tl.kcum[j] - tl.known_at(p, s);
                if M::PRIOR || known == d {
                    let integral = tl.cum[j] - tl.integral_at(p, s);
                    self.consider(&mut cursor, s, integral, known);
                }
                j += 1;
            }
        }
    }
}

fn scan<R: Room, M: Mode>(forecast: &Forecast, range: &Range, room: &R) -> Acc {
    let mut scanner = Scanner::<R, M> {
        tl: &forecast.tl,
        d: range.d,
        forecast,
        room,
        acc: Acc {
            fit: Best::NONE,
            any: Best::NONE,
            max_known: 0,
        },
        _mode: std::marker::PhantomData,
    };
    scanner.run(range.lo, range.hi);
    let mut acc = scanner.acc;
    if !R::LIMITED {
        acc.any = acc.fit;
    }
    acc
}

/// The best start within `range` among windows with room.
pub(crate) fn best_start<R: Room>(forecast: &Forecast, range: &Range, room: &R) -> Outcome {
    let full = scan::<R, Full>(forecast, range, room);
    if full.fit.found() {
        return Outcome::Found {
            start: full.fit.start,
            partial: false,
            shifted: full.fit.start != full.any.start,
        };
    }
    let prior = scan::<R, Prior>(forecast, range, room);
    if prior.max_known == 0 {
        return Outcome::NoCoverage;
    }
    if prior.fit.found() {
        Outcome::Found {
            start: prior.fit.start,
            partial: true,
            shifted: full.any.found() || prior.fit.start != prior.any.start,
        }
    } else {
        Outcome::NoRoom
    }
}

/// Exact cost of `[a, b)` in the units of [`Forecast::prior_score`] (unknown time at the prior),
/// and its known milliseconds.
pub(crate) fn cost(forecast: &Forecast, a: i64, b: i64) -> (i128, i64) {
    let tl = &forecast.tl;
    let (pa, pb) = (tl.locate(a), tl.locate(b));
    let known = tl.known_at(pb, b) - tl.known_at(pa, a);
    let integral = tl.integral_at(pb, b) - tl.integral_at(pa, a);
    (forecast.prior_score(integral, b - a - known), known)
}
