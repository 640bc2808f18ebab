//! `get_credits`: the key's balance, typed (remaining, used, total, unlimited,
//! unit) from the gateway's billing endpoints, the price of one video when
//! the public pricing table states it, and the raw answers for reference.

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
use crate::{
    backend::{BackendKind, Operation},
    video::Balance,
    video::Credits,
};

/// Arguments of `get_credits`: none (unknown ones are refused).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCreditsParams {}

/// The result of `get_credits`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreditsView {
    /// Balance in the gateway's unit.
    pub credits: Credits,
    /// Price of one video, when published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_per_video: Option<f64>,
    /// Videos the balance pays for at that price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub videos_affordable: Option<u64>,
    /// The upstream's answers, unchanged.
    pub upstream: Value,
}

impl From<Balance> for CreditsView {
    fn from(b: Balance) -> Self {
        let videos_affordable = b
            .price_per_video
            .and_then(|p| b.credits.videos_affordable(p));
        Self {
            credits: b.credits,
            price_per_video: b.price_per_video,
            videos_affordable,
            upstream: b.upstream,
        }
    }
}

fn amount(v: f64, unit: &Option<String>) -> String {
    let n = if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    };
    match unit {
        Some(u) => format!("{n} {u}"),
        None => n,
    }
}

/// A readable summary of the balance.
pub fn summary(view: &CreditsView, kind: BackendKind) -> String {
    let c = &view.credits;
    let mut s = String::from("Balance of the configured API key: ");
    if c.unlimited {
        s.push_str("unlimited quota");
        if let Some(u) = c.used {
            s.push_str(&format!(" ({} used)", amount(u, &c.unit)));
        }
    } else {
        let mut parts = Vec::new();
        if let Some(r) = c.remaining {
            parts.push(format!("{} remaining", amount(r, &c.unit)));
        }
        if let Some(u) = c.used {
            parts.push(format!("{} used", amount(u, &c.unit)));
        }
        if let Some(t) = c.total {
            parts.push(format!("{} in total", amount(t, &c.unit)));
        }
        if parts.is_empty() {
            s.push_str("not stated by the upstream (see upstream)");
        } else {
            s.push_str(&parts.join(", "));
        }
    }
    s.push('.');
    if c.unit.is_none() {
        s.push_str(" Amounts are in the gateway's quota unit (the one its site shows: USD, CNY or tokens).");
    }
    match view.price_per_video {
        Some(p) => {
            s.push_str(&format!(" One video costs {}", amount(p, &c.unit)));
            if let Some(n) = view.videos_affordable {
                s.push_str(&format!("; the balance pays for {n} more"));
            }
            s.push('.');
        }
        None if kind == BackendKind::Heygen => s.push_str(
            " HeyGen charges by the length of the finished video (the agent chooses it); a failed video is not charged.",
        ),
        None => s.push_str(
            " A video's price is not published by this gateway; credits are reserved when create_video succeeds.",
        ),
    }
    s
}

#[tool_router(router = credits_router, vis = "pub(crate)")]
impl VideoServer {
    /// The API key's balance (remaining, used, total) and the price of one video
    /// when published. Free.
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
        let view = CreditsView::from(
            self.state
                .backend
                .balance(&key)
                .await
                .map_err(|e| error_result(e.user_message(Operation::Credits)))?,
        );
        let kind = self.state.caps().kind;
        Ok(structured_result(summary(&view, kind), &view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(credits: Credits, price: Option<f64>) -> CreditsView {
        CreditsView::from(Balance {
            credits,
            price_per_video: price,
            upstream: json!({}),
        })
    }

    #[test]
    fn summary_states_balance_price_and_unit() {
        let s = summary(
            &view(
                Credits::from_quota(Some(100.0), Some(12.5), None),
                Some(2.5),
            ),
            BackendKind::Gateway,
        );
        assert!(s.contains("87.5 remaining, 12.5 used, 100 in total"), "{s}");
        assert!(s.contains("quota unit"), "{s}");
        assert!(
            s.contains("One video costs 2.5; the balance pays for 35 more"),
            "{s}"
        );
        let s = summary(
            &view(
                Credits::from_quota(Some(1e8), Some(3.0), Some("USD".into())),
                None,
            ),
            BackendKind::Gateway,
        );
        assert!(s.contains("unlimited quota (3 USD used)"), "{s}");
        assert!(s.contains("not published"), "{s}");
        assert!(!s.contains("quota unit"), "{s}");
    }
}
