//! Tests of the results page's formatting helpers.

use super::render::{max_abs_delta, verdict};
use super::*;

#[test]
fn cells_show_the_difference_to_the_paper() {
    assert_eq!(cell(13.514, 13.76), "13.51 (-0.25)");
    assert_eq!(cell(2.8, 2.8), "2.80 (+0.00)");
}

#[test]
fn verdicts_follow_the_differences() {
    assert!(verdict(&[0.0, 0.0]).starts_with("re-planning changes nothing"));
    assert_eq!(
        verdict(&[0.5, 1.5, 0.0]),
        "re-planning beats plan-once by 0.67 points on average (from +0.00 to +1.50 over the 3 cases)"
    );
    assert!(verdict(&[-0.5, 0.1]).starts_with("re-planning does not beat plan-once: -0.20"));
}

#[test]
fn largest_distance_to_the_paper() {
    let mut cols = [[Column::default(); 4]; 3];
    cols[1][2].compat = PAPER_I_PERFECT[1][2] - 0.3;
    let paper = [[0.0; 4]; 3];
    let d = max_abs_delta(&cols, &PAPER_I_PERFECT, |c| c.compat);
    assert!((d - PAPER_I_PERFECT[0][3]).abs() < 1e-12, "{d}");
    let zero = max_abs_delta(&[[Column::default(); 4]; 3], &paper, |c| c.compat);
    assert_eq!(zero, 0.0);
}
