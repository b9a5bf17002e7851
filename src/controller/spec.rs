//! What of a GitRepository's spec the controller refuses to act on, before any work.

use std::time::Duration;

use super::{Settings, conditions::Reason, failure::Failure, identity::service_account_of};
use crate::api::{GitRepository, SpecDurationError, validate_spec};

/// The durations of the spec, each within its bound.
pub(super) struct SpecDurations {
    pub(super) interval: Duration,
    pub(super) retry_interval: Option<Duration>,
    pub(super) timeout: Duration,
}

/// Refuses, as Stalled, a spec the controller will not act on: one that breaks an admission
/// rule of the CRD (an object stored before the rule existed keeps its value, and the same
/// rules guard `driftless build --spec-file`), or no identity to apply with.
pub(super) fn check_spec(
    repository: &GitRepository,
    settings: &Settings,
) -> Result<SpecDurations, Failure> {
    validate_spec(&repository.spec)
        .map_err(|error| Failure::new(Reason::InvalidSpec, error).stalled())?;
    let invalid = |error: SpecDurationError| Failure::new(Reason::InvalidSpec, error).stalled();
    let durations = SpecDurations {
        interval: repository
            .interval(settings.default_interval)
            .map_err(invalid)?,
        retry_interval: repository.retry_interval().map_err(invalid)?,
        timeout: repository.timeout().map_err(invalid)?,
    };
    service_account_of(repository, settings)?;
    Ok(durations)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{MAX_INTERVAL, MAX_TIMEOUT};
    use crate::controller::identity::tests::{repository, settings};

    #[test]
    fn durations_out_of_range_stall_with_the_field_named() {
        for (spec, field) in [
            (
                json!({ "interval": "99999999999999999999h" }),
                "spec.interval",
            ),
            (json!({ "retryInterval": "721h" }), "spec.retryInterval"),
            (json!({ "timeout": "2h" }), "spec.timeout"),
            (json!({ "timeout": "5d" }), "spec.timeout"),
        ] {
            let failure = check_spec(&repository(spec.clone()), &settings())
                .err()
                .unwrap_or_else(|| panic!("{spec} is refused"));
            assert_eq!(failure.reason, Reason::InvalidSpec);
            assert!(failure.stalled, "{spec}");
            assert!(failure.message.starts_with(field), "{}", failure.message);
        }
        let read = check_spec(
            &repository(json!({ "interval": "720h", "timeout": "1h" })),
            &settings(),
        )
        .unwrap_or_else(|f| panic!("{}", f.message));
        assert_eq!((read.interval, read.timeout), (MAX_INTERVAL, MAX_TIMEOUT));
        assert_eq!(read.retry_interval, None);
    }

    #[test]
    fn a_stored_spec_that_admission_now_refuses_stalls_with_every_field_named() {
        let spec = json!({
            "helm": { "releaseName": "--post-renderer=/bin/sh", "valuesFiles": ["../x"] },
        });
        let failure = check_spec(&repository(spec), &settings())
            .err()
            .expect("refused");
        assert_eq!(failure.reason, Reason::InvalidSpec);
        assert!(failure.stalled);
        assert!(
            failure
                .message
                .contains("spec.helm.releaseName: releaseName must be")
                && failure
                    .message
                    .contains("spec.helm.valuesFiles: valuesFiles must be"),
            "{}",
            failure.message
        );
    }
}
