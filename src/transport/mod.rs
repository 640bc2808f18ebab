//! Transports: stdio (local clients) and Streamable HTTP (hosted).

pub mod connections;
pub mod http;
pub mod sessions;
pub mod stdio;
