//! Transports: stdio (local clients) and Streamable HTTP (hosted).

pub mod connections;
pub mod http;
pub mod oauth;
pub mod sessions;
pub mod settings;
pub mod stdio;
