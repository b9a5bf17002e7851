//! Commit statuses on the Git host: each commit's outcome (pending, success, failure) posted
//! where the developer who pushed it looks. It knows the hosts' request formats
//! ([`request`]), where a repository's API is and which hosts a token may be sent to
//! ([`address`]), how to send with bounded retries ([`client`]) and how to post each state
//! once, in the background ([`notifier`]). It knows nothing of the controller, which decides
//! when a state is reached and reads the token as the tenant.

pub mod address;
pub mod client;
pub mod notifier;
pub mod request;

pub use address::{AddressError, Resolved, resolve};
pub use client::{PostError, RetryPolicy, StatusClient};
pub use notifier::{Notifier, ObjectKey, OnFailure, Queued};
pub use request::{
    Credentials, Destination, PostRequest, State, Status, authorization, description_limit,
    post_request, truncate,
};
