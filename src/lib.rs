//! heygen-video-mcp: an MCP server that makes HeyGen Video Agent videos.
//!
//! Data flows one way: transport → server (MCP surface) → tools → gateway
//! client → upstream HTTP. See `README.md` for use and `shared/DESIGN.md`.

pub mod check;
pub mod config;
pub mod downloads;
pub mod gateway;
pub mod ledger;
pub mod net;
pub mod server;
pub mod simulator;
pub mod tools;
pub mod transport;
pub mod video;
