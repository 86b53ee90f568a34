//! Evaluation against CloudWatch's documented semantics: M of N, every missing-data treatment
//! over every window of three datapoints, and the reason texts.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_spec::alarm::{AlarmSpec, Comparison, MissingData, Statistic};

use super::*;

fn alarm(n: u32, m: u32, missing: MissingData) -> AlarmSpec {
    AlarmSpec {
        name: "web-high-cpu".into(),
        description: None,
        metric: "cpu_percent".into(),
        labels: BTreeMap::new(),
        statistic: Statistic::Avg,
        comparison: Comparison::Greater,
        threshold: 80.0,
        period: Duration::from_secs(300),
        evaluation_periods: n,
        datapoints_to_alarm: m,
        missing,
        notify: Vec::new(),
        default: false,
    }
}

const X: Option<f64> = Some(90.0); // breaching
const O: Option<f64> = Some(10.0); // within the threshold
const MISSING_: Option<f64> = None;

const TREATMENTS: [MissingData; 4] = [
    MissingData::Missing,
    MissingData::NotBreaching,
    MissingData::Breaching,
    MissingData::Ignore,
];
const STATES: [AlarmState; 3] = [
    AlarmState::Ok,
    AlarmState::Alarm,
    AlarmState::InsufficientData,
];

fn state(
    n: u32,
    m: u32,
    missing: MissingData,
    points: &[Option<f64>],
    previous: AlarmState,
) -> AlarmState {
    evaluate(&alarm(n, m, missing), points, previous).state
}

#[test]
fn the_reason_reads_like_cloudwatch() {
    let two = alarm(2, 2, MissingData::Missing);
    let e = evaluate(&two, &[Some(85.1), Some(90.3)], AlarmState::Ok);
    assert_eq!(e.state, AlarmState::Alarm);
    assert!(e.changed);
    assert_eq!(
        e.reason,
        "Threshold Crossed: 2 out of the last 2 datapoints [85.1, 90.3] were greater than the threshold (80.0) (minimum 2 datapoints for OK -> ALARM transition)."
    );
    let e = evaluate(&two, &[Some(85.1), Some(20.0)], AlarmState::Alarm);
    assert_eq!(e.state, AlarmState::Ok);
    assert_eq!(
        e.reason,
        "Threshold Crossed: 1 out of the last 2 datapoints [85.1, 20.0] was not greater than the threshold (80.0) (minimum 1 datapoint for ALARM -> OK transition)."
    );
    let e = evaluate(&two, &[None, None], AlarmState::Ok);
    assert_eq!(e.state, AlarmState::InsufficientData);
    assert_eq!(e.reason, "Insufficient Data: 2 datapoints were unknown.");
    let e = evaluate(&two, &[Some(85.1), Some(90.3)], AlarmState::Alarm);
    assert!(!e.changed);
}

#[test]
fn m_out_of_n_counts_breaching_datapoints_in_the_window() {
    // N = 5, M = 3: three breaching anywhere in the last five make ALARM.
    for treatment in TREATMENTS {
        assert_eq!(
            state(5, 3, treatment, &[X, O, X, O, X], AlarmState::Ok),
            AlarmState::Alarm
        );
        assert_eq!(
            state(5, 3, treatment, &[X, O, X, O, O], AlarmState::Alarm),
            AlarmState::Ok
        );
        // Only the last N count: an old breach outside the window does not.
        assert_eq!(
            state(5, 3, treatment, &[X, X, O, O, X, O, X], AlarmState::Ok),
            AlarmState::Ok
        );
    }
    // The comparisons, at the threshold itself.
    let mut at = alarm(1, 1, MissingData::Missing);
    for (comparison, breaches) in [
        (Comparison::Greater, false),
        (Comparison::GreaterOrEqual, true),
        (Comparison::Less, false),
        (Comparison::LessOrEqual, true),
    ] {
        at.comparison = comparison;
        let e = evaluate(&at, &[Some(80.0)], AlarmState::InsufficientData);
        assert_eq!(e.state == AlarmState::Alarm, breaches, "{comparison:?}");
    }
    at.comparison = Comparison::Less;
    assert_eq!(
        evaluate(&at, &[Some(79.9)], AlarmState::Ok).state,
        AlarmState::Alarm
    );
}

#[test]
fn enough_present_datapoints_make_the_treatment_irrelevant() {
    // CloudWatch: when at least M datapoints are present, only they are evaluated.
    for treatment in TREATMENTS {
        for previous in STATES {
            assert_eq!(
                state(3, 2, treatment, &[X, MISSING_, X], previous),
                AlarmState::Alarm
            );
            assert_eq!(
                state(3, 2, treatment, &[X, MISSING_, O], previous),
                AlarmState::Ok
            );
            assert_eq!(
                state(3, 2, treatment, &[O, O, MISSING_], previous),
                AlarmState::Ok
            );
        }
    }
}

#[test]
fn all_missing_follows_each_treatment() {
    for previous in STATES {
        let none = [MISSING_, MISSING_, MISSING_];
        assert_eq!(
            state(3, 3, MissingData::Missing, &none, previous),
            AlarmState::InsufficientData
        );
        assert_eq!(state(3, 3, MissingData::Ignore, &none, previous), previous);
        assert_eq!(
            state(3, 3, MissingData::Breaching, &none, previous),
            AlarmState::Alarm
        );
        assert_eq!(
            state(3, 3, MissingData::NotBreaching, &none, previous),
            AlarmState::Ok
        );
        // A slice shorter than N counts as missing datapoints before it.
        assert_eq!(
            state(3, 3, MissingData::Missing, &[], previous),
            AlarmState::InsufficientData
        );
    }
}

#[test]
fn every_window_of_three_under_every_treatment() {
    // Each of the 27 windows over {breaching, within, missing}, for M = 1..=3, every treatment
    // and every previous state, against the rules written out independently.
    let values = [X, O, MISSING_];
    for a in values {
        for b in values {
            for c in values {
                let window = [a, b, c];
                let present = window.iter().filter(|v| v.is_some()).count();
                let breaching = window.iter().filter(|v| **v == X).count();
                for m in 1..=3u32 {
                    let m_us = m as usize;
                    for treatment in TREATMENTS {
                        for previous in STATES {
                            let expected = if present >= m_us {
                                if breaching >= m_us {
                                    AlarmState::Alarm
                                } else {
                                    AlarmState::Ok
                                }
                            } else {
                                match treatment {
                                    // The fewest fills: present + (M - present) evaluated, all
                                    // fills breaching: ALARM iff no present one is within.
                                    MissingData::Breaching if breaching == present => {
                                        AlarmState::Alarm
                                    }
                                    MissingData::Breaching => AlarmState::Ok,
                                    MissingData::NotBreaching => AlarmState::Ok,
                                    MissingData::Missing if present == 0 => {
                                        AlarmState::InsufficientData
                                    }
                                    MissingData::Missing | MissingData::Ignore => previous,
                                }
                            };
                            let got = evaluate(&alarm(3, m, treatment), &window, previous);
                            assert_eq!(
                                got.state, expected,
                                "{window:?} M={m} {treatment:?} from {previous}"
                            );
                            assert_eq!(got.changed, expected != previous);
                            assert!(!got.reason.is_empty());
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn rows_in_the_shape_of_cloudwatchs_table() {
    // N = 3, M = 3, previous OK. All missing follows CloudWatch's documented row; with two
    // present breaching and one missing, CloudWatch may look back further for a third datapoint,
    // Berth (no look-back) keeps the state under `missing` and `ignore`.
    use AlarmState::*;
    use MissingData::*;
    let rows: [(&[Option<f64>], [AlarmState; 4]); 4] = [
        // data           MISSING          IGNORE  BREACHING  NOT BREACHING (previous: OK)
        (&[O, O, O], [Ok, Ok, Ok, Ok]),
        (&[X, X, X], [Alarm, Alarm, Alarm, Alarm]),
        (
            &[MISSING_, MISSING_, MISSING_],
            [InsufficientData, Ok, Alarm, Ok],
        ),
        (&[X, X, MISSING_], [Ok, Ok, Alarm, Ok]),
    ];
    for (data, expected) in rows {
        for (treatment, want) in [Missing, Ignore, Breaching, NotBreaching]
            .into_iter()
            .zip(expected)
        {
            assert_eq!(
                state(3, 3, treatment, data, Ok),
                want,
                "{data:?} {treatment:?}"
            );
        }
    }
}

#[test]
fn numbers_in_reasons() {
    assert_eq!(number(80.0), "80.0");
    assert_eq!(number(0.1 + 0.2), "0.3");
    assert_eq!(number(10.0 / 300.0), "0.033");
    assert_eq!(list(&[Some(1.0), None]), "[1.0, missing]");
}
