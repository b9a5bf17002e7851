//! Push webhook receivers: turn a verified push from a Git host into reconcile requests for the
//! GitRepository objects that follow the pushed repository and ref.
//!
//! The flow is verify ([`verify`], over the raw body, constant time) → parse ([`payload`]) →
//! de-duplicate ([`replay`]) → match ([`matching`], one hash lookup by normalized URL) →
//! [`Trigger`]. This module knows nothing about Kubernetes: the controller keeps the
//! [`TargetIndex`] and [`ObjectHooks`] current from its watch and implements [`Trigger`] by
//! patching the reconcile-requested annotation.

pub mod budget;
pub mod connections;
pub mod delivery;
pub mod matching;
pub mod object_hooks;
pub mod payload;
pub mod provider;
pub mod rate_limit;
pub mod replay;
pub mod server;
pub mod tls;
pub mod verify;

#[cfg(test)]
mod tests;

pub use budget::{
    BodyBudget, DEFAULT_BODY_BUDGET, DEFAULT_MAX_IN_FLIGHT_DELIVERIES, DeliverySlots,
};
pub use connections::{DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, serve_connections};
pub use delivery::TriggerRetry;
pub use matching::{Target, TargetIndex};
pub use object_hooks::{ObjectHook, ObjectHooks, object_hook_id, object_hook_path};
pub use payload::{Event, PullRequest, Push};
pub use provider::Provider;
pub use rate_limit::{RateLimit, RateLimiter};
pub use replay::{DeliveryKey, MAX_DELIVERY_ID_LEN, ReplayCache, bounded_delivery_id};
pub use server::{
    DEFAULT_BODY_LIMIT, Delivery, ReloadableSecrets, SharedSecrets, Trigger, TriggerError,
    WebhookState, router,
};
pub use tls::WebhookTls;
pub use verify::VerifyError;
