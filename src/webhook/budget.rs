//! Process-wide bounds on what deliveries may hold at once, across every receiver: the bytes
//! of request bodies being read, and the deliveries whose triggers still run after their
//! answer. Per-receiver limits (body size, rate) alone let many receivers, or many
//! connections to one, add up to unbounded memory and API writes.
//!
//! Both are checked without waiting: a request over a bound is answered 503 with
//! `Retry-After` at once (Git hosts retry, polling remains the safety net), rather than queued
//! while it holds a connection.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most request-body bytes held at once by all receivers together.
pub const DEFAULT_BODY_BUDGET: usize = 32 * 1024 * 1024;

/// Most verified deliveries whose triggers may run at once; each runs at most a few API writes
/// concurrently, so this bounds the receiver's write load.
pub const DEFAULT_MAX_IN_FLIGHT_DELIVERIES: usize = 32;

/// A budget of bytes shared by every request body being read.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at least one; at most what a semaphore can count).
    pub fn new(total: usize) -> BodyBudget {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Reserves `bytes` until the returned permit is dropped, or `None` when the budget is
    /// spent. A request larger than the whole budget reserves all of it, so it can still be
    /// served alone.
    pub fn try_reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = bytes.clamp(1, self.total);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        self.bytes.clone().try_acquire_many_owned(wanted).ok()
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget::new(DEFAULT_BODY_BUDGET)
    }
}

/// Slots for deliveries whose triggers run after their answer.
#[derive(Clone, Debug)]
pub struct DeliverySlots(Arc<Semaphore>);

impl DeliverySlots {
    /// `slots` deliveries at once (at least one).
    pub fn new(slots: usize) -> DeliverySlots {
        DeliverySlots(Arc::new(Semaphore::new(
            slots.clamp(1, Semaphore::MAX_PERMITS),
        )))
    }

    /// A slot held until the permit is dropped, or `None` when all are taken.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

impl Default for DeliverySlots {
    fn default() -> Self {
        DeliverySlots::new(DEFAULT_MAX_IN_FLIGHT_DELIVERIES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_budget_and_are_returned() {
        let budget = BodyBudget::new(100);
        let first = budget.try_reserve(60).expect("room for 60");
        assert!(budget.try_reserve(50).is_none(), "60 + 50 > 100");
        let second = budget.try_reserve(40).expect("60 + 40 fits");
        assert_eq!(budget.available(), 0);
        drop(first);
        assert_eq!(budget.available(), 60);
        drop(second);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn a_request_larger_than_the_budget_takes_all_of_it() {
        let budget = BodyBudget::new(10);
        let all = budget.try_reserve(1_000).expect("served alone");
        assert!(budget.try_reserve(1).is_none());
        drop(all);
        assert!(
            budget.try_reserve(0).is_some(),
            "an empty body reserves one byte"
        );
    }

    #[test]
    fn slots_are_bounded() {
        let slots = DeliverySlots::new(2);
        let taken = [slots.try_take(), slots.try_take()];
        assert!(taken.iter().all(Option::is_some));
        assert!(slots.try_take().is_none());
        drop(taken);
        assert!(slots.try_take().is_some());
    }
}
