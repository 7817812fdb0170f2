//! The optimal start of a non-interruptible job, in O(log n + k).
//!
//! With `F(t)` the integral of intensity from the forecast start to `t`, a window `[s, s+d)` costs
//! `F(s+d) − F(s)`. `F` is piecewise linear with breakpoints at the forecast's segment boundaries,
//! so the cost is piecewise linear in `s` with breakpoints where `s` or `s+d` meets a boundary;
//! the set of fully-known windows changes at the same points (and a capacity cap only where a
//! window meets a full slot). The minimum over the allowed range is therefore attained at a
//! boundary, a boundary minus `d`, a full slot's edge (minus `d`), or an end of the range — the
//! candidates scanned here, each in O(1) with two monotone cursors into the precomputed prefix
//! sums. Scores are exact fixed-point integers, so ties are resolved exactly: earliest start.

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
    fn offer(&mut self, score: i128, start: i64) {
        if score < self.score || (score == self.score && start < self.start) {
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
    #[inline]
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
            if self.room.fits(cursor, s, s + self.d) {
                self.acc.fit.offer(score, s);
            }
        } else {
            self.acc.fit.offer(score, s);
        }
    }

    /// Scores ascending starts with two monotone cursors.
    fn starts(&mut self, starts: impl Iterator<Item = i64>) {
        let tl = self.tl;
        let mut cursor = self.room.cursor();
        let mut ps = 0usize;
        let mut px = 0usize;
        for s in starts {
            let x = s + self.d;
            tl.advance(&mut ps, s);
            tl.advance(&mut px, x);
            let integral = tl.integral_at(px, x) - tl.integral_at(ps, s);
            let known = tl.known_at(px, x) - tl.known_at(ps, s);
            self.consider(&mut cursor, s, integral, known);
        }
    }

    fn run(&mut self, lo: i64, hi: i64) {
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
        // The ends of the range and the edges of full slots.
        let mut extra = self.room.extra_starts(lo, hi, d);
        extra.push(lo);
        extra.push(hi);
        extra.sort_unstable();
        extra.dedup();
        self.starts(extra.into_iter());
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
