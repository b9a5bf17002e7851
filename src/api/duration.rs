//! Go-style durations (`30s`, `5m`, `1h30m`, `1.5h`, `250ms`), the spelling Kubernetes users
//! know from Flux and `kubectl`, used by `interval`, `retryInterval` and `timeout`.
//!
//! Parsing is exact integer arithmetic on nanoseconds, as Go and the apiserver's CEL
//! `duration()` read them, so a value the CRD's bound accepts is never rounded above the
//! controller's own bound; every step is checked, so no input can overflow or panic.

use std::time::Duration;

/// The longest `spec.interval` and `spec.retryInterval` (30 days); the CRD enforces the same.
pub const MAX_INTERVAL: Duration = Duration::from_secs(720 * 3600);
/// The longest `spec.timeout`; the CRD enforces the same.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a duration could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration {0:?} is empty")]
    Empty(String),
    #[error("duration {0:?} is not a Go-style duration such as 30s, 5m or 1h30m")]
    Malformed(String),
    #[error("duration {0:?} has unknown unit {1:?} (use ms, s, m or h)")]
    UnknownUnit(String, String),
    #[error("duration {0:?} must be greater than zero")]
    Zero(String),
    #[error("duration {0:?} is too long to represent")]
    Overflow(String),
    #[error("duration {text:?} exceeds the maximum of {maximum}")]
    TooLong { text: String, maximum: String },
}

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Parses a positive Go-style duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty(text.into()));
    }
    let malformed = || DurationError::Malformed(text.into());
    let overflow = || DurationError::Overflow(text.into());
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let unit_len = rest[number_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - number_len);
        let unit = &rest[number_len..number_len + unit_len];
        let unit_nanos =
            nanos_per(unit).ok_or_else(|| DurationError::UnknownUnit(text.into(), unit.into()))?;
        let term = term_nanos(&rest[..number_len], unit_nanos)
            .ok_or_else(malformed)?
            .ok_or_else(overflow)?;
        total_nanos = total_nanos.checked_add(term).ok_or_else(overflow)?;
        rest = &rest[number_len + unit_len..];
    }
    if total_nanos == 0 {
        return Err(DurationError::Zero(text.into()));
    }
    let seconds = u64::try_from(total_nanos / NANOS_PER_SECOND).map_err(|_| overflow())?;
    let nanos = (total_nanos % NANOS_PER_SECOND) as u32;
    Ok(Duration::new(seconds, nanos))
}

/// Parses a duration and refuses one longer than `maximum`.
pub fn parse_bounded_duration(text: &str, maximum: Duration) -> Result<Duration, DurationError> {
    let duration = parse_duration(text)?;
    if duration > maximum {
        return Err(DurationError::TooLong {
            text: text.into(),
            maximum: format_duration(maximum),
        });
    }
    Ok(duration)
}

/// `number` (digits with at most one `.`) times `unit_nanos`, truncated to whole nanoseconds as
/// Go does: `None` when the number is malformed, `Some(None)` when it overflows.
fn term_nanos(number: &str, unit_nanos: u128) -> Option<Option<u128>> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    let mut nanos: u128 = 0;
    for digit in whole.bytes() {
        let next = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')));
        match next {
            Some(n) => nanos = n,
            None => return Some(None),
        }
    }
    let Some(mut nanos) = nanos.checked_mul(unit_nanos) else {
        return Some(None);
    };
    // Digits past the unit's nanosecond resolution cannot change the result.
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        if scale < 10 {
            break;
        }
        scale /= 10;
        nanos = match nanos.checked_add(u128::from(digit - b'0') * scale) {
            Some(n) => n,
            None => return Some(None),
        };
    }
    Some(Some(nanos))
}

fn nanos_per(unit: &str) -> Option<u128> {
    match unit {
        "ms" => Some(NANOS_PER_MILLI),
        "s" => Some(NANOS_PER_SECOND),
        "m" => Some(60 * NANOS_PER_SECOND),
        "h" => Some(3600 * NANOS_PER_SECOND),
        _ => None,
    }
}

/// A duration as Go writes it: whole hours or minutes (`720h`, `5m`) when it is one, else
/// milliseconds (`90000ms`), for messages and CEL rules. Reads back to the same value, to the
/// millisecond.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    // A fraction of a second is only kept by the milliseconds form.
    let whole = duration.subsec_nanos() == 0 && seconds > 0;
    if whole && seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if whole && seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn printed_durations_keep_their_fraction_of_a_second() {
        let odd = Duration::from_millis(549_300_685);
        assert_eq!(format_duration(odd), "549300685ms");
        assert_eq!(parse_duration(&format_duration(odd)), Ok(odd));
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(300_500)), "300500ms");
    }

    #[test]
    fn reads_single_and_compound_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0.1h"), Ok(Duration::from_secs(360)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty("".into())));
        assert_eq!(
            parse_duration("5"),
            Err(DurationError::Malformed("5".into()))
        );
        assert_eq!(
            parse_duration("m"),
            Err(DurationError::Malformed("m".into()))
        );
        assert_eq!(
            parse_duration("1.2.3s"),
            Err(DurationError::Malformed("1.2.3s".into()))
        );
        assert_eq!(
            parse_duration("5d"),
            Err(DurationError::UnknownUnit("5d".into(), "d".into()))
        );
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero("0s".into())));
        assert_eq!(
            parse_duration("-5m"),
            Err(DurationError::UnknownUnit("-5m".into(), "-".into()))
        );
    }

    #[test]
    fn absurdly_long_durations_are_errors_not_panics() {
        let huge = "99999999999999999999h";
        assert_eq!(
            parse_duration(huge),
            Err(DurationError::Overflow(huge.into()))
        );
        let digits = format!("{}s", "9".repeat(400));
        assert_eq!(
            parse_duration(&digits),
            Err(DurationError::Overflow(digits.clone()))
        );
        let many_terms = "5124095576030431h".repeat(3);
        assert!(matches!(
            parse_duration(&many_terms),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn bounded_parsing_refuses_values_over_the_maximum_and_names_it() {
        assert_eq!(
            parse_bounded_duration("720h", MAX_INTERVAL),
            Ok(MAX_INTERVAL)
        );
        assert_eq!(
            parse_bounded_duration("719h60m", MAX_INTERVAL),
            Ok(MAX_INTERVAL)
        );
        assert_eq!(
            parse_bounded_duration("720h1ms", MAX_INTERVAL),
            Err(DurationError::TooLong {
                text: "720h1ms".into(),
                maximum: "720h".into()
            })
        );
        let error = parse_bounded_duration("2h", MAX_TIMEOUT).unwrap_err();
        assert_eq!(
            error.to_string(),
            "duration \"2h\" exceeds the maximum of 1h"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_on_any_text(text in any::<String>()) {
            let _ = parse_duration(&text);
        }

        #[test]
        fn parsing_never_panics_on_duration_shaped_text(
            text in "([0-9]{0,30}(\\.[0-9]{0,30})?(ms|s|m|h|x)?){0,6}"
        ) {
            let _ = parse_duration(&text);
            let _ = parse_bounded_duration(&text, MAX_TIMEOUT);
        }

        #[test]
        fn whole_seconds_round_trip(seconds in 1u64..=u64::MAX / 3600) {
            prop_assert_eq!(
                parse_duration(&format!("{seconds}s")),
                Ok(Duration::from_secs(seconds))
            );
        }
    }
}
