//! Transports: stdio (local clients) and Streamable HTTP (hosted).

pub mod http;
pub mod sessions;
pub mod stdio;
