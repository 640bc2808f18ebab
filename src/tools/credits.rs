//! `get_credits`: the key's balance from `GET /v1/account/credits`, passed on
//! as the upstream sent it (its shape is undocumented) with a readable summary.

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    VideoServer,
    view::{error_result, structured_result},
};
use crate::gateway::Operation;

/// Longest JSON excerpt put in the text summary.
const MAX_TEXT_JSON: usize = 2000;

/// Arguments of `get_credits`: none (unknown ones are refused).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCreditsParams {}

/// The result of `get_credits`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreditsView {
    /// The upstream's answer, unchanged.
    pub credits: Value,
}

/// Fields that usually carry the balance, in the order they are reported.
const BALANCE_KEYS: &[&str] = &[
    "balance",
    "credits",
    "remaining",
    "remaining_credits",
    "available",
    "total",
    "used",
    "currency",
];

/// A readable summary: the well-known fields first, then the whole answer.
pub fn summary(credits: &Value) -> String {
    let mut s =
        String::from("Credit balance of the configured API key (as the gateway reports it)");
    // Gateways often wrap the answer in {"data": {...}}.
    let body = match credits.get("data") {
        Some(d) if d.is_object() => d,
        _ => credits,
    };
    let mut known = Vec::new();
    if let Some(map) = body.as_object() {
        for k in BALANCE_KEYS {
            if let Some(v) = map.get(*k)
                && (v.is_number() || v.is_string())
            {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                known.push(format!("{k}: {shown}"));
            }
        }
    }
    if known.is_empty() {
        s.push(':');
    } else {
        s.push_str(&format!(": {}.", known.join(", ")));
    }
    let mut raw = serde_json::to_string_pretty(credits).unwrap_or_else(|_| credits.to_string());
    if raw.chars().count() > MAX_TEXT_JSON {
        raw = raw.chars().take(MAX_TEXT_JSON).collect();
        raw.push_str("\n… (truncated; the full answer is in structuredContent)");
    }
    s.push_str(&format!("\nFull answer:\n{raw}"));
    s.push_str(
        "\nA HeyGen Video Agent video reserves credits when create_video succeeds; the cost \
         depends on the gateway's pricing.",
    );
    s
}

#[tool_router(router = credits_router, vis = "pub(crate)")]
impl VideoServer {
    /// The HeyGen API key's credit balance and usage. Free.
    #[tool(
        output_schema = schema_for_output::<CreditsView>(),
        annotations(
            title = "Get the HeyGen credit balance",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn get_credits(
        &self,
        Parameters(GetCreditsParams {}): Parameters<GetCreditsParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let key = self
            .resolve_key(&ctx)
            .map_err(|e| error_result(e.user_message(Operation::Credits)))?;
        let credits = self
            .state
            .gateway
            .credits(&key)
            .await
            .map_err(|e| error_result(e.user_message(Operation::Credits)))?;
        let text = summary(&credits);
        Ok(structured_result(text, &CreditsView { credits }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_names_the_balance_and_keeps_everything() {
        let v =
            json!({"object": "account.credits", "balance": 995, "used": 5, "currency": "credits"});
        let s = summary(&v);
        assert!(
            s.contains("balance: 995, used: 5, currency: credits"),
            "{s}"
        );
        assert!(s.contains("\"object\": \"account.credits\""), "{s}");
    }

    #[test]
    fn summary_handles_wrapped_and_odd_shapes() {
        let s = summary(&json!({"data": {"remaining_credits": "12.5"}}));
        assert!(s.contains("remaining_credits: 12.5"), "{s}");
        let s = summary(&json!([1, 2, 3]));
        assert!(s.contains("[\n  1,"), "{s}");
        let big = json!({"items": vec!["x".repeat(100); 100]});
        assert!(summary(&big).contains("truncated"));
    }
}
