//! `--plot FILE.svg`: the intensity curve over a stretch of the replay with, below it, when each
//! job ran with no shifting and when the planner ran it — so a reader sees where the work moved.
//!
//! Plain SVG 1.1 written by hand (no dependency): a step path for the curve (`class="curve"`), one
//! `rect` per run in two lanes (`class="runnow"`, `class="carbonshift"`), jobs stacked in rows so
//! that concurrent jobs stay visible, time ticks and a legend. When few jobs are in view
//! ([`DETAIL_JOBS`]), each run is also shaded on the curve with a dot at its mean intensity, and a
//! line links each job's run-now slot to its shifted slot (`class="moved"`).
//!
//! [`render_bars`] draws grouped bars with the same axes and style (`carbonshift report --plot`:
//! gCO2eq emitted and avoided per namespace and month).

use std::fmt::Write;

use chrono::{DateTime, TimeDelta, Utc};

use super::policy::Runs;
use super::series::{Series, at, ms};

/// What to draw.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// The actual trace.
    pub series: &'a Series,
    /// First instant shown.
    pub from: DateTime<Utc>,
    /// First instant not shown.
    pub to: DateTime<Utc>,
    /// Title line.
    pub title: String,
    /// Second line (e.g. the headline saving).
    pub subtitle: String,
    /// Runs without shifting.
    pub run_now: &'a Runs,
    /// Runs the planner chose, with the lane label.
    pub planned: Option<(&'a str, &'a Runs)>,
}

const W: f64 = 1000.0;
const H: f64 = 520.0;
const LEFT: f64 = 92.0;
const RIGHT: f64 = 20.0;
const CURVE_TOP: f64 = 70.0;
const CURVE_BOTTOM: f64 = 320.0;
const LANE_H: f64 = 70.0;
const LANE1: f64 = 340.0;
const LANE2: f64 = 420.0;

/// Most jobs in view for which runs are shaded on the curve and linked across the lanes.
pub const DETAIL_JOBS: usize = 40;

/// Longest span drawn with one rectangle per run; beyond it (a year, say) runs would be thinner
/// than a pixel and the lane a barcode, so each lane shows how many jobs run per time bin instead.
pub const MAX_RUN_DETAIL: TimeDelta = TimeDelta::days(31);

/// Bins of an aggregated lane.
const BINS: i64 = 240;

/// Mean number of running jobs in each of `BINS` equal bins of `[from, to)`: `(start, end, mean)`.
fn binned(runs: &Runs, from: i64, to: i64) -> Vec<(i64, i64, f64)> {
    let width = ((to - from) / BINS).max(1);
    let mut busy = vec![0i64; usize::try_from((to - from + width - 1) / width).unwrap_or(0)];
    for &(a, b) in runs.iter().flatten().flatten() {
        let (a, b) = (a.max(from), b.min(to));
        let mut t = a;
        while t < b {
            let index = (t - from) / width;
            let bin_end = from + (index + 1) * width;
            let end = b.min(bin_end);
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| busy.get_mut(i)) {
                *slot += end - t;
            }
            t = end;
        }
    }
    busy.iter()
        .enumerate()
        .map(|(i, &ms)| {
            let start = from + i64::try_from(i).unwrap_or(0) * width;
            let end = (start + width).min(to);
            (start, end, ms as f64 / (end - start).max(1) as f64)
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The start of an SVG of width `W` and `height`: the white background, the title and the
/// subtitle.
fn header(height: f64, title: &str, subtitle: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{W}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="42">{}</text>"#,
        escape(subtitle)
    );
    svg
}

/// The horizontal grid lines with their labels over `(from, to, step)` (`y` maps a value to its
/// height), and the rotated `title` of the axis centred at height `middle`.
fn y_axis(
    svg: &mut String,
    (from, to, step): (f64, f64, f64),
    y: impl Fn(f64) -> f64,
    title: &str,
    middle: f64,
) {
    let mut v = from;
    while v <= to + step / 2.0 {
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/>"##,
            W - RIGHT
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"#,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{middle:.1}" transform="rotate(-90 14 {middle:.1})" text-anchor="middle">{}</text>"#,
        escape(title)
    );
}

/// A round upper bound for the y axis and its tick step.
fn y_scale(max: f64) -> (f64, f64) {
    let max = max.max(1.0);
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// A tick step giving at most about 14 ticks over `span`.
fn x_step(span: TimeDelta) -> TimeDelta {
    let hours = [1, 2, 3, 6, 12, 24, 48, 168, 336, 720, 1440, 2160];
    hours
        .iter()
        .map(|&h| TimeDelta::hours(h))
        .find(|&s| span.num_milliseconds() / s.num_milliseconds().max(1) <= 14)
        .unwrap_or(TimeDelta::days(90))
}

/// Assigns each run (of a job) a row so that overlapping jobs get different rows; returns
/// `(row, start, end)` per run and the number of rows.
fn rows(runs: &Runs, from: i64, to: i64) -> (Vec<(usize, i64, i64)>, usize) {
    type Job<'a> = (i64, i64, &'a [(i64, i64)]);
    let mut jobs: Vec<Job<'_>> = runs
        .iter()
        .flatten()
        .filter_map(|r| {
            let first = r.first()?.0;
            let last = r.last()?.1;
            (last > from && first < to).then_some((first, last, r.as_slice()))
        })
        .collect();
    jobs.sort_by_key(|j| (j.0, j.1));
    let mut row_ends: Vec<i64> = Vec::new();
    let mut out = Vec::new();
    for (first, last, r) in jobs {
        let row = match row_ends.iter().position(|&e| e <= first) {
            Some(row) => row,
            None => {
                row_ends.push(i64::MIN);
                row_ends.len() - 1
            }
        };
        row_ends[row] = last;
        for &(a, b) in r {
            let (a, b) = (a.max(from), b.min(to));
            if b > a {
                out.push((row, a, b));
            }
        }
    }
    (out, row_ends.len())
}

/// Renders the chart as an SVG document.
pub fn render(chart: &Chart<'_>) -> String {
    let (from, to) = (ms(chart.from), ms(chart.to).max(ms(chart.from) + 1));
    let x = |t: i64| LEFT + (t - from) as f64 / (to - from) as f64 * (W - LEFT - RIGHT);
    let pieces: Vec<(i64, i64, f64)> = chart.series.pieces(from, to).collect();
    let max = pieces.iter().map(|p| p.2).fold(0.0, f64::max);
    let (ymax, ystep) = y_scale(max);
    let y = |v: f64| CURVE_BOTTOM - v / ymax * (CURVE_BOTTOM - CURVE_TOP);
    let mut svg = header(H, &chart.title, &chart.subtitle);
    y_axis(
        &mut svg,
        (0.0, ymax, ystep),
        y,
        "gCO2eq/kWh",
        (CURVE_TOP + CURVE_BOTTOM) / 2.0,
    );
    // X ticks at multiples of the step (UTC).
    let step = x_step(TimeDelta::milliseconds(to - from)).num_milliseconds();
    let mut tick = (from + step - 1).div_euclid(step) * step;
    while tick <= to {
        let xx = x(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{CURVE_TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eeeeee"/>"##,
            LANE2 + LANE_H
        );
        // Dates at midnight, times of day in between.
        let label = if tick.rem_euclid(86_400_000) == 0 {
            at(tick).format("%b %d").to_string()
        } else {
            at(tick).format("%H:%M").to_string()
        };
        let _ = writeln!(
            svg,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            LANE2 + LANE_H + 18.0
        );
        tick += step;
    }
    // The curve as a step path.
    let mut path = String::new();
    let mut last_end = None;
    for &(a, b, v) in &pieces {
        if last_end == Some(a) {
            let _ = write!(path, " V{:.1} H{:.1}", y(v), x(b));
        } else {
            let _ = write!(path, " M{:.1},{:.1} H{:.1}", x(a), y(v), x(b));
        }
        last_end = Some(b);
    }
    let _ = writeln!(
        svg,
        r##"<path class="curve" d="{}" fill="none" stroke="#1f4e79" stroke-width="1.2"/>"##,
        path.trim()
    );
    // Detail for few jobs: shaded runs with their mean intensity, and where each job moved.
    let in_view = |r: &Option<Vec<(i64, i64)>>| {
        r.as_ref()
            .is_some_and(|r| r.iter().any(|&(a, b)| b > from && a < to))
    };
    let shown = chart.run_now.iter().filter(|r| in_view(r)).count();
    if shown <= DETAIL_JOBS {
        let mut shade = |runs: &Runs, color: &str, class: &str| {
            for r in runs.iter().flatten() {
                let mut sum = 0.0;
                let mut len = 0i64;
                for &(a, b) in r {
                    let (a, b) = (a.max(from), b.min(to));
                    if b > a {
                        let _ = writeln!(
                            svg,
                            r#"<rect x="{:.2}" y="{CURVE_TOP}" width="{:.2}" height="{:.1}" fill="{color}" fill-opacity="0.18"/>"#,
                            x(a),
                            (x(b) - x(a)).max(0.8),
                            CURVE_BOTTOM - CURVE_TOP
                        );
                        sum += chart.series.integral(a, b);
                        len += b - a;
                    }
                }
                if len > 0 {
                    let (first, last) = (r[0].0.max(from), r[r.len() - 1].1.min(to));
                    let _ = writeln!(
                        svg,
                        r#"<circle class="{class}" cx="{:.2}" cy="{:.2}" r="3.5" fill="{color}"/>"#,
                        (x(first) + x(last)) / 2.0,
                        y(sum / len as f64)
                    );
                }
            }
        };
        shade(chart.run_now, "#757575", "runnow-mean");
        if let Some((_, planned)) = chart.planned {
            shade(planned, "#2e7d32", "carbonshift-mean");
            for (before, after) in chart.run_now.iter().zip(planned) {
                if let (Some(b), Some(a)) = (before, after)
                    && let (Some(&(b0, _)), Some(&(a0, _))) = (b.first(), a.first())
                    && a0 != b0
                    && (from..to).contains(&b0)
                    && (from..to).contains(&a0)
                {
                    let _ = writeln!(
                        svg,
                        r##"<line class="moved" x1="{:.2}" y1="{:.1}" x2="{:.2}" y2="{LANE2}" stroke="#2e7d32" stroke-width="1" stroke-dasharray="3,2"/>"##,
                        x(b0),
                        LANE1 + LANE_H,
                        x(a0)
                    );
                }
            }
        }
    }
    // Lanes.
    let mut lane = |label: &str, class: &str, color: &str, top: f64, runs: &Runs| {
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{LANE_H}" fill="#fafafa" stroke="#dddddd"/>"##,
            W - LEFT - RIGHT
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            top + LANE_H / 2.0 + 4.0,
            escape(label)
        );
        if to - from > MAX_RUN_DETAIL.num_milliseconds() {
            let bins = binned(runs, from, to);
            let peak = bins.iter().map(|b| b.2).fold(0.0, f64::max);
            for (a, b, mean) in bins.into_iter().filter(|b| b.2 > 0.0) {
                let h = (mean / peak * LANE_H).max(0.8);
                let _ = writeln!(
                    svg,
                    r#"<rect class="{class} binned" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" fill="{color}"><title>{} – {}: {mean:.2} job(s) running on average</title></rect>"#,
                    x(a),
                    top + LANE_H - h,
                    (x(b) - x(a)).max(0.8),
                    at(a).format("%Y-%m-%d %H:%M"),
                    at(b).format("%Y-%m-%d %H:%M")
                );
            }
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10" fill="#555555">bar height: jobs running (peak {peak:.1})</text>"##,
                W - RIGHT - 4.0,
                top + 11.0
            );
            return;
        }
        let (placed, n) = rows(runs, from, to);
        let row_h = LANE_H / n.max(1) as f64;
        for (row, a, b) in placed {
            let _ = writeln!(
                svg,
                r#"<rect class="{class}" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{color}"><title>{} – {}</title></rect>"#,
                x(a),
                top + row as f64 * row_h,
                (x(b) - x(a)).max(0.8),
                (row_h - 0.5).max(0.5),
                at(a).format("%Y-%m-%d %H:%M"),
                at(b).format("%Y-%m-%d %H:%M")
            );
        }
    };
    lane("run now", "runnow", "#9e9e9e", LANE1, chart.run_now);
    if let Some((label, runs)) = chart.planned {
        lane(label, "carbonshift", "#2e7d32", LANE2, runs);
    }
    // Legend.
    let lx = W - RIGHT - 330.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{lx}" y1="56" x2="{:.1}" y2="56" stroke="#1f4e79" stroke-width="2"/><text x="{:.1}" y="60">intensity</text>"##,
        lx + 20.0,
        lx + 26.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="50" width="14" height="10" fill="#9e9e9e"/><text x="{:.1}" y="60">no shifting</text>"##,
        lx + 95.0,
        lx + 113.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="50" width="14" height="10" fill="#2e7d32"/><text x="{:.1}" y="60">carbonshift</text>"##,
        lx + 200.0,
        lx + 218.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// One series of a grouped bar chart: one value per group.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Legend label.
    pub label: String,
    /// One value per group, in the groups' order.
    pub values: Vec<f64>,
}

/// A grouped bar chart: per group (a month, say) one bar per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Title line.
    pub title: String,
    /// Second line.
    pub subtitle: String,
    /// The y axis' unit.
    pub unit: String,
    /// The groups along the x axis, in order.
    pub groups: Vec<String>,
    /// The series (`class="bar series-<i>"`), in legend order.
    pub series: Vec<BarSeries>,
}

/// Colours of the bar series, in turn.
const PALETTE: [&str; 6] = [
    "#757575", "#2e7d32", "#1f4e79", "#ef6c00", "#6a1b9a", "#00838f",
];

/// Renders a grouped bar chart as an SVG document, with the axes of [`render`].
pub fn render_bars(chart: &Bars) -> String {
    let values = chart.series.iter().flat_map(|s| s.values.iter().copied());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (ymax, ystep) = y_scale(hi);
    let ymin = if lo < 0.0 {
        -(-lo / ystep).ceil() * ystep
    } else {
        0.0
    };
    let (top, bottom) = (CURVE_TOP, LANE2 + LANE_H - 40.0);
    let y = |v: f64| bottom - (v - ymin) / (ymax - ymin).max(f64::MIN_POSITIVE) * (bottom - top);
    // Room for the legend, three entries a line.
    let h = bottom + 40.0 + chart.series.len().div_ceil(3) as f64 * 16.0 + 10.0;
    let mut svg = header(h, &chart.title, &chart.subtitle);
    y_axis(
        &mut svg,
        (ymin, ymax, ystep),
        y,
        &chart.unit,
        (top + bottom) / 2.0,
    );
    let groups = chart.groups.len().max(1) as f64;
    let width = (W - LEFT - RIGHT) / groups;
    let bars = chart.series.len().max(1) as f64;
    let bar = (width * 0.8 / bars).max(1.0);
    for (g, label) in chart.groups.iter().enumerate() {
        let x0 = LEFT + g as f64 * width + width * 0.1;
        for (i, series) in chart.series.iter().enumerate() {
            let value = series.values.get(g).copied().unwrap_or(0.0);
            let (a, b) = (y(value.max(0.0)), y(value.min(0.0)));
            let _ = writeln!(
                svg,
                r#"<rect class="bar series-{i}" x="{:.1}" y="{a:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {value:.1}</title></rect>"#,
                x0 + i as f64 * bar,
                (bar - 1.0).max(0.5),
                (b - a).max(0.0),
                PALETTE[i % PALETTE.len()],
                escape(&series.label),
                escape(label),
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + width * 0.4,
            bottom + 18.0,
            escape(label)
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333333"/>"##,
        y(0.0),
        W - RIGHT,
        y(0.0)
    );
    for (i, series) in chart.series.iter().enumerate() {
        let (lx, ly) = (
            LEFT + (i % 3) as f64 * 280.0,
            bottom + 40.0 + (i / 3) as f64 * 16.0,
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ly - 9.0,
            PALETTE[i % PALETTE.len()],
            lx + 16.0,
            ly,
            escape(&series.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(y_scale(593.3), (600.0, 200.0));
        assert_eq!(y_scale(116.4), (125.0, 25.0));
        assert_eq!(y_scale(0.0), (1.0, 0.2));
        assert_eq!(x_step(TimeDelta::days(7)), TimeDelta::hours(12));
        assert_eq!(x_step(TimeDelta::days(366)), TimeDelta::days(30));
    }

    #[test]
    fn overlapping_jobs_get_their_own_rows() {
        let runs: Runs = vec![
            Some(vec![(0, 10)]),
            Some(vec![(5, 15)]),
            Some(vec![(10, 20)]),
            None,
            Some(vec![(30, 40)]),
        ];
        let (placed, n) = rows(&runs, 0, 35);
        assert_eq!(n, 2);
        assert_eq!(
            placed,
            vec![(0, 0, 10), (1, 5, 15), (0, 10, 20), (0, 30, 35)]
        );
    }

    #[test]
    fn a_year_of_runs_is_binned_not_a_barcode() {
        let day = TimeDelta::days(1).num_milliseconds();
        let hour = TimeDelta::hours(1).num_milliseconds();
        // One 1-hour run a day for a year, and two at once on the first day.
        let mut runs: Runs = (0..366)
            .map(|d| Some(vec![(d * day, d * day + hour)]))
            .collect();
        runs.push(Some(vec![(0, hour)]));
        let bins = binned(&runs, 0, 366 * day);
        assert!(bins.len() <= BINS as usize + 1, "{} bins", bins.len());
        let width = bins[0].1 - bins[0].0;
        // The first bin holds three hours of running jobs (two on day 0, one on day 1).
        assert!((bins[0].2 - 3.0 * hour as f64 / width as f64).abs() < 1e-9);
        let total: f64 = bins.iter().map(|b| b.2 * (b.1 - b.0) as f64).sum();
        assert!(
            (total - 367.0 * hour as f64).abs() < 1.0,
            "job time kept: {total}"
        );

        let points = (0..=366)
            .map(|d| crate::planner::Point {
                start: at(d * day),
                intensity: 100.0 + (d % 7) as f64,
            })
            .collect();
        let forecast = crate::planner::Forecast::new(points).expect("a daily series");
        let series = Series::from_forecast(&forecast);
        let chart = Chart {
            series: &series,
            from: at(0),
            to: at(366 * day),
            title: "a year".into(),
            subtitle: String::new(),
            run_now: &runs,
            planned: None,
        };
        let svg = render(&chart);
        let lane_rects = svg.matches(r#"class="runnow"#).count();
        assert!(
            lane_rects <= BINS as usize + 1 && svg.contains(r#"class="runnow binned""#),
            "{lane_rects} run rectangles over a year"
        );
        // A week keeps one rectangle per run.
        let week = Chart {
            to: at(7 * day),
            ..chart.clone()
        };
        let svg = render(&week);
        assert!(!svg.contains("binned"));
        assert_eq!(svg.matches(r#"class="runnow""#).count(), 8);
    }

    #[test]
    fn escapes_text() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
