//! Go-style durations (`30s`, `5m`, `1h30m`, `1.5h`, `250ms`), the spelling Kubernetes users
//! know from Flux and `kubectl`, used by `interval`, `retryInterval` and `timeout`.

use std::time::Duration;

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
}

/// Parses a positive Go-style duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty(text.into()));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::Malformed(text.into()))?;
        let unit_len = rest[number_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - number_len);
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| DurationError::Malformed(text.into()))?;
        let unit = &rest[number_len..number_len + unit_len];
        total += number
            * seconds_per(unit)
                .ok_or_else(|| DurationError::UnknownUnit(text.into(), unit.into()))?;
        rest = &rest[number_len + unit_len..];
    }
    if total <= 0.0 {
        return Err(DurationError::Zero(text.into()));
    }
    Ok(Duration::from_secs_f64(total))
}

fn seconds_per(unit: &str) -> Option<f64> {
    match unit {
        "ms" => Some(0.001),
        "s" => Some(1.0),
        "m" => Some(60.0),
        "h" => Some(3600.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_and_compound_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
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
            parse_duration("5d"),
            Err(DurationError::UnknownUnit("5d".into(), "d".into()))
        );
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero("0s".into())));
        assert!(parse_duration("-5m").is_err());
    }
}
