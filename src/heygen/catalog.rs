//! The catalogue over v3's discovery endpoints (HEYGEN_V3.md §4): people
//! (`/v3/avatars`), their looks (`/v3/avatars/looks`), voices and styles,
//! with the upstream's cursor passed through and answers cached briefly per
//! key (the catalogue changes rarely; a model tends to page back and forth).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{
    client::HeygenClient,
    types::{AvatarGroup, AvatarLook, ListEnvelope, StyleItem, VoiceItem},
};
use crate::backend::{
    ApiKey, Avatar, AvatarQuery, Catalog, CatalogPage, Look, LookQuery, Style, StyleQuery,
    UpstreamError, Voice, VoiceQuery, http::parse_json,
};

/// How long a catalogue answer is reused.
const TTL: Duration = Duration::from_secs(60);
/// Most answers kept (all keys together).
const MAX_ENTRIES: usize = 512;

/// Recent catalogue answers, by key fingerprint and request path.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<(String, String), (Instant, serde_json::Value)>>,
}

impl Cache {
    fn get(&self, key: &ApiKey, path: &str) -> Option<serde_json::Value> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (at, v) = map.get(&(key.fingerprint(), path.to_string()))?;
        (at.elapsed() < TTL).then(|| v.clone())
    }

    fn put(&self, key: &ApiKey, path: &str, value: serde_json::Value) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            (key.fingerprint(), path.to_string()),
            (Instant::now(), value),
        );
    }
}

/// `path?k=v&…` with the set parameters, encoded.
fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

fn same(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(want), Some(have)) => want.trim().eq_ignore_ascii_case(have.trim()),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

impl HeygenClient {
    /// One page of a list endpoint, from the cache when fresh.
    async fn list<T: DeserializeOwned>(
        &self,
        key: &ApiKey,
        path: String,
    ) -> Result<(Vec<T>, Option<String>), UpstreamError> {
        let value = match self.cache.get(key, &path) {
            Some(v) => v,
            None => {
                let url = self.transport.url(&path);
                let (status, bytes) = self.transport.send_idempotent(key, &url).await?;
                let v = parse_json(status, &bytes, key)?;
                self.cache.put(key, &path, v.clone());
                v
            }
        };
        let list: ListEnvelope<T> =
            serde_json::from_value(value).map_err(|e| UpstreamError::Decode {
                status: 200,
                detail: format!("not a list answer: {e}"),
            })?;
        let next = list
            .next_token
            .filter(|t| !t.is_empty() && list.has_more != Some(false));
        Ok((list.data, next))
    }
}

type Page<'a, T> = BoxFuture<'a, Result<CatalogPage<T>, UpstreamError>>;

impl Catalog for HeygenClient {
    fn avatars<'a>(&'a self, key: &'a ApiKey, q: &'a AvatarQuery) -> Page<'a, Avatar> {
        Box::pin(async move {
            let path = with_query(
                "/v3/avatars",
                &[
                    ("ownership", q.ownership.map(|o| o.as_str().to_string())),
                    ("limit", Some(q.limit.clamp(1, 50).to_string())),
                    ("token", q.cursor.clone()),
                ],
            );
            let (items, next_cursor) = self.list::<AvatarGroup>(key, path).await?;
            let items = items
                .into_iter()
                .filter(|g| same(&q.gender, &g.gender))
                .filter_map(|g| {
                    Some(Avatar {
                        group_id: g.id.filter(|i| !i.is_empty())?,
                        name: g.name.unwrap_or_default(),
                        gender: g.gender,
                        looks: g.looks_count.map(|n| n.max(0.0) as u32),
                        preview_image_url: g.preview_image_url,
                        default_voice_id: g.default_voice_id,
                    })
                })
                .collect();
            Ok(CatalogPage { items, next_cursor })
        })
    }

    fn looks<'a>(&'a self, key: &'a ApiKey, q: &'a LookQuery) -> Page<'a, Look> {
        Box::pin(async move {
            let path = with_query(
                "/v3/avatars/looks",
                &[
                    ("group_id", q.group_id.clone()),
                    ("avatar_type", q.avatar_type.clone()),
                    ("ownership", q.ownership.map(|o| o.as_str().to_string())),
                    ("limit", Some(q.limit.clamp(1, 50).to_string())),
                    ("token", q.cursor.clone()),
                ],
            );
            let (items, next_cursor) = self.list::<AvatarLook>(key, path).await?;
            let items = items
                .into_iter()
                .filter(|l| same(&q.gender, &l.gender))
                .filter_map(|l| {
                    Some(Look {
                        avatar_id: l.id.filter(|i| !i.is_empty())?,
                        name: l.name.unwrap_or_default(),
                        group_id: l.group_id,
                        gender: l.gender,
                        avatar_type: l.avatar_type,
                        preferred_orientation: l.preferred_orientation,
                        preview_image_url: l.preview_image_url,
                        default_voice_id: l.default_voice_id,
                    })
                })
                .collect();
            Ok(CatalogPage { items, next_cursor })
        })
    }

    fn voices<'a>(&'a self, key: &'a ApiKey, q: &'a VoiceQuery) -> Page<'a, Voice> {
        Box::pin(async move {
            let path = with_query(
                "/v3/voices",
                &[
                    ("type", q.ownership.map(|o| o.as_str().to_string())),
                    ("language", q.language.clone()),
                    ("gender", q.gender.clone()),
                    ("limit", Some(q.limit.clamp(1, 100).to_string())),
                    ("token", q.cursor.clone()),
                ],
            );
            let (items, next_cursor) = self.list::<VoiceItem>(key, path).await?;
            let items = items
                .into_iter()
                .filter_map(|v| {
                    Some(Voice {
                        voice_id: v.voice_id.filter(|i| !i.is_empty())?,
                        name: v.name.unwrap_or_default(),
                        language: v.language,
                        gender: v.gender,
                        // `s3://` previews cannot be played by anyone.
                        preview_audio_url: v.preview_audio_url.filter(|u| u.starts_with("http")),
                    })
                })
                .collect();
            Ok(CatalogPage { items, next_cursor })
        })
    }

    fn styles<'a>(&'a self, key: &'a ApiKey, q: &'a StyleQuery) -> Page<'a, Style> {
        Box::pin(async move {
            let path = with_query(
                "/v3/video-agents/styles",
                &[
                    ("tag", q.tag.clone()),
                    ("limit", Some(q.limit.clamp(1, 100).to_string())),
                    ("token", q.cursor.clone()),
                ],
            );
            let (items, next_cursor) = self.list::<StyleItem>(key, path).await?;
            let items = items
                .into_iter()
                .filter_map(|s| {
                    Some(Style {
                        style_id: s.style_id.filter(|i| !i.is_empty())?,
                        name: s.name.unwrap_or_default(),
                        tags: s
                            .tags
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect(),
                        aspect_ratio: s.aspect_ratio,
                        thumbnail_url: s.thumbnail_url,
                        preview_video_url: s.preview_video_url,
                    })
                })
                .collect();
            Ok(CatalogPage { items, next_cursor })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_carry_only_set_parameters() {
        assert_eq!(
            with_query("/v3/voices", &[("language", None)]),
            "/v3/voices"
        );
        assert_eq!(
            with_query(
                "/v3/voices",
                &[
                    ("language", Some("English (US)".into())),
                    ("token", Some(" ".into()))
                ]
            ),
            "/v3/voices?language=English+%28US%29"
        );
    }
}
