//! The client of the gateway's task API (`shared/UPSTREAM.md`): its
//! endpoints, wire types and error envelope over the shared [`Transport`].
//! Creating a video costs money, so `create_video` is resent only when nothing
//! can have reached the upstream (connect failure) or when the gateway refused
//! it with 429.

use std::time::Duration;

use bytes::Bytes;
use percent_encoding::utf8_percent_encode;
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;

use super::types::{
    CreateVideoRequest, ErrorEnvelope, ModelList, Pricing, Subscription, TaskObject, UploadRequest,
    UploadedFile, Usage,
};
pub use crate::backend::http::{HttpConfig as GatewayConfig, RetryPolicy, validate_task_id};
use crate::{
    backend::{
        ApiKey, Capabilities, UpstreamError,
        error::Upstream,
        http::{
            Auth, SEGMENT, Transport, excerpt, find_request_id, one_line, parse_json,
            parse_retry_after,
        },
    },
    video::{Balance, Credits},
};

/// The price group assumed for a key whose group is unknown.
pub const DEFAULT_GROUP: &str = "default";
/// The public pricing table is a nicety: never wait long for it.
const PRICING_TIMEOUT: Duration = Duration::from_secs(5);

/// The task-API client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct GatewayClient {
    transport: Transport,
    /// Ask the gateway to refresh a running task from HeyGen on each lookup.
    sync_upstream: bool,
    caps: Capabilities,
}

impl GatewayClient {
    pub fn new(config: GatewayConfig) -> Self {
        Self {
            transport: Transport::new(config, Auth::Bearer, api_error),
            sync_upstream: true,
            caps: super::backend::capabilities(),
        }
    }

    pub(super) fn caps(&self) -> &Capabilities {
        &self.caps
    }

    pub fn sync_upstream(&self) -> bool {
        self.sync_upstream
    }

    /// Whether status lookups ask the gateway to refresh from HeyGen.
    pub fn with_sync_upstream(mut self, sync: bool) -> Self {
        self.sync_upstream = sync;
        self
    }

    pub fn config(&self) -> &GatewayConfig {
        self.transport.config()
    }

    /// `POST /v1/videos/generations`. Sent at most once unless nothing was
    /// sent (connect failure) or the gateway answered 429.
    #[tracing::instrument(name = "gateway.create", level = "debug", skip_all)]
    pub async fn create_video(
        &self,
        key: &ApiKey,
        body: &CreateVideoRequest,
    ) -> Result<TaskObject, UpstreamError> {
        let url = self.transport.url("/v1/videos/generations");
        let body = serde_json::to_vec(body).map_err(|e| UpstreamError::Decode {
            status: 0,
            detail: e.to_string(),
        })?;
        let (status, bytes) = self
            .transport
            .send_unrepeated(key, &url, Bytes::from(body))
            .await?;
        let task = decode_task(status, &bytes, key)?;
        if task.id.is_none() {
            // The video was probably created, but we cannot name it.
            return Err(UpstreamError::Decode {
                status: status.as_u16(),
                detail: "the answer carries no task id".into(),
            });
        }
        Ok(task)
    }

    /// `GET /v1/tasks/{task_id}`; idempotent, so 429, 5xx and transport
    /// failures are retried with capped backoff.
    #[tracing::instrument(name = "gateway.status", level = "debug", skip_all, fields(task_id = %task_id))]
    pub async fn get_task(
        &self,
        key: &ApiKey,
        task_id: &str,
        sync_upstream: bool,
    ) -> Result<TaskObject, UpstreamError> {
        validate_task_id(task_id)?;
        let mut url = self.transport.url(&format!(
            "/v1/tasks/{}",
            utf8_percent_encode(task_id, SEGMENT)
        ));
        if sync_upstream {
            url.push_str("?sync_upstream=true");
        }
        let (status, bytes) = self.transport.send_idempotent(key, &url).await?;
        decode_task(status, &bytes, key)
    }

    /// The key's balance from the gateway's billing endpoints (UPSTREAM.md,
    /// "Credits and balance"), read concurrently, plus the price of one video
    /// from the public pricing endpoint when it answers. A gateway without the
    /// billing endpoints (404) is asked the older `/v1/account/credits`.
    #[tracing::instrument(name = "gateway.balance", level = "debug", skip_all)]
    pub async fn balance(&self, key: &ApiKey) -> Result<Balance, UpstreamError> {
        let t = &self.transport;
        let (sub, usage, pricing) = tokio::join!(
            t.get_json(key, "/dashboard/billing/subscription"),
            t.get_json(key, "/dashboard/billing/usage"),
            self.pricing(),
        );
        let price = pricing.and_then(|p| p.video_price(DEFAULT_GROUP));
        let sub = match sub {
            Err(e) if e.status() == Some(404) => {
                let legacy = t.get_json(key, "/v1/account/credits").await?;
                return Ok(Balance {
                    credits: legacy_credits(&legacy),
                    price_per_video: price,
                    upstream: serde_json::json!({ "account_credits": legacy }),
                });
            }
            other => other?,
        };
        // Usage unknown (404) leaves `used` and `remaining` unreported; any
        // other failure fails the lookup rather than show a wrong balance.
        let usage = match usage {
            Err(e) if e.status() == Some(404) => None,
            other => Some(other?),
        };
        let parsed: Subscription = serde_json::from_value(sub.clone()).unwrap_or_default();
        let used = usage
            .as_ref()
            .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
            .and_then(|u| u.total_usage)
            .map(|hundredths| hundredths / 100.0);
        if parsed.hard_limit_usd.is_none() {
            return Err(UpstreamError::Decode {
                status: 200,
                detail: format!(
                    "the billing answer has no hard_limit_usd: {}",
                    key.scrub(&excerpt(sub.to_string().as_bytes()))
                ),
            });
        }
        Ok(Balance {
            credits: Credits::from_quota(
                parsed.hard_limit_usd,
                used,
                parsed.unit.or(parsed.currency),
            ),
            price_per_video: price,
            upstream: serde_json::json!({ "subscription": sub, "usage": usage }),
        })
    }

    /// `GET /v1/models`: the model ids the key may call.
    pub async fn models(&self, key: &ApiKey) -> Result<Vec<String>, UpstreamError> {
        let value = self.transport.get_json(key, "/v1/models").await?;
        let list: ModelList = serde_json::from_value(value).map_err(|e| UpstreamError::Decode {
            status: 200,
            detail: format!("not a model list: {e}"),
        })?;
        Ok(list.data.into_iter().filter_map(|m| m.id).collect())
    }

    /// `POST /v1/files/upload/base64`: one local file turned into a URL for
    /// `file_urls`. Not idempotent, so sent once (resent only when nothing was
    /// sent or on 429, like a create).
    #[tracing::instrument(name = "gateway.upload", level = "debug", skip_all, fields(bytes = data.len()))]
    pub async fn upload_file(
        &self,
        key: &ApiKey,
        file_name: &str,
        data: &[u8],
    ) -> Result<String, UpstreamError> {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        let body = serde_json::to_vec(&UploadRequest {
            file_data: &encoded,
            file_name,
        })
        .map_err(|e| UpstreamError::Decode {
            status: 0,
            detail: e.to_string(),
        })?;
        drop(encoded);
        let url = self.transport.url("/v1/files/upload/base64");
        let (status, bytes) = self
            .transport
            .send_unrepeated(key, &url, Bytes::from(body))
            .await?;
        let value = parse_json(status, &bytes, key)?;
        let file: UploadedFile =
            serde_json::from_value(value).map_err(|e| UpstreamError::Decode {
                status: status.as_u16(),
                detail: format!("not an upload answer: {e}"),
            })?;
        file.url
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or(UpstreamError::Decode {
                status: status.as_u16(),
                detail: "the upload answer carries no file URL".into(),
            })
    }

    /// The public pricing table; `None` whenever it does not answer quickly.
    async fn pricing(&self) -> Option<Pricing> {
        let bytes = self
            .transport
            .get_public("/api/pricing", PRICING_TIMEOUT)
            .await?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Reads the well-known fields of the older, undocumented credits answer.
fn legacy_credits(v: &Value) -> Credits {
    let body = match v.get("data") {
        Some(d) if d.is_object() => d,
        _ => v,
    };
    let num = |names: &[&str]| {
        names.iter().find_map(|n| {
            let f = body.get(*n)?;
            f.as_f64().or_else(|| f.as_str()?.trim().parse().ok())
        })
    };
    let unit = ["unit", "currency"]
        .iter()
        .find_map(|n| body.get(*n)?.as_str().map(str::to_string));
    let remaining = num(&["remaining", "remaining_credits", "balance", "available"]);
    let used = num(&["used", "used_credits"]);
    let total = num(&["total", "total_credits"]);
    Credits {
        remaining,
        used,
        total,
        unlimited: false,
        unit,
    }
}

fn decode_task(
    status: StatusCode,
    bytes: &[u8],
    key: &ApiKey,
) -> Result<TaskObject, UpstreamError> {
    let decode_error = |detail: String| UpstreamError::Decode {
        status: status.as_u16(),
        detail: key.scrub(&detail),
    };
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| decode_error(format!("not JSON ({e}): {}", excerpt(bytes))))?;
    // Nothing the upstream says travels on with the key in it.
    if key.may_appear_in(bytes) {
        key.scrub_json(&mut value);
    }
    // Some gateways wrap the object: {"data": {...}}.
    let value = match value {
        Value::Object(mut map) if !map.contains_key("id") && map.contains_key("data") => {
            map.remove("data").unwrap_or(Value::Null)
        }
        v => v,
    };
    if !value.is_object() {
        return Err(decode_error(format!(
            "expected a task object: {}",
            excerpt(bytes)
        )));
    }
    serde_json::from_value(value).map_err(|e| decode_error(e.to_string()))
}

fn api_error(status: StatusCode, headers: &HeaderMap, bytes: &[u8], key: &ApiKey) -> UpstreamError {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let parsed: Option<ErrorEnvelope> = serde_json::from_slice(bytes).ok();
    let body = parsed.map(ErrorEnvelope::into_body).unwrap_or_default();
    let mut message = match body.message {
        Some(m) => one_line(&m, 500),
        None if bytes.is_empty() => String::new(),
        None => format!("non-JSON answer: {}", excerpt(bytes)),
    };
    message = key.scrub(&message);
    if message.is_empty()
        && let Some(reason) = status.canonical_reason()
    {
        message = reason.to_string();
    }
    let request_id = find_request_id(&message).or_else(|| {
        ["x-request-id", "request-id", "x-amzn-requestid"]
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok().map(|s| one_line(s, 100)))
    });
    UpstreamError::Api {
        upstream: Upstream::Gateway,
        status: status.as_u16(),
        code: body.code.map(|c| key.scrub(&one_line(&c, 100))),
        param: None,
        message,
        request_id: request_id.map(|r| key.scrub(&r)),
        retry_after,
    }
}
