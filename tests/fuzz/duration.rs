//! Go-style durations (`interval`, `retryInterval`, `timeout`): additive like Go's, printed
//! forms re-parse to the same value, bounds hold.

use std::time::Duration;

use driftless::api::{
    DurationError, MAX_INTERVAL, format_duration, parse_bounded_duration, parse_duration,
};
use proptest::prelude::*;

use crate::support::{config, each_entry, mutated_text, timed};

const PARSER: &str = "duration";

const TOKENS: &[&[u8]] = &[
    b"h",
    b"m",
    b"s",
    b"ms",
    b".",
    b"0",
    b"9",
    b"99999999999999999999",
];

fn check(text: &str) {
    let parsed = timed("parse_duration", || parse_duration(text));
    let bounded = parse_bounded_duration(text, MAX_INTERVAL);
    match &parsed {
        Ok(duration) => {
            assert!(!duration.is_zero(), "{text:?} parsed to zero");
            match &bounded {
                Ok(bounded) => assert!(bounded == duration && *bounded <= MAX_INTERVAL),
                Err(DurationError::TooLong { .. }) => assert!(*duration > MAX_INTERVAL),
                Err(other) => panic!("{text:?}: parse gave {duration:?}, bounded {other}"),
            }
            // The printed form of a whole number of milliseconds reads back the same.
            let millis = Duration::from_millis(duration.as_millis().min(u64::MAX as u128) as u64);
            if !millis.is_zero() && millis.as_secs() < u64::MAX / 1000 {
                let printed = format_duration(millis);
                assert_eq!(
                    parse_duration(&printed),
                    Ok(millis),
                    "{text:?}: {printed:?} does not read back"
                );
            }
        }
        Err(_) => assert!(
            bounded.is_err(),
            "{text:?}: only the bounded parse accepted it"
        ),
    }
}

#[test]
fn corpus_durations_keep_their_invariants() {
    each_entry(PARSER, |bytes| check(&String::from_utf8_lossy(bytes)));
}

fn term() -> impl Strategy<Value = (String, Duration)> {
    let unit = prop::sample::select(vec![
        ("ms", Duration::from_millis(1)),
        ("s", Duration::from_secs(1)),
        ("m", Duration::from_secs(60)),
        ("h", Duration::from_secs(3600)),
    ]);
    (0u64..1_000_000, unit)
        .prop_map(|(count, (unit, per))| (format!("{count}{unit}"), per * count as u32))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_durations_keep_their_invariants(text in mutated_text(PARSER, TOKENS)) {
        check(&text);
    }

    /// `1h30m` is `1h` plus `30m`: a sum of whole terms parses to the sum of their values.
    #[test]
    fn a_sum_of_terms_parses_to_the_sum(terms in proptest::collection::vec(term(), 1..6)) {
        let text: String = terms.iter().map(|(text, _)| text.as_str()).collect();
        let total: Duration = terms.iter().map(|(_, value)| *value).sum();
        let parsed = parse_duration(&text);
        if total.is_zero() {
            prop_assert!(matches!(parsed, Err(DurationError::Zero(_))), "{:?}", parsed);
        } else {
            prop_assert_eq!(parsed, Ok(total));
        }
        check(&text);
    }

    /// Concatenating two valid durations adds them, as Go does.
    #[test]
    fn concatenation_adds(a in mutated_text(PARSER, TOKENS), b in mutated_text(PARSER, TOKENS)) {
        if let (Ok(x), Ok(y)) = (parse_duration(&a), parse_duration(&b)) {
            let joined = format!("{a}{b}");
            match x.checked_add(y) {
                Some(sum) if sum.as_secs() < u64::MAX => prop_assert_eq!(parse_duration(&joined), Ok(sum), "{:?}", joined),
                _ => {}
            }
        }
    }
}
