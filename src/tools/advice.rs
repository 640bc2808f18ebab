//! Wording that depends on the backend: the texts written for the gateway
//! (links that live 24 h after creation, renders of a few minutes) adapted to
//! a backend with other capabilities.

use crate::backend::{BackendKind, Capabilities};

/// A description or instruction text for this backend. The gateway's own
/// wording is returned unchanged.
pub fn adapt(text: &str, caps: &Capabilities) -> String {
    if caps.kind == BackendKind::Gateway {
        return text.to_string();
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let lifetime = caps.links.describe();
    let poll = caps.poll_after.as_secs();
    flat.replace("24 h after creation", &lifetime)
        .replace("24 h after the video was created", &lifetime)
        .replace(
            "Rendering takes minutes: check about every 30 s",
            &format!(
                "Rendering takes {}: check about every {poll} s",
                caps.typical_render
            ),
        )
        .replace(
            "about every 30 s until completed; rendering takes minutes",
            &format!(
                "about every {poll} s until completed; rendering takes {}",
                caps.typical_render
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heygen_wording_replaces_the_gateway_lifetime() {
        let caps = crate::heygen::client::capabilities();
        let t = adapt(
            "links expire 24 h\nafter creation. Rendering takes minutes: check about every 30 s, or",
            &caps,
        );
        assert!(!t.contains("24 h"), "{t}");
        assert!(
            t.contains("about 7 days after the latest status check"),
            "{t}"
        );
        assert!(
            t.contains("20–45 minutes") && t.contains("every 60 s"),
            "{t}"
        );
        let gw = crate::gateway::backend::capabilities();
        assert_eq!(adapt("links expire 24 h", &gw), "links expire 24 h");
    }
}
