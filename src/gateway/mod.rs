//! The client of the upstream HeyGen Video Agent task API (`shared/UPSTREAM.md`).

pub mod client;
pub mod error;
pub mod secret;
pub mod types;

pub use client::{Balance, GatewayClient, GatewayConfig, RetryPolicy, validate_task_id};
pub use error::{GatewayError, MONEY_RULE, Operation, RedirectRefusal};
pub use secret::ApiKey;
pub use types::{CreateVideoRequest, Orientation, TaskObject, TaskStatus};
