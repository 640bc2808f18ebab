//! heygen-video-mcp: an MCP server that makes HeyGen Video Agent videos.
//!
//! Data flows one way: transport → server (MCP surface) → tools → backend
//! (`gateway` or `heygen`, behind the `backend` seam) → upstream HTTP, with
//! the ledger and downloads beside the tools and the domain types of `video`
//! at the bottom. See `README.md` for use and `shared/DESIGN.md`.

pub mod backend;
pub mod check;
pub mod config;
pub mod downloads;
pub mod gateway;
pub mod heygen;
pub mod ledger;
pub mod net;
pub mod server;
pub mod simulator;
pub mod tools;
pub mod transport;
pub mod video;
