//! The catalogue: avatar groups and their looks, voices and Video Agent
//! styles; the same in every simulator process. Lists page with `limit` and
//! an opaque `token` (the `next_token` of the page before, bound to the list
//! and its filters); a bad `limit` or `token` is a 400 naming it.
//!
//! - 12 public and 2 private avatar groups, 2–5 looks each (47 looks);
//!   `GET /v3/avatars/looks?group_id=` with an unknown group is a 404
//!   `not_found` (param `group_id`);
//! - 30 public voices in 9 languages and 2 private ones; one public voice
//!   has no `preview_audio_url` (null), as some real ones do;
//! - 17 styles over the tags cinematic, retro-tech, iconic-artist,
//!   pop-culture, handmade, print; an unknown `tag` is a 400.
//!
//! Preview URLs point at this simulator (`/v3-previews/…`), which answers
//! them with a PNG, the sample MP4 or a short WAV.

use std::{ops::Range, sync::Arc, sync::OnceLock};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    super::SAMPLE_MP4, SimState, authorize, data, invalid, not_found, record, sign, videos::PNG,
};

const DEFAULT_LIMIT: usize = 20;
const MAX_AVATAR_LIMIT: usize = 50;
const MAX_VOICE_LIMIT: usize = 100;
const MAX_STYLE_LIMIT: usize = 100;

const LIST_AVATARS: u8 = 1;
const LIST_LOOKS: u8 = 2;
const LIST_VOICES: u8 = 3;
const LIST_STYLES: u8 = 4;

pub(super) const STYLE_TAGS: &[&str] = &[
    "cinematic",
    "retro-tech",
    "iconic-artist",
    "pop-culture",
    "handmade",
    "print",
];
const AVATAR_TYPES: &[&str] = &["studio_avatar", "digital_twin", "photo_avatar"];

#[derive(Debug)]
pub(super) struct Voice {
    pub id: String,
    name: &'static str,
    language: &'static str,
    gender: &'static str,
    private: bool,
    support_pause: bool,
    support_locale: bool,
    engines: &'static [&'static str],
    has_preview: bool,
}

#[derive(Debug)]
struct Group {
    id: String,
    name: &'static str,
    gender: &'static str,
    private: bool,
    default_voice_id: String,
    created_at: u64,
    looks: Range<usize>,
}

#[derive(Debug)]
pub(super) struct Look {
    pub id: String,
    name: String,
    avatar_type: &'static str,
    group: usize,
    orientation: &'static str,
    width: u32,
    height: u32,
    engines: &'static [&'static str],
    tags: &'static [&'static str],
}

#[derive(Debug)]
pub(super) struct Style {
    pub id: String,
    name: &'static str,
    tags: &'static [&'static str],
    aspect_ratio: &'static str,
}

#[derive(Debug)]
struct Catalog {
    voices: Vec<Voice>,
    groups: Vec<Group>,
    looks: Vec<Look>,
    styles: Vec<Style>,
}

/// 32 hex digits, fixed by `seed`.
fn hex_id(seed: &str) -> String {
    Sha256::digest(seed.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const PUBLIC_VOICES: &[(&str, &str, &str)] = &[
    ("Allison", "English", "female"),
    ("Brian", "English", "male"),
    ("Claire", "English", "female"),
    ("David", "English", "male"),
    ("Emma", "English", "female"),
    ("Frank", "English", "male"),
    ("Grace", "English", "female"),
    ("Henry", "English", "male"),
    ("Isla", "English", "female"),
    ("Jack", "English", "male"),
    ("Lucía", "Spanish", "female"),
    ("Mateo", "Spanish", "male"),
    ("Valentina", "Spanish", "female"),
    ("Diego", "Spanish", "male"),
    ("Camille", "French", "female"),
    ("Louis", "French", "male"),
    ("Manon", "French", "female"),
    ("Hannah", "German", "female"),
    ("Lukas", "German", "male"),
    ("Mia", "German", "female"),
    ("Beatriz", "Portuguese", "female"),
    ("Rafael", "Portuguese", "male"),
    ("Yui", "Japanese", "female"),
    ("Haruto", "Japanese", "male"),
    ("Aarohi", "Hindi", "female"),
    ("Arjun", "Hindi", "male"),
    ("Xiaomei", "Chinese", "female"),
    ("Wei", "Chinese", "male"),
    ("Giulia", "Italian", "female"),
    ("Marco", "Italian", "male"),
];
const PRIVATE_VOICES: &[(&str, &str, &str)] = &[
    ("My Voice Clone", "English", "male"),
    ("Brand Narrator", "English", "female"),
];
/// The public voice without a preview.
const NO_PREVIEW: &str = "Wei";

const PUBLIC_GROUPS: &[(&str, &str)] = &[
    ("Abigail", "female"),
    ("Adrian", "male"),
    ("Amelia", "female"),
    ("Brandon", "male"),
    ("Chloe", "female"),
    ("Daniel", "male"),
    ("Elena", "female"),
    ("Marcus", "male"),
    ("Priya", "female"),
    ("Kenji", "male"),
    ("Sofia", "female"),
    ("Tyrone", "male"),
];
/// Private groups: name, gender, their voice (a private one), look count.
const PRIVATE_GROUPS: &[(&str, &str, &str, usize)] = &[
    ("My Digital Twin", "male", "My Voice Clone", 3),
    ("Brand Presenter", "female", "Brand Narrator", 2),
];

/// Look kinds: slug, label, orientation, width, height, tags.
type LookKind = (
    &'static str,
    &'static str,
    &'static str,
    u32,
    u32,
    &'static [&'static str],
);
const LOOK_KINDS: &[LookKind] = &[
    (
        "office_front",
        "Office, front",
        "landscape",
        1920,
        1080,
        &["professional", "indoor"],
    ),
    (
        "casual_sofa",
        "Casual, sofa",
        "portrait",
        1080,
        1920,
        &["casual", "indoor"],
    ),
    (
        "standing_outdoor",
        "Standing, outdoor",
        "landscape",
        1920,
        1080,
        &["outdoor"],
    ),
    (
        "studio_square",
        "Studio, square",
        "square",
        1080,
        1080,
        &["studio"],
    ),
    (
        "expressive_close",
        "Expressive close-up",
        "portrait",
        1080,
        1920,
        &["expressive"],
    ),
];

const STYLES: &[(&str, &[&str])] = &[
    ("Blockbuster Trailer", &["cinematic"]),
    ("Golden Hour Documentary", &["cinematic"]),
    ("Film Noir", &["cinematic", "print"]),
    ("Epic Aerial", &["cinematic"]),
    ("Synthwave Terminal", &["retro-tech"]),
    ("8-bit Arcade", &["retro-tech", "pop-culture"]),
    ("VHS Tape", &["retro-tech"]),
    ("Starry Strokes", &["iconic-artist"]),
    ("Pop Art Dots", &["iconic-artist", "pop-culture"]),
    ("Bauhaus Shapes", &["iconic-artist", "print"]),
    ("Comic Panel", &["pop-culture", "print"]),
    ("Late Night Talk Show", &["pop-culture"]),
    ("Paper Cutout", &["handmade"]),
    ("Claymation", &["handmade"]),
    ("Chalkboard", &["handmade"]),
    ("Newspaper Front Page", &["print"]),
    ("Risograph Poster", &["print", "handmade"]),
];
const ASPECT_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];

fn build() -> Catalog {
    let voice = |(name, language, gender): (&'static str, &'static str, &'static str),
                 i: usize,
                 private: bool| Voice {
        id: hex_id(&format!("voice:{name}")),
        name,
        language,
        gender,
        private,
        support_pause: !matches!(language, "Chinese" | "Japanese"),
        support_locale: matches!(language, "English" | "Spanish" | "French" | "Portuguese"),
        engines: if i.is_multiple_of(2) {
            &["starfish", "elevenlabs"]
        } else {
            &["starfish"]
        },
        has_preview: name != NO_PREVIEW,
    };
    let mut voices: Vec<Voice> = PUBLIC_VOICES
        .iter()
        .enumerate()
        .map(|(i, v)| voice(*v, i, false))
        .collect();
    voices.extend(
        PRIVATE_VOICES
            .iter()
            .enumerate()
            .map(|(i, v)| voice(*v, i, true)),
    );
    let english = |gender: &str| -> Vec<String> {
        voices
            .iter()
            .filter(|v| !v.private && v.language == "English" && v.gender == gender)
            .map(|v| v.id.clone())
            .collect()
    };
    let (female, male) = (english("female"), english("male"));
    let voice_named = |name: &str| {
        voices
            .iter()
            .find(|v| v.name == name)
            .map_or_else(String::new, |v| v.id.clone())
    };

    let mut groups = Vec::new();
    let mut looks = Vec::new();
    let mut add_group = |name: &'static str,
                         gender: &'static str,
                         private: bool,
                         default_voice_id: String,
                         count: usize| {
        let g = groups.len();
        let slug = name.replace(' ', "_");
        let start = looks.len();
        for (k, (look, label, orientation, width, height, tags)) in
            LOOK_KINDS.iter().take(count).enumerate()
        {
            let avatar_type = match (private, k) {
                (true, 0 | 1) => "digital_twin",
                (_, 2) if private => "photo_avatar",
                (false, 3) => "photo_avatar",
                _ => "studio_avatar",
            };
            looks.push(Look {
                id: format!("{slug}_{look}"),
                name: format!("{name} - {label}"),
                avatar_type,
                group: g,
                orientation,
                width: *width,
                height: *height,
                engines: if avatar_type == "photo_avatar" {
                    &["avatar_iv"]
                } else {
                    &["avatar_iv", "avatar_iii"]
                },
                tags,
            });
        }
        groups.push(Group {
            id: hex_id(&format!("group:{name}")),
            name,
            gender,
            private,
            default_voice_id,
            created_at: 1_735_689_600 + 7 * 86_400 * g as u64,
            looks: start..looks.len(),
        });
    };
    for (i, (name, gender)) in PUBLIC_GROUPS.iter().enumerate() {
        let pool = if *gender == "female" { &female } else { &male };
        let default_voice = pool
            .get(i / 2 % pool.len().max(1))
            .cloned()
            .unwrap_or_default();
        add_group(name, gender, false, default_voice, 2 + i % 4);
    }
    for (name, gender, voice, count) in PRIVATE_GROUPS {
        add_group(name, gender, true, voice_named(voice), *count);
    }

    let styles = STYLES
        .iter()
        .enumerate()
        .map(|(i, (name, tags))| Style {
            id: hex_id(&format!("style:{name}")),
            name,
            tags,
            aspect_ratio: ASPECT_RATIOS[i % ASPECT_RATIOS.len()],
        })
        .collect();
    Catalog {
        voices,
        groups,
        looks,
        styles,
    }
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build)
}

pub(super) fn look_by_id(id: &str) -> Option<&'static Look> {
    catalog().looks.iter().find(|l| l.id == id)
}

pub(super) fn voice_by_id(id: &str) -> Option<&'static Voice> {
    catalog().voices.iter().find(|v| v.id == id)
}

pub(super) fn style_by_id(id: &str) -> Option<&'static Style> {
    catalog().styles.iter().find(|s| s.id == id)
}

fn preview(base: &str, kind: &str, id: &str, ext: &str) -> String {
    format!("{base}/v3-previews/{kind}/{id}.{ext}")
}

fn group_json(base: &str, g: &Group) -> Value {
    let mut v = json!({
        "id": g.id,
        "name": g.name,
        "gender": g.gender,
        "preview_image_url": preview(base, "avatars", &g.id, "png"),
        "preview_video_url": preview(base, "avatars", &g.id, "mp4"),
        "default_voice_id": g.default_voice_id,
        "looks_count": g.looks.len(),
        "created_at": g.created_at,
    });
    if g.private {
        v["status"] = json!("completed");
        v["consent_status"] = json!("approved");
        v["error"] = Value::Null;
    }
    v
}

fn look_json(base: &str, l: &Look) -> Value {
    let g = &catalog().groups[l.group];
    json!({
        "id": l.id,
        "name": l.name,
        "avatar_type": l.avatar_type,
        "group_id": g.id,
        "gender": g.gender,
        "preview_image_url": preview(base, "looks", &l.id, "png"),
        "preview_video_url": preview(base, "looks", &l.id, "mp4"),
        "default_voice_id": g.default_voice_id,
        "preferred_orientation": l.orientation,
        "image_width": l.width,
        "image_height": l.height,
        "supported_api_engines": l.engines,
        "tags": l.tags,
        "status": "completed",
    })
}

fn voice_json(base: &str, v: &Voice) -> Value {
    json!({
        "voice_id": v.id,
        "name": v.name,
        "language": v.language,
        "gender": v.gender,
        "preview_audio_url": v.has_preview.then(|| preview(base, "voices", &v.id, "wav")),
        "support_pause": v.support_pause,
        "support_locale": v.support_locale,
        "type": if v.private { "private" } else { "public" },
    })
}

fn style_json(base: &str, s: &Style) -> Value {
    json!({
        "style_id": s.id,
        "name": s.name,
        "tags": s.tags,
        "thumbnail_url": preview(base, "styles", &s.id, "png"),
        "preview_video_url": preview(base, "styles", &s.id, "mp4"),
        "aspect_ratio": s.aspect_ratio,
    })
}

/// A request's query parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(uri: &Uri) -> Params {
        Params(
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `name`; an empty one counts as absent.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A value that must be one of `allowed` (case-insensitive), lowercased.
    #[allow(clippy::result_large_err)]
    fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Response> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.iter().any(|a| a.eq_ignore_ascii_case(v)) => {
                Ok(Some(v.to_ascii_lowercase()))
            }
            Some(v) => Err(invalid(
                name,
                &format!("{name} '{v}' is not one of {}", allowed.join(", ")),
            )),
        }
    }
}

/// The item range of a page and the offset of the next one, if any.
pub(super) fn window(total: usize, offset: usize, limit: usize) -> (Range<usize>, Option<usize>) {
    let start = offset.min(total);
    let end = start.saturating_add(limit).min(total);
    (start..end, (end < total).then_some(end))
}

/// One page of `items`, as `limit` and `token` ask.
fn page(list: u8, filters: &str, q: &Params, max: usize, items: Vec<Value>) -> Response {
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT.min(max),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return invalid(
                    "limit",
                    &format!("limit must be an integer from 1 to {max}"),
                );
            }
        },
    };
    let offset = match q.get("token") {
        None => 0,
        Some(t) => match sign::open_page_token(t, list, filters) {
            Some(o) if o < items.len() => o,
            _ => {
                return invalid(
                    "token",
                    "token is not a next_token of this list with these filters; start again without it",
                );
            }
        },
    };
    let (range, next) = window(items.len(), offset, limit);
    let mut items = items;
    let shown: Vec<Value> = items.drain(range).collect();
    Json(json!({
        "data": shown,
        "has_more": next.is_some(),
        "next_token": next.map(|o| sign::page_token(list, filters, o)),
    }))
    .into_response()
}

#[allow(clippy::result_large_err)]
fn ownership(q: &Params) -> Result<Option<bool>, Response> {
    Ok(q.one_of("ownership", &["public", "private"])?
        .map(|o| o == "private"))
}

/// `GET /v3/avatars?ownership=&limit=&token=`: avatar groups.
pub(super) async fn avatars(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "avatars", "GET", &uri, &headers, None);
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let q = Params::of(&uri);
    let private = match ownership(&q) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let items = catalog()
        .groups
        .iter()
        .filter(|g| private.is_none_or(|p| g.private == p))
        .map(|g| group_json(&state.base_url, g))
        .collect();
    page(
        LIST_AVATARS,
        &format!("ownership={private:?}"),
        &q,
        MAX_AVATAR_LIMIT,
        items,
    )
}

/// `GET /v3/avatars/looks?group_id=&avatar_type=&ownership=&limit=&token=`.
pub(super) async fn looks(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "looks", "GET", &uri, &headers, None);
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let q = Params::of(&uri);
    let (private, avatar_type) = match (ownership(&q), q.one_of("avatar_type", AVATAR_TYPES)) {
        (Ok(o), Ok(t)) => (o, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let c = catalog();
    let group = match q.get("group_id") {
        None => None,
        Some(id) => match c.groups.iter().position(|g| g.id == id) {
            Some(g) => Some(g),
            None => {
                return super::error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("Avatar group '{id}' not found; use an id from GET /v3/avatars"),
                    Some("group_id"),
                );
            }
        },
    };
    let items = c
        .looks
        .iter()
        .filter(|l| group.is_none_or(|g| l.group == g))
        .filter(|l| private.is_none_or(|p| c.groups[l.group].private == p))
        .filter(|l| avatar_type.as_deref().is_none_or(|t| l.avatar_type == t))
        .map(|l| look_json(&state.base_url, l))
        .collect();
    let filters = format!("group={group:?};ownership={private:?};type={avatar_type:?}");
    page(LIST_LOOKS, &filters, &q, MAX_AVATAR_LIMIT, items)
}

/// `GET /v3/avatars/looks/{look_id}`.
pub(super) async fn look(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "looks", "GET", &uri, &headers, None);
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match look_by_id(&id) {
        Some(l) => data(look_json(&state.base_url, l)),
        None => not_found("avatar_not_found", &format!("Avatar look '{id}' not found")),
    }
}

/// `GET /v3/voices?type=&language=&gender=&engine=&limit=&token=`.
pub(super) async fn voices(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "voices", "GET", &uri, &headers, None);
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let q = Params::of(&uri);
    let private = match q.one_of("type", &["public", "private"]) {
        Ok(t) => t.is_some_and(|t| t == "private"),
        Err(r) => return r,
    };
    let lower = |name: &str| q.get(name).map(str::to_lowercase);
    let (language, gender, engine) = (lower("language"), lower("gender"), lower("engine"));
    let items = catalog()
        .voices
        .iter()
        .filter(|v| v.private == private)
        .filter(|v| {
            language
                .as_deref()
                .is_none_or(|l| v.language.to_lowercase() == l)
        })
        .filter(|v| gender.as_deref().is_none_or(|g| v.gender == g))
        .filter(|v| engine.as_deref().is_none_or(|e| v.engines.contains(&e)))
        .map(|v| voice_json(&state.base_url, v))
        .collect();
    let filters =
        format!("private={private};language={language:?};gender={gender:?};engine={engine:?}");
    page(LIST_VOICES, &filters, &q, MAX_VOICE_LIMIT, items)
}

/// `GET /v3/video-agents/styles?tag=&limit=&token=`.
pub(super) async fn styles(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "styles", "GET", &uri, &headers, None);
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let q = Params::of(&uri);
    let tag = match q.one_of("tag", STYLE_TAGS) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let items = catalog()
        .styles
        .iter()
        .filter(|s| tag.as_deref().is_none_or(|t| s.tags.contains(&t)))
        .map(|s| style_json(&state.base_url, s))
        .collect();
    page(
        LIST_STYLES,
        &format!("tag={tag:?}"),
        &q,
        MAX_STYLE_LIMIT,
        items,
    )
}

/// Half a second of 8 kHz mono silence.
fn wav() -> &'static [u8] {
    static WAV: OnceLock<Vec<u8>> = OnceLock::new();
    WAV.get_or_init(|| {
        const SAMPLES: u32 = 4000;
        let mut w = Vec::with_capacity(44 + SAMPLES as usize);
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + SAMPLES).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes()); // PCM
        w.extend_from_slice(&1u16.to_le_bytes()); // mono
        w.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
        w.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
        w.extend_from_slice(&1u16.to_le_bytes()); // block align
        w.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
        w.extend_from_slice(b"data");
        w.extend_from_slice(&SAMPLES.to_le_bytes());
        w.resize(44 + SAMPLES as usize, 128);
        w
    })
}

/// `GET /v3-previews/{kind}/{id}.{png|mp4|wav}`: catalogue previews, no key needed.
pub(super) async fn preview_file(
    State(state): State<Arc<SimState>>,
    Path((_kind, file)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "preview", "GET", &uri, &headers, None);
    let (mime, body): (&str, &'static [u8]) = match file.rsplit_once('.').map(|(_, e)| e) {
        Some("png") => ("image/png", PNG),
        Some("mp4") => ("video/mp4", SAMPLE_MP4),
        Some("wav") => ("audio/wav", wav()),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, mime)], body).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn windows_cover_every_item_once() {
        for total in [0, 1, 19, 20, 21, 47, 100] {
            for limit in [1, 7, 20, 50] {
                let mut seen = Vec::new();
                let mut offset = 0;
                let mut pages = 0;
                loop {
                    let (range, next) = window(total, offset, limit);
                    assert!(range.len() <= limit);
                    seen.extend(range);
                    pages += 1;
                    match next {
                        Some(n) => offset = n,
                        None => break,
                    }
                }
                assert_eq!(seen, (0..total).collect::<Vec<_>>(), "{total}/{limit}");
                assert_eq!(pages, total.div_ceil(limit).max(1), "{total}/{limit}");
            }
        }
        assert_eq!(window(5, 9, 2), (5..5, None));
    }

    #[test]
    fn the_catalogue_is_consistent() {
        let c = catalog();
        assert_eq!(c.groups.iter().filter(|g| !g.private).count(), 12);
        assert_eq!(c.groups.iter().filter(|g| g.private).count(), 2);
        assert_eq!(c.voices.iter().filter(|v| !v.private).count(), 30);
        assert!(c.styles.len() >= 15);
        for g in &c.groups {
            assert!((2..=5).contains(&g.looks.len()), "{}", g.name);
            assert!(voice_by_id(&g.default_voice_id).is_some(), "{}", g.name);
            for l in &c.looks[g.looks.clone()] {
                assert_eq!(&c.groups[l.group].id, &g.id);
            }
        }
        let unique = |ids: Vec<&String>| ids.len() == ids.iter().collect::<HashSet<_>>().len();
        assert!(unique(c.looks.iter().map(|l| &l.id).collect()));
        assert!(unique(c.voices.iter().map(|v| &v.id).collect()));
        assert!(unique(c.groups.iter().map(|g| &g.id).collect()));
        assert!(unique(c.styles.iter().map(|s| &s.id).collect()));
        for s in &c.styles {
            assert!(s.tags.iter().all(|t| STYLE_TAGS.contains(t)), "{}", s.name);
        }
        for t in STYLE_TAGS {
            assert!(c.styles.iter().any(|s| s.tags.contains(t)), "{t}");
        }
        for kind in AVATAR_TYPES {
            assert!(c.looks.iter().any(|l| l.avatar_type == *kind), "{kind}");
        }
    }

    #[test]
    fn the_preview_audio_is_a_wav() {
        let w = wav();
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..12], b"WAVE");
        assert_eq!(w.len(), 44 + 4000);
    }
}
