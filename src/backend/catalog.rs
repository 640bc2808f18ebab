//! The catalogue of avatars (people, then their looks), voices and styles a
//! create may name. Read-only; pages are walked with an opaque cursor that
//! the upstream hands out.

use std::fmt;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiKey, UpstreamError};

/// Public (the upstream's stock) or private (made by this account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Ownership {
    Public,
    Private,
}

impl Ownership {
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Public => "public",
            Ownership::Private => "private",
        }
    }
}

/// One page and the cursor of the next, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A person; each has one or more looks.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(inline)]
pub struct Avatar {
    /// Pass as group_id to list this person's looks.
    pub group_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_voice_id: Option<String>,
}

/// One look of a person: what create_video's avatar_id takes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(inline)]
pub struct Look {
    /// Pass as avatar_id to create_video.
    pub avatar_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_type: Option<String>,
    /// portrait, landscape or square.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_orientation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_voice_id: Option<String>,
}

/// A voice: what create_video's voice_id takes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(inline)]
pub struct Voice {
    pub voice_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_audio_url: Option<String>,
}

/// A visual style: what create_video's style_id takes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(inline)]
pub struct Style {
    pub style_id: String,
    pub name: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_video_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AvatarQuery {
    pub ownership: Option<Ownership>,
    /// Kept client-side: the upstream does not filter groups by gender.
    pub gender: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookQuery {
    pub group_id: Option<String>,
    /// Kept client-side, like [`AvatarQuery::gender`].
    pub gender: Option<String>,
    pub avatar_type: Option<String>,
    pub ownership: Option<Ownership>,
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoiceQuery {
    pub ownership: Option<Ownership>,
    pub language: Option<String>,
    pub gender: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StyleQuery {
    pub tag: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
}

type Page<'a, T> = BoxFuture<'a, Result<CatalogPage<T>, UpstreamError>>;

/// Read-only lookups of what a create may name.
pub trait Catalog: Send + Sync + fmt::Debug {
    fn avatars<'a>(&'a self, key: &'a ApiKey, query: &'a AvatarQuery) -> Page<'a, Avatar>;
    fn looks<'a>(&'a self, key: &'a ApiKey, query: &'a LookQuery) -> Page<'a, Look>;
    fn voices<'a>(&'a self, key: &'a ApiKey, query: &'a VoiceQuery) -> Page<'a, Voice>;
    fn styles<'a>(&'a self, key: &'a ApiKey, query: &'a StyleQuery) -> Page<'a, Style>;
}
