//! Wire types of HeyGen's v3 API (`shared/HEYGEN_V3.md`), tolerant by design:
//! unknown fields are ignored, optional fields may be missing or null, numbers
//! may arrive as strings, unknown status words are kept verbatim.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    backend::lenient::{lenient_f64, lenient_string},
    video::Orientation,
};

/// `{"data": …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
}

/// `{"data": […], "has_more", "next_token"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ListEnvelope<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: Option<bool>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub next_token: Option<String>,
}

/// `{"error": {"code", "message", "param", "doc_url"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default, deserialize_with = "lenient_string")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub param: Option<String>,
}

/// A reference file of a create.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AssetInput {
    Url { url: String },
    AssetId { asset_id: String },
}

/// Body of `POST /v3/video-agents`. `None` fields are not sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateAgentRequest {
    pub prompt: String,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<Orientation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<AssetInput>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incognito_mode: Option<bool>,
}

/// A Video Agent session (`POST /v3/video-agents`, `GET /v3/video-agents/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Session {
    #[serde(default, deserialize_with = "lenient_string")]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: Option<f64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub video_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    #[serde(default, deserialize_with = "lenient_string")]
    pub role: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient_string")]
    pub kind: Option<String>,
    #[serde(default)]
    pub content: Option<Value>,
}

/// `GET /v3/videos/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Video {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub video_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub captioned_video_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub thumbnail_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub created_at: Option<f64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub failure_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub failure_message: Option<String>,
}

/// `GET /v3/users/me`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Me {
    #[serde(default, deserialize_with = "lenient_string")]
    pub billing_type: Option<String>,
    #[serde(default)]
    pub wallet: Option<Wallet>,
    #[serde(default)]
    pub subscription: Option<SubscriptionBlock>,
    #[serde(default)]
    pub usage_based: Option<UsageBased>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Wallet {
    #[serde(default, deserialize_with = "lenient_string")]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub remaining_balance: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubscriptionBlock {
    #[serde(default)]
    pub credits: Option<SubscriptionCredits>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubscriptionCredits {
    #[serde(default)]
    pub premium_credits: Option<CreditBucket>,
    #[serde(default)]
    pub add_on_credits: Option<CreditBucket>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreditBucket {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub remaining: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UsageBased {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub included_credits: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub remaining_credits: Option<f64>,
}

/// `POST /v3/assets`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Asset {
    #[serde(default, deserialize_with = "lenient_string")]
    pub asset_id: Option<String>,
}

/// An avatar group (one person).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AvatarGroup {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub gender: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub preview_image_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub default_voice_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub looks_count: Option<f64>,
}

/// One look of a person.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AvatarLook {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub avatar_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub group_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub gender: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub preview_image_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub default_voice_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub preferred_orientation: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VoiceItem {
    #[serde(default, deserialize_with = "lenient_string")]
    pub voice_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub language: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub gender: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub preview_audio_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StyleItem {
    #[serde(default, deserialize_with = "lenient_string")]
    pub style_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub thumbnail_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub preview_video_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub aspect_ratio: Option<String>,
}
