//! Balance, billing, pricing and model list.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{CREDIT_COST, SimState, authorize};
use crate::gateway::types::MODEL;

/// `GET /v1/account/credits`.
pub(super) async fn credits(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    state.record("credits", "GET", "/v1/account/credits", &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let start = state.config.start_balance;
    let balance = state.balance(&key);
    Json(json!({
        "object": "account.credits",
        "balance": balance,
        "used": start - balance,
        "currency": "credits"
    }))
    .into_response()
}

/// `GET /dashboard/billing/subscription`: the key's total quota.
pub(super) async fn subscription(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
) -> Response {
    state.record(
        "subscription",
        "GET",
        "/dashboard/billing/subscription",
        &headers,
        None,
    );
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let quota = state.config.start_balance as f64;
    Json(json!({
        "object": "billing_subscription",
        "has_payment_method": true,
        "soft_limit_usd": quota,
        "hard_limit_usd": quota,
        "system_hard_limit_usd": quota,
        "access_until": 0
    }))
    .into_response()
}

/// `GET /dashboard/billing/usage`: the amount used, in hundredths.
pub(super) async fn usage(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    state.record("usage", "GET", "/dashboard/billing/usage", &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let used = state.config.start_balance - state.balance(&key);
    Json(json!({"object": "list", "total_usage": (used * 100) as f64})).into_response()
}

/// `GET /api/pricing`: public, no key needed.
pub(super) async fn pricing(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    state.record("pricing", "GET", "/api/pricing", &headers, None);
    Json(json!({
        "success": true,
        "data": [{
            "model_name": MODEL,
            "quota_type": 1,
            "model_ratio": 0,
            "model_price": CREDIT_COST as f64,
            "completion_ratio": 1,
            "enable_groups": ["default"]
        }],
        "group_ratio": {"default": 1.0}
    }))
    .into_response()
}

/// `GET /v1/models`: what the key may call.
pub(super) async fn models(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    state.record("models", "GET", "/v1/models", &headers, None);
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1_757_165_031, "owned_by": "heygen"}]
    }))
    .into_response()
}
