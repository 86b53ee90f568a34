//! Rotation: which backups are past retention. A pure function of the list, the rules and the
//! time; the newest backup is always kept. Days, weeks (ISO) and months are counted in UTC.

use std::collections::BTreeSet;

use berth_spec::RetentionSpec;
use time::OffsetDateTime;

/// A complete backup as rotation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Unix seconds.
    pub finished_at: i64,
}

/// The ids of the backups that no rule keeps, oldest first.
pub fn expired(backups: &[Candidate], retention: &RetentionSpec, now: i64) -> Vec<String> {
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(b.id.cmp(&a.id)));
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    if let Some(newest) = newest_first.first() {
        keep.insert(&newest.id);
    }
    if let Some(max_age) = retention.max_age {
        let limit = now - max_age.as_secs() as i64;
        keep.extend(
            newest_first
                .iter()
                .filter(|b| b.finished_at >= limit)
                .map(|b| b.id.as_str()),
        );
    }
    let date = |b: &Candidate| {
        OffsetDateTime::from_unix_timestamp(b.finished_at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let mut bucketed = |count: u32, bucket: &dyn Fn(OffsetDateTime) -> (i32, u32)| {
        let mut seen = Vec::new();
        for b in &newest_first {
            if seen.len() >= count as usize {
                break;
            }
            let key = bucket(date(b));
            if !seen.contains(&key) {
                seen.push(key);
                keep.insert(&b.id);
            }
        }
    };
    bucketed(retention.daily, &|d| (d.year(), u32::from(d.ordinal())));
    bucketed(retention.weekly, &|d| {
        let (year, week, _) = d.to_iso_week_date();
        (year, u32::from(week))
    });
    bucketed(retention.monthly, &|d| {
        (d.year(), u32::from(u8::from(d.month())))
    });
    let mut gone: Vec<&Candidate> = newest_first
        .into_iter()
        .filter(|b| !keep.contains(b.id.as_str()))
        .collect();
    gone.reverse();
    gone.into_iter().map(|b| b.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DAY: i64 = 86_400;
    /// 2026-11-24 (a Tuesday) 03:00 UTC.
    const NOW: i64 = 1_795_489_200;

    fn daily_backups(days: i64) -> Vec<Candidate> {
        (0..days)
            .map(|d| Candidate {
                id: format!("b{d:03}"),
                finished_at: NOW - d * DAY,
            })
            .collect()
    }

    fn rules(daily: u32, weekly: u32, monthly: u32, max_age: Option<u64>) -> RetentionSpec {
        RetentionSpec {
            daily,
            weekly,
            monthly,
            max_age: max_age.map(|d| Duration::from_secs(d * DAY as u64)),
        }
    }

    #[test]
    fn seven_daily_four_weekly_twelve_monthly() {
        let all = daily_backups(400);
        let gone = expired(&all, &RetentionSpec::DEFAULT, NOW);
        let kept: Vec<&str> = all
            .iter()
            .map(|b| b.id.as_str())
            .filter(|id| !gone.iter().any(|g| g == id))
            .collect();
        // 7 days, then the newest of 3 more weeks, then the newest of more months: at most
        // 7 + 4 + 12 and at least 12 (the months) backups.
        assert!(kept.len() <= 23 && kept.len() >= 12, "{kept:?}");
        for d in 0..7 {
            assert!(
                kept.contains(&format!("b{d:03}").as_str()),
                "day {d}: {kept:?}"
            );
        }
        assert!(!kept.contains(&"b399"));
        // Oldest first.
        assert!(gone.first().unwrap() > gone.last().unwrap());
    }

    #[test]
    fn max_age_keeps_everything_younger() {
        let all = daily_backups(40);
        let gone = expired(&all, &rules(0, 0, 0, Some(30)), NOW);
        assert_eq!(gone.len(), 9, "{gone:?}"); // days 31..=39
        assert!(gone.contains(&"b031".to_string()) && !gone.contains(&"b030".to_string()));
    }

    #[test]
    fn the_newest_backup_is_never_deleted() {
        let old = vec![Candidate {
            id: "only".into(),
            finished_at: NOW - 900 * DAY,
        }];
        assert!(expired(&old, &rules(0, 0, 0, Some(1)), NOW).is_empty());
        let mut two = old.clone();
        two.push(Candidate {
            id: "older".into(),
            finished_at: NOW - 901 * DAY,
        });
        assert_eq!(expired(&two, &rules(0, 0, 0, None), NOW), ["older"]);
    }

    #[test]
    fn several_backups_a_day_keep_the_newest_of_the_day() {
        let all: Vec<Candidate> = (0..6)
            .map(|h| Candidate {
                id: format!("h{h}"),
                finished_at: NOW - h * 3600,
            })
            .collect();
        let gone = expired(&all, &rules(1, 0, 0, None), NOW);
        assert_eq!(gone, ["h5", "h4", "h3", "h2", "h1"]);
    }
}
