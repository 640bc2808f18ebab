//! The HeyGen backend: HeyGen's own v3 API (`shared/HEYGEN_V3.md`) with a
//! HeyGen API key sent as `X-Api-Key`. A task is a Video Agent session (its
//! id is the task id); its video appears later under a second id, so a
//! status lookup follows the session until it names a video, then the video.
//! Nothing is kept locally: any replica can answer for any task.

pub mod catalog;
pub mod client;
pub mod expiry;
pub mod types;

pub use client::HeygenClient;
