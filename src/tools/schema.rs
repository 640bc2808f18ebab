//! Tool schemas that every MCP client and model provider accepts.
//!
//! Clients hand `inputSchema` to a provider's function-calling API, and each
//! provider accepts a different subset of JSON Schema. [`make_portable`]
//! rewrites a tool's schemas, once when the router is built, into the subset
//! they all take:
//!
//! - no `$ref` / `$defs` (local references are inlined), no `$schema`;
//! - no `additionalProperties` / `unevaluatedProperties` (google-genai's MCP
//!   conversion and Gemini's `parameters` dialect reject them; unknown argument
//!   names are still refused when the arguments are parsed);
//! - only standard `format`s: integer formats such as `uint32` become
//!   `minimum` / `maximum`, other non-standard ones are dropped;
//! - string unions (`oneOf` / `anyOf` of `enum` / `const` branches) become one
//!   `enum`, and `const` becomes a one-value `enum`;
//! - no `default: null`;
//! - on inputs, "optional" is said only by leaving a field out of `required`:
//!   no `null` in `type` or `enum`, no `anyOf` with a null branch; an object
//!   always has `properties` (some clients reject an object schema without it).
//!
//! Output schemas keep `null` in `type` (a result's optional fields are
//! written as `null`, and clients validate `structuredContent` against it).

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Map, Value};

/// Which way a schema describes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Arguments the model writes.
    Input,
    /// Results the server writes.
    Output,
}

/// Formats defined by JSON Schema 2020-12 (plus `duration`, `uuid`).
pub const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uri-template",
    "uuid",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Deepest chain of `$ref`s inlined; deeper (recursive) ones accept anything.
const MAX_REF_DEPTH: usize = 16;

/// Rewrites the tool's input and output schema into the portable subset.
pub fn make_portable(tool: &mut Tool) {
    tool.input_schema = Arc::new(portable(&tool.input_schema, Side::Input));
    if let Some(out) = &tool.output_schema {
        tool.output_schema = Some(Arc::new(portable(out, Side::Output)));
    }
}

/// The portable form of one schema (see the module documentation).
pub fn portable(schema: &JsonObject, side: Side) -> JsonObject {
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(d)) = schema.get(key) {
            for (name, def) in d {
                defs.insert(format!("#/{key}/{name}"), def.clone());
            }
        }
    }
    let mut root = Value::Object(schema.clone());
    if let Value::Object(m) = &mut root {
        m.remove("$defs");
        m.remove("definitions");
    }
    inline_refs(&mut root, &defs, 0);
    normalize(&mut root, side);
    let mut out = match root {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    // A tool's schemas are objects at the root (MCP; OpenAI and Anthropic
    // refuse anything else).
    out.insert("type".into(), Value::String("object".into()));
    if side == Side::Input && !out.contains_key("properties") {
        out.insert("properties".into(), Value::Object(Map::new()));
    }
    out
}

/// Replaces every local `$ref` by the definition it names; the keywords next
/// to a `$ref` win over the definition's.
fn inline_refs(v: &mut Value, defs: &Map<String, Value>, depth: usize) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.remove("$ref") {
                let mut target = match defs.get(&r) {
                    Some(def) if depth < MAX_REF_DEPTH => def.clone(),
                    _ => Value::Object(Map::new()),
                };
                inline_refs(&mut target, defs, depth + 1);
                if let Value::Object(t) = target {
                    for (k, val) in t {
                        m.entry(k).or_insert(val);
                    }
                }
            }
            for child in m.values_mut() {
                inline_refs(child, defs, depth);
            }
        }
        Value::Array(a) => {
            for child in a {
                inline_refs(child, defs, depth);
            }
        }
        _ => {}
    }
}

/// Keywords whose value is one subschema.
const SCHEMA_KEYWORDS: &[&str] = &[
    "items",
    "additionalItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
];
/// Keywords whose value is a list of subschemas.
const SCHEMA_LIST_KEYWORDS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &["properties", "patternProperties", "dependentSchemas"];

fn normalize(v: &mut Value, side: Side) {
    let Value::Object(m) = v else { return };
    for key in SCHEMA_KEYWORDS {
        match m.get_mut(*key) {
            Some(Value::Array(list)) => list.iter_mut().for_each(|s| normalize(s, side)),
            Some(s) => normalize(s, side),
            None => {}
        }
    }
    for key in SCHEMA_LIST_KEYWORDS {
        if let Some(Value::Array(list)) = m.get_mut(*key) {
            list.iter_mut().for_each(|s| normalize(s, side));
        }
    }
    for key in SCHEMA_MAP_KEYWORDS {
        if let Some(Value::Object(map)) = m.get_mut(*key) {
            map.values_mut().for_each(|s| normalize(s, side));
        }
    }

    for key in [
        "$schema",
        "$id",
        "additionalProperties",
        "unevaluatedProperties",
    ] {
        m.remove(key);
    }
    if m.get("default").is_some_and(Value::is_null) {
        m.remove("default");
    }
    if let Some(c) = m.remove("const")
        && !m.contains_key("enum")
    {
        m.insert("enum".into(), Value::Array(vec![c]));
    }
    for key in ["oneOf", "anyOf"] {
        flatten_union(m, key, side);
    }
    if let Some(Value::Array(all)) = m.get("allOf")
        && all.len() == 1
        && let Some(Value::Array(mut all)) = m.remove("allOf")
        && let Some(Value::Object(only)) = all.pop()
    {
        merge_into(m, only);
    }
    if side == Side::Input {
        drop_null_from_input(m);
    }
    fix_format(m);
    if side == Side::Input && is_object_type(m) && !m.contains_key("properties") {
        m.insert("properties".into(), Value::Object(Map::new()));
    }
}

/// Copies `from`'s keywords into `m` where `m` has none of its own.
fn merge_into(m: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, val) in from {
        m.entry(k).or_insert(val);
    }
}

/// One branch of a union that only lists values: `{type?, enum, description?}`.
fn enum_branch(b: &Value) -> Option<(Option<&Value>, &Vec<Value>)> {
    let o = b.as_object()?;
    let values = o.get("enum")?.as_array()?;
    if o.keys()
        .any(|k| !matches!(k.as_str(), "type" | "enum" | "description" | "title"))
    {
        return None;
    }
    Some((o.get("type"), values))
}

fn is_null_branch(b: &Value) -> bool {
    b.get("type").and_then(Value::as_str) == Some("null")
        || b.get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().all(Value::is_null))
}

/// `oneOf` / `anyOf` of plain value lists becomes one `enum`, and a single
/// remaining branch is merged into `m`. Inputs lose null branches; outputs keep
/// them (as `anyOf: [values, null]`), so a `null` result stays valid.
fn flatten_union(m: &mut Map<String, Value>, key: &str, side: Side) {
    let Some(Value::Array(branches)) = m.get(key) else {
        return;
    };
    let (nulls, rest): (Vec<Value>, Vec<Value>) =
        branches.iter().cloned().partition(is_null_branch);
    if rest.is_empty() {
        return;
    }
    let merged = merge_enum_branches(&rest);
    if side == Side::Output && !nulls.is_empty() {
        if let Some(merged) = merged
            && rest.len() > 1
        {
            let null = serde_json::json!({"type": "null"});
            m.insert(key.into(), Value::Array(vec![Value::Object(merged), null]));
        }
        return;
    }
    if let Some(merged) = merged
        && !m.contains_key("enum")
    {
        m.remove(key);
        merge_into(m, merged);
    } else if rest.len() == 1 {
        m.remove(key);
        if let Some(Value::Object(only)) = rest.into_iter().next() {
            merge_into(m, only);
        }
    } else if !nulls.is_empty() {
        m.insert(key.into(), Value::Array(rest));
    }
}

/// Branches that only list values, as one `{type?, enum}`; `None` unless every
/// branch is such a list.
fn merge_enum_branches(branches: &[Value]) -> Option<Map<String, Value>> {
    let enums: Option<Vec<_>> = branches.iter().map(enum_branch).collect();
    let enums = enums?;
    let first_type = enums.first()?.0.cloned();
    let mut values: Vec<Value> = Vec::new();
    for (_, vals) in &enums {
        for v in vals.iter() {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
    }
    let mut out = Map::new();
    if let Some(t) = first_type
        && enums.iter().all(|(bt, _)| *bt == Some(&t))
    {
        out.insert("type".into(), t);
    }
    out.insert("enum".into(), Value::Array(values));
    Some(out)
}

/// Inputs say "optional" by leaving a field out of `required`, never with null.
fn drop_null_from_input(m: &mut Map<String, Value>) {
    if let Some(Value::Array(ts)) = m.get_mut("type") {
        ts.retain(|t| t != "null");
        if ts.len() == 1 {
            let only = ts.remove(0);
            m.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(e)) = m.get_mut("enum") {
        e.retain(|v| !v.is_null());
    }
    if let (Some(Value::Array(req)), Some(Value::Object(props))) =
        (m.get("required"), m.get("properties"))
    {
        let kept: Vec<Value> = req
            .iter()
            .filter(|r| r.as_str().is_some_and(|r| props.contains_key(r)))
            .cloned()
            .collect();
        m.insert("required".into(), Value::Array(kept));
    }
}

fn is_object_type(m: &Map<String, Value>) -> bool {
    match m.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    }
}

/// Integer formats become bounds; other non-standard formats are dropped.
fn fix_format(m: &mut Map<String, Value>) {
    let Some(Value::String(format)) = m.get("format") else {
        return;
    };
    if STANDARD_FORMATS.contains(&format.as_str()) {
        return;
    }
    let (min, max): (Option<i64>, Option<i64>) = match format.as_str() {
        "int8" => (Some(i8::MIN.into()), Some(i8::MAX.into())),
        "int16" => (Some(i16::MIN.into()), Some(i16::MAX.into())),
        "int32" => (Some(i32::MIN.into()), Some(i32::MAX.into())),
        "uint8" => (Some(0), Some(u8::MAX.into())),
        "uint16" => (Some(0), Some(u16::MAX.into())),
        "uint32" => (Some(0), Some(u32::MAX.into())),
        // 64-bit limits are beyond what every JSON parser keeps exactly.
        "uint64" | "uint128" | "uint" | "usize" => (Some(0), None),
        _ => (None, None),
    };
    m.remove("format");
    if let Some(min) = min {
        m.entry("minimum").or_insert(min.into());
    }
    if let Some(max) = max {
        m.entry("maximum").or_insert(max.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value, side: Side) -> Value {
        Value::Object(portable(v.as_object().unwrap(), side))
    }

    #[test]
    fn optional_input_fields_lose_their_nulls() {
        let s = run(
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "o": {"type": ["string", "null"], "enum": ["a", "b", null], "default": null},
                    "n": {"type": ["integer", "null"], "format": "uint32", "minimum": 1},
                    "e": {"anyOf": [{"$ref": "#/$defs/E"}, {"type": "null"}], "description": "d"}
                },
                "required": ["gone"],
                "$defs": {"E": {"type": "string", "enum": ["x", "y"]}}
            }),
            Side::Input,
        );
        assert_eq!(
            s,
            json!({
                "type": "object",
                "properties": {
                    "o": {"type": "string", "enum": ["a", "b"]},
                    "n": {"type": "integer", "minimum": 1, "maximum": 4294967295u32},
                    "e": {"type": "string", "enum": ["x", "y"], "description": "d"}
                },
                "required": []
            })
        );
    }

    #[test]
    fn empty_input_object_gets_properties() {
        let s = run(
            json!({"type": "object", "additionalProperties": false}),
            Side::Input,
        );
        assert_eq!(s, json!({"type": "object", "properties": {}}));
    }

    #[test]
    fn output_unions_become_one_enum_and_keep_null() {
        let s = run(
            json!({
                "type": "object",
                "properties": {
                    "s": {"oneOf": [
                        {"type": "string", "enum": ["a", "b"]},
                        {"type": "string", "const": "c", "description": "x"}
                    ]},
                    "n": {"type": ["integer", "null"], "format": "uint64", "minimum": 0},
                    "p": {"type": "integer", "format": "uint8", "maximum": 100},
                    "u": {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]}
                }
            }),
            Side::Output,
        );
        assert_eq!(
            s["properties"],
            json!({
                "s": {"type": "string", "enum": ["a", "b", "c"]},
                "n": {"type": ["integer", "null"], "minimum": 0},
                "p": {"type": "integer", "minimum": 0, "maximum": 100},
                "u": {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]}
            })
        );
    }

    #[test]
    fn properties_named_like_keywords_are_kept() {
        let s = run(
            json!({"type": "object", "properties": {
                "format": {"type": "string"},
                "default": {"type": "string"},
                "additionalProperties": {"type": "boolean"}
            }}),
            Side::Input,
        );
        let props = s["properties"].as_object().unwrap();
        assert_eq!(props.len(), 3, "{s}");
    }

    #[test]
    fn recursive_refs_end() {
        let s = run(
            json!({"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}},
                   "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}}),
            Side::Output,
        );
        assert!(!s.to_string().contains("$ref"), "{s}");
    }
}
