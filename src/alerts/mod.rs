//! Alerts: a GitRepository's outcomes (Applied, Failed, DriftCorrected, Pruned, Stalled)
//! announced to Slack, Microsoft Teams, Discord, a signed webhook or a CloudEvents endpoint,
//! each event once per revision, in the background. It reuses the commit-status HTTP client
//! (bounded retries on 5xx and 429) and knows nothing of the controller, which decides the
//! events and reads each endpoint's Secret as the tenant.

pub mod message;
pub mod queue;

pub use message::{Alert, Endpoint, SIGNATURE_HEADER, alert_request};
pub use queue::Alerts;
