//! The gateway backend: the task API of `shared/UPSTREAM.md`.

pub mod backend;
pub mod client;
pub mod types;

pub use crate::backend::{
    ApiKey, MONEY_RULE, Operation, RedirectRefusal, UpstreamError,
    http::{RetryPolicy, validate_task_id},
};
pub use client::{GatewayClient, GatewayConfig};
pub use types::{CreateVideoRequest, Orientation, TaskObject, TaskStatus};
