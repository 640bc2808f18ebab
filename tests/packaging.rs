//! The one-click install files: the MCP Bundle manifest, the MCP Registry
//! `server.json` and the README's install links. They must parse, carry the
//! crate's version and repository, name only environment variables the binary
//! reads, and launch the real binary the way a client would: the bundle's
//! `mcp_config` (with its `user_config` filled in) starts a server whose
//! `tools/list` is exactly the manifest's tool list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use common::{McpChild, ServerOpts, TEST_KEY, expect_ok, start_sim};
use heygen_video_mcp::config::Cli;
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_file(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

fn manifest() -> Value {
    json_file("packaging/mcpb/manifest.json")
}

fn server_json() -> Value {
    json_file("server.json")
}

/// Every environment variable the binary reads.
fn known_env_vars() -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    vars.insert("HEYGEN_API_KEY".into());
    vars.insert("HEYGEN_CATALOG_KEY".into());
    vars
}

/// `mcp_config.env` with each `${user_config.KEY}` replaced by `values[KEY]`.
fn bundle_env(manifest: &Value, values: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let env = manifest["server"]["mcp_config"]["env"].as_object().unwrap();
    env.iter()
        .map(|(name, template)| {
            let mut v = template.as_str().unwrap().to_string();
            while let Some(start) = v.find("${user_config.") {
                let end = start + v[start..].find('}').unwrap();
                let key = &v[start + "${user_config.".len()..end];
                let value = values
                    .get(key)
                    .unwrap_or_else(|| panic!("{name} refers to user_config.{key}, not filled in"));
                v.replace_range(start..=end, value);
            }
            (name.clone(), v)
        })
        .collect()
}

/// The values Claude Desktop passes when the user only enters the key: each
/// option's default, with `${HOME}` expanded.
fn defaults(manifest: &Value, home: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (key, option) in manifest["user_config"].as_object().unwrap() {
        let value = match &option["default"] {
            Value::String(s) => s.replace("${HOME}", home),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            other => panic!("user_config.{key} has an unexpected default {other}"),
        };
        values.insert(key.clone(), value);
    }
    values.insert("api_key".into(), TEST_KEY.into());
    values
}

fn manifest_tool_names(manifest: &Value) -> Vec<String> {
    let mut names: Vec<String> = manifest["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

async fn listed_tool_names(child: &McpChild) -> Vec<String> {
    let mut names: Vec<String> = child
        .list_tools()
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn bundle_manifest_matches_the_crate() {
    let m = manifest();
    assert_eq!(m["manifest_version"], "0.3");
    assert_eq!(m["name"], env!("CARGO_PKG_NAME"));
    assert_eq!(m["version"], VERSION, "manifest.json version != Cargo.toml");
    assert_eq!(m["license"], env!("CARGO_PKG_LICENSE"));
    assert_eq!(m["repository"]["url"], REPOSITORY);

    let server = &m["server"];
    assert_eq!(server["type"], "binary");
    assert_eq!(server["entry_point"], "server/heygen-video-mcp");
    assert_eq!(
        server["mcp_config"]["command"],
        "${__dirname}/server/heygen-video-mcp"
    );
    assert_eq!(
        server["mcp_config"]["platform_overrides"]["win32"]["command"],
        "${__dirname}/server/heygen-video-mcp.exe"
    );
    let platforms: BTreeSet<&str> = m["compatibility"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(platforms, BTreeSet::from(["darwin", "linux", "win32"]));

    let key = &m["user_config"]["api_key"];
    assert_eq!(key["type"], "string");
    assert_eq!(key["sensitive"], true);
    assert_eq!(key["required"], true);
    assert_eq!(m["user_config"]["download_dir"]["type"], "directory");

    // Every option is passed to the server, every reference is declared, and
    // every variable is one the binary reads.
    let env = server["mcp_config"]["env"].as_object().unwrap();
    let known = known_env_vars();
    let mut referenced = BTreeSet::new();
    for (name, template) in env {
        assert!(
            known.contains(name),
            "the bundle sets {name}, which the binary ignores"
        );
        let t = template.as_str().unwrap();
        let key = t
            .strip_prefix("${user_config.")
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{name} = {t:?} is not one ${{user_config.KEY}}"));
        assert!(
            m["user_config"].get(key).is_some(),
            "{name} refers to an undeclared user_config.{key}"
        );
        referenced.insert(key.to_string());
    }
    let declared: BTreeSet<String> = m["user_config"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        declared, referenced,
        "a user_config option is never passed on"
    );
    assert_eq!(env["HEYGEN_API_KEY"], "${user_config.api_key}");
}

#[test]
fn server_json_matches_the_crate() {
    let s = server_json();
    assert_eq!(
        s["$schema"],
        "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    );
    assert_eq!(s["version"], VERSION, "server.json version != Cargo.toml");
    let owner = REPOSITORY
        .strip_prefix("https://github.com/")
        .and_then(|r| r.strip_suffix("/heygen-video-mcp"))
        .expect("repository is https://github.com/<owner>/heygen-video-mcp");
    assert_eq!(s["name"], format!("io.github.{owner}/heygen-video-mcp"));
    assert_eq!(s["repository"]["url"], REPOSITORY);
    assert_eq!(s["repository"]["source"], "github");
    let description = s["description"].as_str().unwrap();
    assert!(
        (1..=100).contains(&description.chars().count()),
        "description has {} characters; the registry allows 100",
        description.chars().count()
    );

    let packages = s["packages"].as_array().unwrap();
    let by_type = |t: &str| {
        packages
            .iter()
            .find(|p| p["registryType"] == t)
            .unwrap_or_else(|| panic!("no {t} package in server.json"))
    };
    for p in packages {
        assert_eq!(p["version"], VERSION, "{p}");
        assert_eq!(p["transport"]["type"], "stdio", "{p}");
        for var in p["environmentVariables"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap();
            assert!(
                known_env_vars().contains(name),
                "server.json names unknown {name}"
            );
        }
        let key = p["environmentVariables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "HEYGEN_API_KEY")
            .expect("HEYGEN_API_KEY is declared");
        assert_eq!(key["isSecret"], true);
        assert_eq!(key["isRequired"], true);
    }
    let cargo = by_type("cargo");
    assert_eq!(cargo["identifier"], env!("CARGO_PKG_NAME"));
    assert_eq!(cargo["registryBaseUrl"], "https://crates.io");

    let mcpb = by_type("mcpb");
    let url = mcpb["identifier"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "{REPOSITORY}/releases/download/v{VERSION}/heygen-video-mcp-{VERSION}-"
        )) && url.ends_with(".mcpb"),
        "{url}"
    );
    let sha = mcpb["fileSha256"].as_str().unwrap();
    assert!(
        sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{sha}"
    );

    let remote = &s["remotes"][0];
    assert_eq!(remote["type"], "streamable-http");
    assert!(remote["url"].as_str().unwrap().starts_with("https://"));
    let auth = remote["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "Authorization")
        .expect("an Authorization header");
    assert_eq!(auth["isSecret"], true);
    assert_eq!(auth["isRequired"], true);
    assert!(auth["value"].as_str().unwrap().starts_with("Bearer "));
}

/// The bundle as Claude Desktop launches it when the user enters only the key:
/// the binary accepts every default and lists exactly the manifest's tools.
#[tokio::test]
async fn bundle_defaults_start_the_server_with_the_manifest_tools() {
    let m = manifest();
    let home = tempfile::tempdir().unwrap();
    let values = defaults(&m, home.path().to_str().unwrap());
    let mut opts = ServerOpts::default();
    for (k, v) in bundle_env(&m, &values) {
        opts = opts.env(k, v);
    }
    let child = McpChild::legacy(opts).await;
    assert_eq!(listed_tool_names(&child).await, manifest_tool_names(&m));
    let stderr = child.shutdown().await.joined();
    assert!(!stderr.contains(TEST_KEY), "the key was logged: {stderr}");
}

/// The bundle's key and base-URL options reach the upstream: with them filled
/// in (pointing at the simulator), a tool call succeeds with the user's key.
#[tokio::test]
async fn bundle_options_reach_the_upstream() {
    let sim = start_sim().await;
    let m = manifest();
    let folder = tempfile::tempdir().unwrap();
    let mut values = defaults(&m, folder.path().to_str().unwrap());
    values.insert("api_base".into(), sim.base_url());
    values.insert(
        "download_dir".into(),
        folder.path().join("videos").display().to_string(),
    );
    values.insert("auto_download".into(), "true".into());
    let mut opts = ServerOpts::default();
    for (k, v) in bundle_env(&m, &values) {
        opts = opts.env(k, v);
    }
    let child = McpChild::legacy(opts).await;
    let r = child.call("get_credits", json!({})).await;
    expect_ok(&r);
    // The balance was read with the user's key from the billing endpoints.
    assert_eq!(sim.state.count("subscription"), 1);
    assert_eq!(sim.state.count("usage"), 1);
    child.shutdown().await;
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The first link in `text` that starts with `prefix`, up to the end of the URL.
fn link<'a>(text: &'a str, prefix: &str) -> &'a str {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("README.md has no link starting {prefix}"));
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ')' || c == '`' || c == '"')
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn readme_has_the_install_links() {
    let readme = read("README.md");
    let install = readme
        .split("\n## Install\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has an ## Install section");

    // VS Code: the URL handler's JSON, with the key as a password input.
    let vscode = link(install, "vscode:mcp/install?");
    let config: Value =
        serde_json::from_str(&percent_decode(&vscode["vscode:mcp/install?".len()..])).unwrap();
    assert_eq!(config["command"], "heygen-video-mcp");
    let input = &config["inputs"][0];
    assert_eq!(input["type"], "promptString");
    assert_eq!(input["password"], true);
    assert_eq!(
        config["env"]["HEYGEN_API_KEY"],
        format!("${{input:{}}}", input["id"].as_str().unwrap())
    );
    let redirect = link(install, "https://insiders.vscode.dev/redirect?url=");
    assert_eq!(
        percent_decode(&redirect["https://insiders.vscode.dev/redirect?url=".len()..]),
        vscode
    );

    // Cursor: name plus base64 JSON config.
    let cursor = link(install, "cursor://anysphere.cursor-deeplink/mcp/install?");
    let query = cursor.split_once('?').unwrap().1;
    let params: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    assert_eq!(params["name"], "heygen-video");
    let config: Value = serde_json::from_slice(&base64_decode(params["config"])).unwrap();
    assert_eq!(config["command"], "heygen-video-mcp");
    assert!(config["env"]["HEYGEN_API_KEY"].is_string());

    for line in [
        "claude mcp add heygen-video -e HEYGEN_API_KEY=<your key> -- heygen-video-mcp",
        "cargo install heygen-video-mcp",
        "claude mcp add --transport http heygen https://",
        "--header \"Authorization: Bearer <token>\"",
        ".mcpb",
        "Claude Desktop",
        "built and tested on Linux x86_64",
    ] {
        assert!(install.contains(line), "the Install section lacks {line:?}");
    }
    assert!(
        install.contains(&format!("{REPOSITORY}/releases")),
        "the bundle download points elsewhere than {REPOSITORY}"
    );
}

/// The MCP Registry proves crate ownership by finding `mcp-name: <name>` in
/// the README as crates.io renders it, which drops HTML comments.
#[test]
fn readme_carries_the_registry_name_visibly() {
    let readme = read("README.md");
    let name = server_json()["name"].as_str().unwrap().to_string();
    let mut visible = String::new();
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("<!--") {
        visible.push_str(&rest[..start]);
        rest = rest[start..]
            .split_once("-->")
            .map_or("", |(_, after)| after);
    }
    visible.push_str(rest);
    assert!(
        visible
            .lines()
            .any(|l| l.trim() == format!("mcp-name: {name}")),
        "README.md needs the visible line `mcp-name: {name}`"
    );
}
