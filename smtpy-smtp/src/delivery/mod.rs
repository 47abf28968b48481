//! Delivery workers: take due messages from the durable queue, hand them to
//! a [`Transport`], record what happened to each recipient, and schedule
//! retries, expiry and DSNs.
//!
//! Delivery is at-least-once: a message is removed from the queue only
//! after its outcome is recorded, and a worker that dies mid-delivery loses
//! its lease, so another worker (or the same process after a restart)
//! delivers the message again.

mod attempt;
mod config;
mod worker;

pub use attempt::apply_outcomes;
pub use config::{DeliveryConfig, RetrySchedule};
pub use worker::{DeliveryWorker, WorkerHandle};

#[cfg(doc)]
use smtpy_core::transport::Transport;
