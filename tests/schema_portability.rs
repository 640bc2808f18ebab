//! The tool definitions as clients receive them (`tools/list` from the built
//! binary over stdio) pass the rules of every place a client hands them to,
//! and stay within a size budget (they go to the model on every turn).
//!
//! What each check encodes:
//! - root `type: "object"` with `properties`: MCP requires an object root;
//!   OpenAI function calling and Anthropic tool use refuse any other root, and
//!   some clients (OpenAI strict conversion, Gemini) refuse an object schema
//!   without `properties` (a tool with no arguments still needs `{}`).
//! - no `additionalProperties` anywhere: google-genai's MCP conversion crashes
//!   on it and Gemini's `parameters` (OpenAPI-subset) dialect rejects it.
//!   Unknown argument names are still refused at run time (checked below).
//! - only standard `format`s (`date-time`, `uri`, …): Gemini rejects unknown
//!   ones, Ajv in strict mode (the TypeScript SDK's validator) refuses to
//!   compile them; integers carry `minimum` / `maximum` instead of `uint32`.
//! - no `null` in `enum`, no `type: [X, "null"]`, no `default: null` on
//!   inputs: Gemini's dialect has no null type, OpenAI's strict conversion and
//!   Gemini reject `null` enum members; "optional" = left out of `required`.
//! - no `$ref` / `$defs` / `anyOf` / `oneOf` / `allOf` on inputs: several
//!   clients (and Gemini's older dialect) do not resolve references or
//!   combinators; Anthropic and OpenAI accept the plain form too.
//! - every `required` name is a declared property: OpenAI and Ajv strict
//!   (`strictRequired`) refuse others.
//! - every schema is a valid JSON Schema 2020-12 document (the MCP default
//!   dialect), checked against the meta-schema, and compiles into a validator
//!   that refuses unknown formats (what Ajv strict does).
//! - sample arguments validate against the input schemas, and real results
//!   (from the simulator) against the output schemas: the rewrite did not
//!   make a schema reject what the server accepts or sends.
//! - budget: at most 1,200 bytes per tool on average of model-visible JSON
//!   (title, description, compact inputSchema) and 16,384 bytes for the whole
//!   `tools/list` reply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

/// Formats JSON Schema 2020-12 defines (what every validator knows).
use heygen_video_mcp::tools::schema::STANDARD_FORMATS;

const MAX_AVG_MODEL_VISIBLE: usize = 1200;
const MAX_REPLY_BYTES: usize = 16_384;

/// The `tools/list` reply over raw stdio: the result and the reply's size in
/// bytes as written on stdout (one line).
async fn tools_list() -> (Value, usize) {
    let (mut raw, _) = RawChild::legacy(ServerOpts::default().without_key()).await;
    let result = raw.list_tools().await;
    let (_, stdout, _) = raw.close().await;
    let line = stdout
        .snapshot()
        .into_iter()
        .find(|l| l.contains("\"tools\"") && l.contains("inputSchema"))
        .expect("the tools/list reply line");
    (result, line.len())
}

/// Every schema object under `schema` (not the `properties` maps themselves,
/// whose keys are argument names that may look like keywords).
fn subschemas<'a>(schema: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
    let Some(m) = schema.as_object() else { return };
    out.push((at.to_string(), schema));
    for (k, v) in m {
        match k.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Some(map) = v.as_object() {
                    for (name, s) in map {
                        subschemas(s, &format!("{at}/{k}/{name}"), out);
                    }
                }
            }
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedProperties"
            | "unevaluatedItems" => {
                subschemas(v, &format!("{at}/{k}"), out);
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                for (i, s) in v.as_array().into_iter().flatten().enumerate() {
                    subschemas(s, &format!("{at}/{k}/{i}"), out);
                }
            }
            _ => {}
        }
    }
}

/// Rule violations of one schema; `input` adds the rules for arguments.
fn problems_of(tool: &str, which: &str, schema: &Value, input: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut p = |s: String| problems.push(format!("{tool} {which}{s}"));
    if schema["type"] != "object" {
        p(": root type is not \"object\"".into());
    }
    if input && !schema["properties"].is_object() {
        p(": no properties object at the root".into());
    }
    let mut nodes = Vec::new();
    subschemas(schema, "", &mut nodes);
    for (at, node) in nodes {
        let m = node.as_object().expect("schema objects");
        if m.contains_key("additionalProperties") {
            p(format!("{at}: additionalProperties"));
        }
        if let Some(f) = m.get("format")
            && !f.as_str().is_some_and(|f| STANDARD_FORMATS.contains(&f))
        {
            p(format!("{at}: non-standard format {f}"));
        }
        if let Some(e) = m.get("enum") {
            match e.as_array() {
                Some(values) if values.iter().any(Value::is_null) => {
                    p(format!("{at}: null in enum {e}"))
                }
                Some(values) if values.is_empty() => p(format!("{at}: empty enum")),
                Some(_) => {}
                None => p(format!("{at}: enum is not an array")),
            }
        }
        for k in ["$ref", "$defs", "definitions"] {
            if m.contains_key(k) {
                p(format!("{at}: {k}"));
            }
        }
        if m.get("default").is_some_and(Value::is_null) {
            p(format!("{at}: default null"));
        }
        if let Some(Value::Array(req)) = m.get("required") {
            let props = m.get("properties").and_then(Value::as_object);
            for r in req {
                if !r
                    .as_str()
                    .is_some_and(|r| props.is_some_and(|p| p.contains_key(r)))
                {
                    p(format!("{at}: required {r} is not a property"));
                }
            }
        }
        if m.get("type").and_then(Value::as_str) == Some("object")
            && input
            && !m.contains_key("properties")
        {
            p(format!("{at}: object without properties"));
        }
        if input {
            for k in ["anyOf", "oneOf", "allOf"] {
                if m.contains_key(k) {
                    p(format!("{at}: {k} on an input"));
                }
            }
            match m.get("type") {
                Some(Value::String(t)) if t == "null" => p(format!("{at}: type null")),
                Some(Value::String(_)) => {}
                Some(t) => p(format!("{at}: type {t} is not one plain type")),
                None if at.is_empty() => {}
                // A property without a type is legal, but Gemini refuses it.
                None => p(format!("{at}: no type")),
            }
        }
    }
    // A draft 2020-12 document, valid against the meta-schema.
    if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
        p(format!(": not valid JSON Schema 2020-12: {e}"));
    }
    // Compiles, with unknown formats refused as Ajv strict refuses them.
    if let Err(e) = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(schema)
    {
        p(format!(": does not compile: {e}"));
    }
    problems
}

/// Bytes of a tool definition that reach the model: title(s), description,
/// the compact input schema.
fn model_visible(tool: &Value) -> usize {
    let title = tool["title"].as_str().map_or(0, str::len);
    let ann_title = tool["annotations"]["title"].as_str().map_or(0, str::len);
    let description = tool["description"].as_str().map_or(0, str::len);
    let input = serde_json::to_string(&tool["inputSchema"])
        .expect("serialise")
        .len();
    title + ann_title + description + input
}

fn tool<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema compiles: {e}\n{schema}"))
}

fn assert_valid(what: &str, schema: &Value, instance: &Value) {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not match its schema: {errors:?}\n{schema}"
    );
}

#[tokio::test]
async fn every_schema_passes_every_providers_rules() {
    let (list, _) = tools_list().await;
    let tools = list["tools"].as_array().expect("tools");
    assert!(tools.len() >= 5, "{list}");
    let mut problems = Vec::new();
    for t in tools {
        let name = t["name"].as_str().expect("name");
        problems.extend(problems_of(name, "inputSchema", &t["inputSchema"], true));
        if let Some(out) = t.get("outputSchema") {
            problems.extend(problems_of(name, "outputSchema", out, false));
        }
    }
    assert!(
        problems.is_empty(),
        "schema problems:\n{}",
        problems.join("\n")
    );

    // The schemas are strict enough to be useful: the checked rules stay.
    let create = &tool(tools, "create_video")["inputSchema"];
    assert_eq!(create["required"], json!(["prompt"]));
    assert_eq!(
        create["properties"]["orientation"]["enum"],
        json!(["landscape", "portrait"])
    );
    let list_in = &tool(tools, "list_videos")["inputSchema"];
    assert_eq!(list_in["properties"]["limit"]["maximum"], 100);
    assert_eq!(list_in["properties"]["status"]["enum"][0], "running");
    assert_eq!(
        tool(tools, "get_credits")["inputSchema"],
        json!({"type": "object", "properties": {}})
    );
}

#[test]
fn the_checks_catch_what_clients_reject() {
    // Each rule fails on the form schemars writes by default.
    let old = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "o": {"type": ["string", "null"], "enum": ["a", null], "default": null},
            "n": {"type": ["integer", "null"], "format": "uint32"},
            "r": {"$ref": "#/$defs/R"}
        },
        "required": ["missing"],
        "$defs": {"R": {"anyOf": [{"type": "string"}, {"type": "null"}]}}
    });
    let found = problems_of("t", "in", &old, true).join("\n");
    for needle in [
        "additionalProperties",
        "uint32",
        "null in enum",
        "default null",
        "$ref",
        "$defs",
        "anyOf",
        "required \"missing\"",
        "not one plain type",
    ] {
        assert!(found.contains(needle), "{needle} not caught:\n{found}");
    }
    let no_props = json!({"type": "object"});
    assert!(!problems_of("t", "in", &no_props, true).is_empty());
    let bad_meta = json!({"type": "object", "properties": {"x": {"type": "strin"}}});
    assert!(
        problems_of("t", "in", &bad_meta, true)
            .join("\n")
            .contains("2020-12"),
    );
}

#[tokio::test]
async fn tool_definitions_fit_the_budget() {
    let (list, reply_bytes) = tools_list().await;
    let tools = list["tools"].as_array().expect("tools");
    let mut total = 0;
    for t in tools {
        let n = model_visible(t);
        let output = t
            .get("outputSchema")
            .map_or(0, |o| serde_json::to_string(o).expect("serialise").len());
        println!(
            "{:<18} model-visible {n:>5} B, outputSchema {output:>5} B",
            t["name"].as_str().unwrap_or("?")
        );
        total += n;
    }
    let avg = total / tools.len();
    println!(
        "tools/list reply {reply_bytes} B; model-visible {total} B in {} tools (average {avg} B)",
        tools.len()
    );
    assert!(
        avg <= MAX_AVG_MODEL_VISIBLE,
        "model-visible average {avg} B > {MAX_AVG_MODEL_VISIBLE} B"
    );
    assert!(
        reply_bytes <= MAX_REPLY_BYTES,
        "tools/list reply {reply_bytes} B > {MAX_REPLY_BYTES} B"
    );
}

#[tokio::test]
async fn descriptions_keep_what_the_model_needs() {
    let (list, _) = tools_list().await;
    let tools = list["tools"].as_array().expect("tools");
    let text = |name: &str| {
        // Line breaks in descriptions read as spaces.

        let t = tool(tools, name);
        format!("{}\n{}", t["description"], t["inputSchema"]).replace("\\n", " ")
    };
    let create = text("create_video");
    for needle in [
        "CREDITS",
        "once",
        "get_video_status",
        "download_video",
        "24 h",
        "idempotency_key",
        "list_videos",
    ] {
        assert!(
            create.contains(needle),
            "create_video lacks {needle:?}: {create}"
        );
    }
    let status = text("get_video_status");
    assert!(status.contains("only if your client allows"), "{status}");
    assert!(status.contains("never call create_video again"), "{status}");
    assert!(text("download_video").contains("24 h"));
}

#[tokio::test]
async fn unknown_arguments_are_still_refused() {
    let sim = start_sim().await;
    let (mut raw, _) = RawChild::legacy(ServerOpts::for_sim(&sim)).await;
    for (tool, args, name) in [
        (
            "create_video",
            json!({"prompt": "x", "duration": 30}),
            "duration",
        ),
        (
            "get_video_status",
            json!({"task_id": "t1", "timeout": 5}),
            "timeout",
        ),
        (
            "download_video",
            json!({"task_id": "t1", "path": "/tmp"}),
            "path",
        ),
        ("list_videos", json!({"page": 2}), "page"),
        ("get_credits", json!({"verbose": true}), "verbose"),
    ] {
        let r = raw.call(tool, args).await;
        let text = expect_tool_error(&r);
        assert!(
            text.contains(name),
            "{tool}: error should name {name}: {text}"
        );
    }
    raw.close().await;
    assert_eq!(upstream_total(&sim), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn real_arguments_and_results_match_the_schemas() {
    let sim = start_sim().await;
    let (mut raw, _) = RawChild::legacy(ServerOpts::for_sim(&sim)).await;
    let list = raw.list_tools().await;
    let tools = list["tools"].as_array().expect("tools").clone();
    let input = |name: &str| tool(&tools, name)["inputSchema"].clone();
    let output = |name: &str| tool(&tools, name)["outputSchema"].clone();

    let create_args = json!({
        "prompt": "A 20 second product intro",
        "orientation": "portrait",
        "file_urls": ["https://files.example.com/logo.png"],
        "incognito_mode": false,
        "idempotency_key": "intro-v1"
    });
    assert_valid("create_video args", &input("create_video"), &create_args);
    let created = raw.call("create_video", create_args).await;
    assert_valid(
        "create_video result",
        &output("create_video"),
        expect_ok(&created),
    );
    let task_id = task_id_of(&created);

    let status_args = json!({"task_id": task_id, "wait_seconds": 0});
    assert_valid(
        "get_video_status args",
        &input("get_video_status"),
        &status_args,
    );
    let done = raw.wait_finished(&task_id).await;
    assert_valid(
        "get_video_status result",
        &output("get_video_status"),
        expect_ok(&done),
    );

    let list_args = json!({"status": "completed", "since": "24h", "limit": 5, "refresh": true});
    assert_valid("list_videos args", &input("list_videos"), &list_args);
    let listed = raw.call("list_videos", list_args).await;
    assert_valid(
        "list_videos result",
        &output("list_videos"),
        expect_ok(&listed),
    );

    assert_valid("get_credits args", &input("get_credits"), &json!({}));
    let credits = raw.call("get_credits", json!({})).await;
    assert_valid(
        "get_credits result",
        &output("get_credits"),
        expect_ok(&credits),
    );

    // Out-of-range and misspelt values are refused by the schema as well.
    let bad = validator(&input("create_video"));
    assert!(!bad.is_valid(&json!({"prompt": "x", "orientation": "square"})));
    assert!(!bad.is_valid(&json!({"orientation": "portrait"})));
    assert!(!validator(&input("list_videos")).is_valid(&json!({"limit": 0})));
    raw.close().await;
}
