//! `list_avatars`, `list_voices`, `list_styles`: what create_video's
//! `avatar_id`, `voice_id` and `style_id` may name, from the backend's
//! catalogue (HeyGen's own API). Read-only and small by default: a compact
//! line per item for the model, the items as `structuredContent`, and the
//! cursor of the next page when there is one.

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    VideoServer,
    view::{error_result, structured_result},
};
use crate::backend::{
    ApiKey, Avatar, AvatarQuery, Look, LookQuery, Operation, Ownership, Style, StyleQuery, Voice,
    VoiceQuery,
};

/// Items per page unless the caller asks for more.
pub const DEFAULT_LIMIT: u32 = 10;
const MAX_AVATAR_LIMIT: u32 = 50;
const MAX_LIST_LIMIT: u32 = 100;
const MAX_CURSOR_CHARS: usize = 2048;
const MAX_FILTER_CHARS: usize = 100;

/// Arguments of `list_avatars`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAvatarsParams {
    /// A person's group_id: list that person's looks (their avatar_id values).
    /// Omit to list people.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub group_id: Option<String>,
    /// e.g. "female" or "male".
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub gender: Option<String>,
    /// public (stock) or private (this account's own).
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// Looks only: studio_avatar, digital_twin or photo_avatar.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub avatar_type: Option<String>,
    /// 1–50, default 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// next_cursor of the previous page.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub cursor: Option<String>,
}

/// Arguments of `list_voices`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListVoicesParams {
    /// e.g. "English", "Spanish".
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub language: Option<String>,
    /// e.g. "female" or "male".
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub gender: Option<String>,
    /// public (stock) or private (this account's own).
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// 1–100, default 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// next_cursor of the previous page.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub cursor: Option<String>,
}

/// Arguments of `list_styles`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListStylesParams {
    /// e.g. cinematic, retro-tech, iconic-artist, pop-culture, handmade, print.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub tag: Option<String>,
    /// 1–100, default 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// next_cursor of the previous page.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub cursor: Option<String>,
}

/// The result of `list_avatars`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AvatarListing {
    /// People (without group_id).
    pub people: Vec<Avatar>,
    /// One person's looks (with group_id).
    pub looks: Vec<Look>,
    /// Pass as cursor for more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The result of `list_voices`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VoiceListing {
    pub voices: Vec<Voice>,
    /// Pass as cursor for more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The result of `list_styles`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StyleListing {
    pub styles: Vec<Style>,
    /// Pass as cursor for more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn invalid(msg: String) -> CallToolResult {
    error_result(format!("Invalid arguments: {msg}"))
}

/// `limit` within 1..=max, default [`DEFAULT_LIMIT`].
fn limit(v: Option<u32>, max: u32) -> Result<u32, CallToolResult> {
    match v {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(invalid(format!(
            "limit is {n}; use 1 to {max} (default {DEFAULT_LIMIT}), and cursor for more."
        ))),
    }
}

/// A filter or id: trimmed, blank = unset, bounded, printable.
fn text(name: &str, v: &Option<String>, max: usize) -> Result<Option<String>, CallToolResult> {
    let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(invalid(format!(
            "{name} is longer than {max} characters ({:?}).",
            super::excerpt(v)
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(format!("{name} contains control characters.")));
    }
    Ok(Some(v.to_string()))
}

fn cursor(v: &Option<String>) -> Result<Option<String>, CallToolResult> {
    text("cursor", v, MAX_CURSOR_CHARS).map_err(|_| {
        invalid(
            "cursor is not one this server handed out: pass next_cursor from the previous \
             page exactly, or omit it to start over."
                .into(),
        )
    })
}

fn more(next: &Option<String>, tool: &str, shown: usize) -> String {
    match next {
        Some(c) => format!(
            "\nShowing {shown}; more exist: call {tool} again with cursor {c:?} (same filters)."
        ),
        None if shown == 0 => String::new(),
        None => "\nThat is all.".to_string(),
    }
}

fn opt(label: &str, v: &Option<String>) -> String {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| format!(", {label}{s}"))
        .unwrap_or_default()
}

impl VideoServer {
    /// The catalogue and the key it is read with: the server's catalogue key
    /// beside the gateway, else the caller's own key.
    fn catalog_key(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(std::sync::Arc<dyn crate::backend::Catalog>, ApiKey), CallToolResult> {
        let Some(access) = &self.state.catalog else {
            return Err(error_result(
                "This server has no catalogue of avatars, voices and styles: omit avatar_id, \
                 voice_id and style_id and the agent chooses.",
            ));
        };
        let key = match &access.key {
            Some(k) => k.clone(),
            None => self
                .resolve_key(ctx)
                .map_err(|e| error_result(e.user_message(Operation::Catalog)))?,
        };
        Ok((access.catalog.clone(), key))
    }
}

#[tool_router(router = catalog_router, vis = "pub(crate)")]
impl VideoServer {
    /// Browse HeyGen avatars: people first, then with group_id that person's
    /// looks, whose avatar_id create_video takes. Use only when the user asks for
    /// a particular kind of presenter; otherwise omit avatar_id and the agent
    /// picks. Small pages; cursor for more. Free.
    #[tool(
        output_schema = schema_for_output::<AvatarListing>(),
        annotations(
            title = "List HeyGen avatars",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_avatars(
        &self,
        Parameters(p): Parameters<ListAvatarsParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let limit = limit(p.limit, MAX_AVATAR_LIMIT)?;
        let group_id = text("group_id", &p.group_id, 256)?;
        let gender = text("gender", &p.gender, MAX_FILTER_CHARS)?;
        let avatar_type = text("avatar_type", &p.avatar_type, MAX_FILTER_CHARS)?;
        let cursor = cursor(&p.cursor)?;
        if group_id.is_none() && avatar_type.is_some() {
            return Err(invalid(
                "avatar_type filters looks: pass it together with a group_id (from a first \
                 list_avatars call without group_id)."
                    .into(),
            ));
        }
        let (catalog, key) = self.catalog_key(&ctx)?;
        let failed =
            |e: crate::backend::UpstreamError| error_result(e.user_message(Operation::Catalog));
        let listing = match &group_id {
            None => {
                let q = AvatarQuery {
                    ownership: p.ownership,
                    gender,
                    limit,
                    cursor,
                };
                let page = catalog.avatars(&key, &q).await.map_err(failed)?;
                AvatarListing {
                    people: page.items,
                    looks: Vec::new(),
                    next_cursor: page.next_cursor,
                }
            }
            Some(_) => {
                let q = LookQuery {
                    group_id: group_id.clone(),
                    gender,
                    avatar_type,
                    ownership: p.ownership,
                    limit,
                    cursor,
                };
                let page = catalog.looks(&key, &q).await.map_err(failed)?;
                AvatarListing {
                    people: Vec::new(),
                    looks: page.items,
                    next_cursor: page.next_cursor,
                }
            }
        };
        let mut s = String::new();
        if group_id.is_none() {
            s.push_str(&format!("{} people:", listing.people.len()));
            for a in &listing.people {
                s.push_str(&format!(
                    "\n- {}: group_id {}{}{}",
                    a.name,
                    a.group_id,
                    opt("", &a.gender),
                    a.looks.map(|n| format!(", {n} looks")).unwrap_or_default()
                ));
            }
            if !listing.people.is_empty() {
                s.push_str(
                    "\nNext: list_avatars with a group_id shows that person's looks (avatar_id).",
                );
            }
        } else {
            s.push_str(&format!("{} looks:", listing.looks.len()));
            for l in &listing.looks {
                s.push_str(&format!(
                    "\n- {}: avatar_id {}{}{}{}",
                    l.name,
                    l.avatar_id,
                    opt("", &l.gender),
                    opt("", &l.preferred_orientation),
                    opt("default voice_id ", &l.default_voice_id)
                ));
            }
            if !listing.looks.is_empty() {
                s.push_str("\nPass an avatar_id to create_video (its default voice fits it).");
            }
        }
        let shown = listing.people.len() + listing.looks.len();
        if shown == 0 {
            s.push_str("\nNothing matches: loosen the filters, or omit avatar_id and let the agent choose.");
        }
        s.push_str(&more(&listing.next_cursor, "list_avatars", shown));
        Ok(structured_result(s, &listing))
    }

    /// Browse HeyGen voices (filter by language, gender); voice_id goes to
    /// create_video. Use only when the user asks for a kind of voice or
    /// language; otherwise omit voice_id. Small pages; cursor for more. Free.
    #[tool(
        output_schema = schema_for_output::<VoiceListing>(),
        annotations(
            title = "List HeyGen voices",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_voices(
        &self,
        Parameters(p): Parameters<ListVoicesParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let q = VoiceQuery {
            ownership: p.ownership,
            language: text("language", &p.language, MAX_FILTER_CHARS)?,
            gender: text("gender", &p.gender, MAX_FILTER_CHARS)?,
            limit: limit(p.limit, MAX_LIST_LIMIT)?,
            cursor: cursor(&p.cursor)?,
        };
        let (catalog, key) = self.catalog_key(&ctx)?;
        let page = catalog
            .voices(&key, &q)
            .await
            .map_err(|e| error_result(e.user_message(Operation::Catalog)))?;
        let mut s = format!("{} voices:", page.items.len());
        for v in &page.items {
            s.push_str(&format!(
                "\n- {}: voice_id {}{}{}",
                v.name,
                v.voice_id,
                opt("", &v.language),
                opt("", &v.gender)
            ));
        }
        if page.items.is_empty() {
            s.push_str(
                "\nNothing matches: loosen the filters, or omit voice_id and let the agent choose.",
            );
        }
        s.push_str(&more(&page.next_cursor, "list_voices", page.items.len()));
        let listing = VoiceListing {
            voices: page.items,
            next_cursor: page.next_cursor,
        };
        Ok(structured_result(s, &listing))
    }

    /// Browse HeyGen Video Agent styles (filter by tag); style_id goes to
    /// create_video. Use only when the user asks for a look or style;
    /// otherwise omit style_id. Small pages; cursor for more. Free.
    #[tool(
        output_schema = schema_for_output::<StyleListing>(),
        annotations(
            title = "List HeyGen styles",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_styles(
        &self,
        Parameters(p): Parameters<ListStylesParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let q = StyleQuery {
            tag: text("tag", &p.tag, MAX_FILTER_CHARS)?,
            limit: limit(p.limit, MAX_LIST_LIMIT)?,
            cursor: cursor(&p.cursor)?,
        };
        let (catalog, key) = self.catalog_key(&ctx)?;
        let page = catalog
            .styles(&key, &q)
            .await
            .map_err(|e| error_result(e.user_message(Operation::Catalog)))?;
        let mut s = format!("{} styles:", page.items.len());
        for st in &page.items {
            s.push_str(&format!(
                "\n- {}: style_id {}{}{}",
                st.name,
                st.style_id,
                if st.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", st.tags.join(", "))
                },
                opt("", &st.aspect_ratio)
            ));
        }
        if page.items.is_empty() {
            s.push_str("\nNothing matches: try another tag, or omit style_id.");
        }
        s.push_str(&more(&page.next_cursor, "list_styles", page.items.len()));
        let listing = StyleListing {
            styles: page.items,
            next_cursor: page.next_cursor,
        };
        Ok(structured_result(s, &listing))
    }
}
