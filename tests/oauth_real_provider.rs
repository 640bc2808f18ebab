//! The OAuth connector flow against a real authorization server: npm
//! `oidc-provider` (a certified OpenID Provider) run on 127.0.0.1 by
//! scripts/oidc/flow.mjs, which starts the built binary with
//! HEYGEN_OAUTH_ISSUER pointing at it and does what a connector does: the 401
//! and its `resource_metadata`, the protected resource metadata, the
//! authorization server metadata, dynamic client registration, an
//! authorization request with PKCE S256 and `resource` = the MCP URL, automated
//! login and consent, the token request, then tools/call with the JWT access
//! token over a stateless 2026-07-28 request and a 2025-11-25 session, and a
//! second user who sees only their own videos. Then opaque access tokens: a
//! second server, the provider's confidential client, checks them by
//! introspection (RFC 7662); its user calls the tools, each server refuses
//! the other's tokens and made-up ones, and a token revoked at the provider
//! is refused.
//!
//! Without Node or scripts/oidc/node_modules it prints why and passes, unless
//! OIDC_TEST_REQUIRED=1, where a missing tool fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");

fn node_and_modules(root: &Path) -> Result<PathBuf, &'static str> {
    let node = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("node"))
                .find(|n| n.is_file())
        })
        .ok_or("node is not on PATH")?;
    if !root
        .join("scripts/oidc/node_modules/oidc-provider/package.json")
        .is_file()
    {
        return Err("scripts/oidc/node_modules is missing");
    }
    Ok(node)
}

#[tokio::test]
async fn a_connector_signs_in_with_oidc_provider_and_calls_the_tools() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let required = std::env::var("OIDC_TEST_REQUIRED").is_ok_and(|v| v == "1");
    let node = match node_and_modules(&root) {
        Ok(node) => node,
        Err(why) => {
            assert!(
                !required,
                "OIDC_TEST_REQUIRED=1 but {why} (run npm ci --prefix scripts/oidc)"
            );
            eprintln!(
                "SKIPPED: node or scripts/oidc/node_modules missing (run npm ci --prefix scripts/oidc): {why}"
            );
            return;
        }
    };
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(root.join("scripts/oidc/flow.mjs"))
        .arg(BIN)
        .current_dir(&root)
        .kill_on_drop(true);
    // The script bounds itself to 60 s; this is the backstop.
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("flow.mjs finishes within 90 s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "flow.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("oidc flow OK"), "{stdout}");
}
