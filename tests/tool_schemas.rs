//! `tools/list` as clients receive it on the wire: committed snapshots per
//! tool (name, title, description, annotations, inputSchema, outputSchema, _meta),
//! structural rules every client can digest (no `$ref`, inline enums, the
//! documented limits), and the same list on both protocol revisions.
//!
//! Update after a deliberate change with
//! `INSTA_UPDATE=always cargo test --test tool_schemas`, review the diff in
//! tests/snapshots/, commit it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Map, Value, json};

/// `tools/list` over raw stdio (2025-11-25), exactly as sent.
async fn list_legacy() -> Vec<Value> {
    let (mut raw, _) = RawChild::legacy(ServerOpts::default().without_key()).await;
    let list = raw.list_tools().await;
    raw.close().await;
    assert!(list.get("nextCursor").is_none_or(Value::is_null), "{list}");
    list["tools"].as_array().expect("tools array").clone()
}

/// `tools/list` over raw stdio (2026-07-28, stateless).
async fn list_modern() -> Vec<Value> {
    let (mut raw, _) = RawChild::modern(ServerOpts::default().without_key()).await;
    let list = raw.list_tools().await;
    raw.close().await;
    list["tools"].as_array().expect("tools array").clone()
}

fn find<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name} in {tools:?}"))
}

/// The reviewed part of a tool definition.
fn snapshot_view(tool: &Value) -> Value {
    let mut view = json!({
        "name": tool["name"],
        "title": tool.get("title").cloned().unwrap_or(Value::Null),
        "description": tool["description"],
        "annotations": tool["annotations"],
        "inputSchema": tool["inputSchema"],
        "outputSchema": tool.get("outputSchema").cloned().unwrap_or(Value::Null),
    });
    // `_meta` (the inline player's resourceUri) only where a tool has one.
    if let Some(meta) = tool.get("_meta") {
        view["_meta"] = meta.clone();
    }
    view
}

/// Every JSON pointer under `v` at which an object has key `key`.
fn paths_with_key(v: &Value, key: &str, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.contains_key(key) {
                out.push(at.to_string());
            }
            for (k, child) in m {
                paths_with_key(child, key, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                paths_with_key(child, key, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn props<'a>(schema: &'a Value, what: &str) -> &'a Map<String, Value> {
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no properties in {schema}"))
}

/// The non-null enum values a property allows, read from the property itself
/// or from its anyOf/oneOf branches (never through a `$ref`).
fn enum_values(prop: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut collect = |s: &Value| {
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            out.extend(e.iter().filter(|v| !v.is_null()).cloned());
        }
        if let Some(c) = s.get("const")
            && !c.is_null()
        {
            out.push(c.clone());
        }
    };
    collect(prop);
    for key in ["anyOf", "oneOf"] {
        for branch in prop
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(branch);
        }
    }
    out
}

fn sorted_names(tools: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = tools
        .iter()
        .map(|t| t["name"].as_str().expect("tool name").to_string())
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn tools_list_matches_the_committed_snapshots() {
    let tools = list_legacy().await;
    let names = sorted_names(&tools);
    // The tool set itself is reviewed: adding or removing a tool changes this.
    insta::assert_json_snapshot!("tool_names", names);
    for core in CORE_TOOLS {
        assert!(names.iter().any(|n| n == core), "{core} missing: {names:?}");
    }
    for name in &names {
        insta::assert_json_snapshot!(name.as_str(), snapshot_view(find(&tools, name)));
    }
}

#[tokio::test]
async fn schemas_are_self_contained_and_carry_the_limits() {
    let tools = list_legacy().await;
    // Rules for every tool; all violations are collected, then reported.
    let mut problems = Vec::new();
    for tool in &tools {
        let name = tool["name"].as_str().unwrap();
        for which in ["inputSchema", "outputSchema"] {
            let schema = &tool[which];
            if which == "outputSchema" && schema.is_null() {
                continue;
            }
            if !schema.is_object() {
                problems.push(format!("{name}: {which} is not an object"));
                continue;
            }
            let mut refs = Vec::new();
            paths_with_key(schema, "$ref", "", &mut refs);
            if !refs.is_empty() {
                problems.push(format!(
                    "{name}: {which} uses $ref (some clients cannot resolve it) at {refs:?}"
                ));
            }
            if schema["type"] != "object" {
                problems.push(format!("{name}: {which} root type is not object"));
            }
        }
        // Unknown arguments are refused when they are parsed, not by the schema
        // (some providers reject `additionalProperties`; see schema_portability.rs).
        if tool["inputSchema"].get("additionalProperties").is_some() {
            problems.push(format!(
                "{name}: inputSchema has additionalProperties (google-genai and Gemini reject it)"
            ));
        }
        for hint in [
            "readOnlyHint",
            "destructiveHint",
            "idempotentHint",
            "openWorldHint",
        ] {
            if !tool["annotations"][hint].is_boolean() {
                problems.push(format!("{name}: annotation {hint} not set"));
            }
        }
    }
    // Both core tools return the VideoTask view.
    for name in CORE_TOOLS {
        let tool = find(&tools, name);
        let output = &tool["outputSchema"];
        let declared = props(output, name);
        for field in VIDEO_TASK_FIELDS {
            assert!(declared.contains_key(*field), "{name} output lacks {field}");
        }
        let required: Vec<&str> = output["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for r in &required {
            assert!(declared.contains_key(*r), "{name}: required {r} undeclared");
        }
        let mut status = enum_values(&declared["status"]);
        status.sort_by_key(|v| v.to_string());
        assert_eq!(
            status,
            vec![
                json!("cancelled"),
                json!("completed"),
                json!("failed"),
                json!("pending"),
                json!("processing"),
                json!("unknown")
            ],
            "{name}: status enum"
        );
        assert_eq!(declared["progress"]["minimum"], 0, "{name}");
        assert_eq!(declared["progress"]["maximum"], 100, "{name}");
    }

    let create = &find(&tools, "create_video")["inputSchema"];
    let p = props(create, "create_video");
    assert_eq!(create["required"], json!(["prompt"]));
    assert_eq!(p["prompt"]["type"], "string");
    assert_eq!(p["prompt"]["minLength"], 1);
    assert_eq!(p["prompt"]["maxLength"], 10_000);
    assert_eq!(p["file_urls"]["maxItems"], 20);
    assert_eq!(p["file_urls"]["items"]["type"], "string");
    assert_eq!(
        enum_values(&p["orientation"]),
        vec![json!("landscape"), json!("portrait")],
        "orientation enum must be inline: {}",
        p["orientation"]
    );
    for optional in [
        "avatar_id",
        "voice_id",
        "style_id",
        "orientation",
        "file_urls",
        "incognito_mode",
    ] {
        assert!(p.contains_key(optional), "create_video lacks {optional}");
    }

    let status = &find(&tools, "get_video_status")["inputSchema"];
    let p = props(status, "get_video_status");
    assert_eq!(status["required"], json!(["task_id"]));
    assert_eq!(p["task_id"]["type"], "string");
    assert_eq!(p["task_id"]["maxLength"], 128);

    // The exact argument lists are pinned by the snapshots.
    assert!(
        problems.is_empty(),
        "schema problems:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn both_protocol_revisions_list_the_same_tools() {
    let (legacy, modern) = tokio::join!(list_legacy(), list_modern());
    assert_eq!(sorted_names(&legacy), sorted_names(&modern));
    for name in sorted_names(&legacy) {
        assert_eq!(
            snapshot_view(find(&legacy, &name)),
            snapshot_view(find(&modern, &name)),
            "{name} differs between 2025-11-25 and 2026-07-28"
        );
    }
}
