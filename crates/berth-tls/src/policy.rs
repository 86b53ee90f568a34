//! When to issue or renew a certificate: pure functions of the time, the certificate on disk and
//! the failures so far. No I/O; the manager does what these decide.
//!
//! - No usable certificate, one that lacks a desired host, or one from another issuer than the
//!   desired one (local CA → ACME, staging → production): issue now.
//! - A usable one: renew once it is within [`RENEW_BEFORE`] (30 days) of expiry, or within a
//!   third of its lifetime for certificates shorter than 90 days (so a 6-day certificate is
//!   renewed 2 days before expiry, not continuously).
//! - After a failure: wait 1 minute, doubling per further failure up to 6 hours, before the next
//!   attempt. A failure never removes the certificate that is still valid: the caller keeps
//!   serving it ([`crate::Manager::serving`]).

use std::time::{Duration, SystemTime};

/// Renew this long before expiry (the references' ACM and Let's Encrypt's advice).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Wait after the first failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// The validity period of a certificate on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The failed attempts since the last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failures {
    /// When the last attempt failed.
    pub last: SystemTime,
    /// How many attempts in a row failed (at least 1).
    pub attempts: u32,
}

/// What the certificate on disk looks like to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    /// No file, an unreadable one, a key that does not match, or an expired certificate.
    Unusable,
    /// A usable certificate; `covers_hosts` is false when a desired host is missing from it,
    /// `same_issuer` false when it came from another source than the one now desired (the
    /// local CA, another ACME directory such as staging).
    Usable {
        validity: Validity,
        covers_hosts: bool,
        same_issuer: bool,
    },
}

/// Why a certificate is (re)issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// There is no usable certificate.
    Missing,
    /// The certificate does not name every desired host.
    HostsChanged,
    /// The certificate came from another issuer than the one now desired.
    IssuerChanged,
    /// The certificate is within its renewal window.
    Expiring,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renew {
    /// Nothing to do; the renewal window opens in this long.
    Not(Duration),
    /// Issue or renew now.
    Now(Why),
    /// Issuance is due but backing off after failures: try again in this long.
    After(Duration),
}

/// How long before `not_after` the renewal window opens.
pub fn renew_before(validity: Validity) -> Duration {
    let lifetime = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or_default();
    RENEW_BEFORE.min(lifetime / 3)
}

/// The wait after `attempts` failures in a row: 1 min, 2 min, 4 min, ... at most 6 h.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

/// Decides whether to (re)issue a certificate now.
pub fn decide(now: SystemTime, current: Current, failures: Option<Failures>) -> Renew {
    let (why, due) = match current {
        Current::Unusable => (Why::Missing, now),
        Current::Usable {
            covers_hosts: false,
            ..
        } => (Why::HostsChanged, now),
        Current::Usable {
            same_issuer: false, ..
        } => (Why::IssuerChanged, now),
        Current::Usable { validity, .. } => {
            let due = validity
                .not_after
                .checked_sub(renew_before(validity))
                .unwrap_or(validity.not_before);
            (Why::Expiring, due)
        }
    };
    let retry_at = failures.map(|f| f.last + backoff(f.attempts));
    let at = match retry_at {
        Some(retry_at) if retry_at > due => retry_at,
        _ => due,
    };
    match at.duration_since(now) {
        Ok(wait) if !wait.is_zero() => {
            if at == due {
                Renew::Not(wait)
            } else {
                Renew::After(wait)
            }
        }
        _ => Renew::Now(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);
    const MIN: Duration = Duration::from_secs(60);

    fn t(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_800_000_000)
            + Duration::from_secs(days * 24 * 3600)
    }

    fn ninety_days_from(start: u64) -> Current {
        Current::Usable {
            validity: Validity {
                not_before: t(start),
                not_after: t(start + 90),
            },
            covers_hosts: true,
            same_issuer: true,
        }
    }

    #[test]
    fn a_missing_certificate_is_issued_now() {
        assert_eq!(
            decide(t(0), Current::Unusable, None),
            Renew::Now(Why::Missing)
        );
    }

    #[test]
    fn a_fresh_certificate_waits_for_its_window_30_days_before_expiry() {
        assert_eq!(
            decide(t(10), ninety_days_from(0), None),
            Renew::Not(50 * DAY)
        );
        assert_eq!(
            decide(t(60), ninety_days_from(0), None),
            Renew::Now(Why::Expiring)
        );
        assert_eq!(
            decide(t(89), ninety_days_from(0), None),
            Renew::Now(Why::Expiring)
        );
    }

    #[test]
    fn a_short_lived_certificate_renews_a_third_of_its_life_before_expiry() {
        let six_days = Current::Usable {
            validity: Validity {
                not_before: t(0),
                not_after: t(6),
            },
            covers_hosts: true,
            same_issuer: true,
        };
        assert_eq!(decide(t(1), six_days, None), Renew::Not(3 * DAY));
        assert_eq!(decide(t(4), six_days, None), Renew::Now(Why::Expiring));
    }

    #[test]
    fn a_missing_host_is_issued_now_even_with_a_fresh_certificate() {
        let current = Current::Usable {
            validity: Validity {
                not_before: t(0),
                not_after: t(90),
            },
            covers_hosts: false,
            same_issuer: true,
        };
        assert_eq!(decide(t(1), current, None), Renew::Now(Why::HostsChanged));
    }

    #[test]
    fn a_certificate_from_another_issuer_is_replaced_now() {
        let current = Current::Usable {
            validity: Validity {
                not_before: t(0),
                not_after: t(90),
            },
            covers_hosts: true,
            same_issuer: false,
        };
        assert_eq!(decide(t(1), current, None), Renew::Now(Why::IssuerChanged));
    }

    #[test]
    fn backoff_doubles_from_one_minute_to_six_hours() {
        assert_eq!(backoff(1), MIN);
        assert_eq!(backoff(2), 2 * MIN);
        assert_eq!(backoff(3), 4 * MIN);
        assert_eq!(backoff(9), 256 * MIN);
        assert_eq!(backoff(10), 6 * 60 * MIN);
        assert_eq!(backoff(u32::MAX), 6 * 60 * MIN);
    }

    #[test]
    fn a_failed_renewal_backs_off_then_tries_again() {
        let failures = Failures {
            last: t(61),
            attempts: 3,
        };
        assert_eq!(
            decide(t(61), ninety_days_from(0), Some(failures)),
            Renew::After(4 * MIN)
        );
        assert_eq!(
            decide(t(61) + 4 * MIN, ninety_days_from(0), Some(failures)),
            Renew::Now(Why::Expiring)
        );
    }

    #[test]
    fn an_old_failure_does_not_delay_a_window_that_opens_later() {
        // A failure long ago (the certificate was then issued) does not turn a fresh
        // certificate's wait into a back-off.
        let failures = Failures {
            last: t(0),
            attempts: 1,
        };
        assert_eq!(
            decide(t(10), ninety_days_from(0), Some(failures)),
            Renew::Not(50 * DAY)
        );
    }

    #[test]
    fn a_first_issuance_that_fails_backs_off_too() {
        let failures = Failures {
            last: t(0),
            attempts: 1,
        };
        assert_eq!(
            decide(t(0), Current::Unusable, Some(failures)),
            Renew::After(MIN)
        );
        assert_eq!(
            decide(t(0) + MIN, Current::Unusable, Some(failures)),
            Renew::Now(Why::Missing)
        );
    }
}
