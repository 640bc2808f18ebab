//! The README is the user's manual: it must name every tool the server lists
//! and every environment variable the binary reads, and give the test command
//! that CI runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::CommandFactory;
use heygen_video_mcp::{config::Cli, tools::router};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn readme_documents_every_tool() {
    let readme = readme();
    for tool in router().list_all() {
        assert!(
            readme.contains(&format!("`{}`", tool.name)),
            "README.md does not mention the tool `{}`",
            tool.name
        );
    }
}

#[test]
fn readme_documents_every_environment_variable() {
    let readme = readme();
    let mut vars: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    vars.extend([
        "HEYGEN_API_KEY".into(),
        "HEYGEN_MCP_AUTH_TOKEN".into(),
        "RUST_LOG".into(),
    ]);
    for var in vars {
        assert!(readme.contains(&var), "README.md does not mention {var}");
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(readme().contains("cargo test"));
    assert!(
        ci.lines().any(|l| l.trim_start().starts_with("cargo test")),
        "{ci}"
    );
}
