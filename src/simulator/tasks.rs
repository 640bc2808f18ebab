//! `POST /v1/videos/generations` and `GET /v1/tasks/{id}`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    CREDIT_COST, SimState, authorize, dropped, error,
    faults::{CreateAnswer, Faults, LookupFault, Refusal},
    ids::{self, TaskRecord},
    insufficient_quota, invalid, rate_limited, request_id, status_fault, truncated, unauthorized,
};
use crate::gateway::types::MODEL;

pub(super) async fn create(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    state.record(
        "create",
        "POST",
        "/v1/videos/generations",
        &headers,
        parsed.clone(),
    );
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let prompt = match parsed {
        Some(Value::Object(req)) => match validate(&req) {
            Ok(prompt) => prompt,
            Err(r) => return r,
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "Request body must be a JSON object",
                "invalid_request_error",
            );
        }
    };
    let faults = Faults::parse(&prompt);
    if let Some(refused) = refuse(&state, &key, &prompt, &faults) {
        return refused;
    }

    // Accepted: the task exists (and is billed) from here on, whatever the answer.
    let task = TaskRecord {
        created: SystemTime::now(),
        render: faults.render.unwrap_or(state.config.render_time),
        owner: ids::owner_tag(&key),
        nonce: rand::random(),
        faults: faults.task.clone(),
    };
    let id = ids::encode(&task);
    let answer = task_json(&state, &id, &task, 1);
    state.lock().tasks_created += 1;
    tracing::debug!(task_id = %id, "simulator: task created");
    answer_create(&faults, answer).await
}

/// The prompt of a well-formed create request, or the 422 a gateway gives.
#[allow(clippy::result_large_err)]
fn validate(req: &Map<String, Value>) -> Result<String, Response> {
    if req.get("model").and_then(Value::as_str) != Some(MODEL) {
        return Err(invalid("model_not_found", "Model not found"));
    }
    let prompt = match req.get("prompt").and_then(Value::as_str) {
        Some(p) if !p.is_empty() && p.chars().count() <= 10_000 => p.to_string(),
        _ => {
            return Err(invalid(
                "invalid_prompt",
                "prompt must be 1 to 10000 characters",
            ));
        }
    };
    if let Some(o) = req.get("orientation")
        && !matches!(o.as_str(), Some("landscape" | "portrait"))
    {
        return Err(invalid(
            "invalid_orientation",
            "orientation must be landscape or portrait",
        ));
    }
    for field in ["avatar_id", "voice_id", "style_id"] {
        if let Some(v) = req.get(field)
            && !(v.is_string() || v.is_null())
        {
            return Err(invalid(
                "invalid_parameter",
                &format!("{field} must be a string"),
            ));
        }
    }
    if let Some(urls) = req.get("file_urls") {
        let Some(list) = urls.as_array() else {
            return Err(invalid("invalid_parameter", "file_urls must be an array"));
        };
        if list.len() > 20 {
            return Err(invalid("invalid_parameter", "at most 20 file_urls"));
        }
        let web = |u: &Value| {
            u.as_str()
                .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
        };
        if !list.iter().all(web) {
            return Err(invalid(
                "invalid_image_url",
                "file_urls must be http(s) URLs",
            ));
        }
    }
    if let Some(v) = req.get("incognito_mode")
        && !v.is_boolean()
    {
        return Err(invalid(
            "invalid_parameter",
            "incognito_mode must be a boolean",
        ));
    }
    Ok(prompt)
}

/// The answer when the gateway does not accept this create (nothing is
/// created or billed); `None` when it does, after billing the key.
fn refuse(state: &SimState, key: &str, prompt: &str, faults: &Faults) -> Option<Response> {
    if let Some(refusal) = &faults.refusal {
        return Some(match refusal {
            Refusal::Unauthorized => unauthorized(),
            Refusal::PaymentRequired => insufficient_quota(),
            Refusal::Validation(code) => invalid(code, &format!("Validation failed: {code}")),
            Refusal::EchoKey => invalid(
                "invalid_parameter",
                &format!("bad request from Bearer {key}"),
            ),
            Refusal::RateLimited => status_fault(429),
            Refusal::RateLimitedBare => rate_limited(),
            Refusal::Status(code) => status_fault(*code),
        });
    }
    let mut inner = state.lock();
    if let Some(limit) = faults.rate_limited_times {
        let seen = inner.prompt_429.entry(prompt.to_string()).or_default();
        if *seen < limit {
            *seen += 1;
            return Some(status_fault(429));
        }
    }
    let balance = inner
        .balances
        .entry(key.to_string())
        .or_insert(state.config.start_balance);
    if *balance < CREDIT_COST {
        return Some(insufficient_quota());
    }
    *balance -= CREDIT_COST;
    None
}

/// The create answer, as late and as broken as the markers ask.
pub(super) async fn answer_create(faults: &Faults, answer: Value) -> Response {
    if let Some(delay) = faults.answer_delay {
        tokio::time::sleep(delay).await;
    }
    match faults.answer {
        CreateAnswer::Drop => dropped(),
        CreateAnswer::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>OK</body></html>",
        )
            .into_response(),
        CreateAnswer::Truncated => truncated(&answer),
        CreateAnswer::Json => Json(answer).into_response(),
    }
}

/// How far a task has come: (finished, percent of its render time).
fn progress(task: &TaskRecord) -> (bool, u64) {
    let elapsed = SystemTime::now()
        .duration_since(task.created)
        .unwrap_or(Duration::ZERO);
    if task.render.is_zero() || elapsed >= task.render {
        return (true, 100);
    }
    let frac = elapsed.as_secs_f64() / task.render.as_secs_f64();
    (false, (frac * 100.0) as u64)
}

/// Whether the task's video can be fetched now.
pub(super) fn video_ready(task: &TaskRecord) -> bool {
    progress(task).0 && !task.faults.fail
}

/// The task as the gateway reports it now.
fn task_json(state: &SimState, id: &str, task: &TaskRecord, link_version: u64) -> Value {
    let faults = &task.faults;
    let (done, percent) = progress(task);
    let (status, percent) = match (done, faults.fail) {
        (true, true) => ("failed", 0),
        (true, false) => ("completed", 100),
        (false, _) if percent < 10 => ("pending", 0),
        (false, _) => ("processing", percent.clamp(1, 99)),
    };
    let status = match &faults.odd_status {
        Some(odd) if !done => odd.as_str(),
        _ => status,
    };
    if faults.minimal {
        return json!({"id": id, "status": status});
    }
    let url = format!("{}/files/{id}.mp4?v={link_version}", state.base_url);
    let mut v = json!({
        "id": id,
        "object": "video.generation.task",
        "type": "video",
        "model": MODEL,
        "status": status,
        "progress": percent,
        "created": task.created_unix(),
        "task_info": {"can_cancel": !done, "estimated_time": task.render.as_secs().max(1)},
        "results": null,
        "error": null,
        "usage": {"credits_reserved": CREDIT_COST, "user_group": "default"}
    });
    if status == "completed" {
        if faults.output_shape {
            v["output"] = json!({"url": url, "urls": [url]});
        } else {
            v["results"] = json!([{"url": url, "width": 1280, "height": 720, "duration": 1.0}]);
        }
    }
    if status == "failed" {
        v["error"] = json!({"code": "render_failed", "message": format!("The video agent could not render this prompt (request_id: {})", request_id())});
    }
    v
}

pub(super) async fn get_task(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(_q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    state.record("get", "GET", &format!("/v1/tasks/{id}"), &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // Another key's task is as unknown as one that never existed.
    let Some(task) = ids::decode(&id).filter(|t| t.owner == ids::owner_tag(&key)) else {
        return status_fault(404);
    };
    let run = {
        let mut inner = state.lock();
        let run = inner.run(&id);
        run.lookups += 1;
        *run
    };
    let answer = task_json(&state, &id, &task, run.link_version);
    let fault = task
        .faults
        .lookup
        .and_then(|(fault, window)| window.hits(run.lookups).then_some(fault));
    match fault {
        None => Json(answer).into_response(),
        Some(LookupFault::Garbage) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "not json",
        )
            .into_response(),
        Some(LookupFault::Drop) => dropped(),
        Some(LookupFault::Truncated) => truncated(&answer),
        Some(LookupFault::Slow(pause)) => {
            tokio::time::sleep(pause).await;
            Json(answer).into_response()
        }
        Some(LookupFault::Status(code)) => status_fault(code),
    }
}
