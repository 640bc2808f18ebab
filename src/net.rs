//! Small address helpers every layer may use; no I/O.

/// Whether `host` (a name or an address, IPv6 with or without brackets) is
/// this machine: `localhost` or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
