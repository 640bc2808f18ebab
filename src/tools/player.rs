//! The inline video player (MCP Apps, `io.modelcontextprotocol/ui`): one
//! self-contained HTML view served as a `ui://` resource, which hosts that
//! render MCP Apps open beside the results of the tools that point at it.
//! Hosts without MCP Apps ignore the `_meta` and show the text as before.

use rmcp::model::{MetaObject, ReadResourceResult, Resource, ResourceContents};
use serde_json::json;

/// The view's resource URI, named in the tools' `_meta.ui.resourceUri`.
pub const PLAYER_URI: &str = "ui://heygen-video-mcp/player.html";

/// The MIME type MCP Apps hosts expect of an HTML view.
pub const MCP_APP_MIME: &str = "text/html;profile=mcp-app";

/// Tools whose results the player shows.
pub const PLAYER_TOOLS: &[&str] = &["create_video", "get_video_status"];

/// The view itself: inline script and style, no external code.
pub const PLAYER_HTML: &str = include_str!("../../assets/player.html");

/// Origins videos are served from when `HEYGEN_MEDIA_ORIGINS` is not set,
/// beside the API base's own origin: HeyGen's file hosts.
pub const DEFAULT_MEDIA_ORIGINS: &[&str] = &["https://*.heygen.ai", "https://*.heygen.com"];

/// `_meta` of a tool whose results the player shows.
pub fn tool_meta() -> MetaObject {
    let mut meta = MetaObject::new();
    meta.0
        .insert("ui".into(), json!({ "resourceUri": PLAYER_URI }));
    meta
}

/// `_meta.ui` of the resource: the media origins the view may load from
/// (`csp.resourceDomains`; the view makes no fetches, so no `connectDomains`).
fn resource_meta(media_origins: &[String]) -> MetaObject {
    let mut meta = MetaObject::new();
    meta.0.insert(
        "ui".into(),
        json!({
            "csp": { "resourceDomains": media_origins },
            "prefersBorder": true,
        }),
    );
    meta
}

/// The entry of `resources/list`.
pub fn resource(media_origins: &[String]) -> Resource {
    Resource::new(PLAYER_URI, "video-player")
        .with_title("HeyGen video player")
        .with_description(
            "Shows a video's render progress, then plays the finished MP4 (MCP Apps view of \
             create_video and get_video_status).",
        )
        .with_mime_type(MCP_APP_MIME)
        .with_size(PLAYER_HTML.len() as u64)
        .with_meta(resource_meta(media_origins))
}

/// The answer of `resources/read` for [`PLAYER_URI`].
pub fn read(media_origins: &[String]) -> ReadResourceResult {
    ReadResourceResult::new(vec![
        ResourceContents::TextResourceContents {
            uri: PLAYER_URI.into(),
            mime_type: Some(MCP_APP_MIME.into()),
            text: PLAYER_HTML.into(),
            meta: None,
        }
        .with_meta(resource_meta(media_origins)),
    ])
}

/// Checks one media origin (`https://host[:port]`, `https://*.host`, or
/// `http://` for local testing) and returns it without a trailing slash.
pub fn normalize_media_origin(raw: &str) -> Result<String, String> {
    let o = raw.trim().trim_end_matches('/');
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "media origin {:?} must start with https:// (e.g. https://cdn.example.com)",
                super::excerpt(raw)
            )
        })?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = {
        let h = host.strip_prefix("*.").unwrap_or(host);
        !h.is_empty()
            && !h.starts_with('.')
            && !h.ends_with('.')
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if !host_ok || !port_ok {
        return Err(format!(
            "media origin {:?} is not an origin: use scheme://host[:port] with no path, e.g. \
             https://cdn.example.com or https://*.example.com",
            super::excerpt(raw)
        ));
    }
    Ok(o.to_ascii_lowercase())
}

/// The origin (`scheme://host[:port]`) of a URL, if it has one.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    match u.origin() {
        url::Origin::Tuple(..) => Some(u.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// The media origins in force: the configured ones, else the API base's
/// origin plus [`DEFAULT_MEDIA_ORIGINS`]; no duplicates.
pub fn media_origins(configured: &[String], api_base: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |o: String| {
        if !out.contains(&o) {
            out.push(o);
        }
    };
    if configured.is_empty() {
        if let Some(o) = origin_of(api_base) {
            add(o);
        }
        for o in DEFAULT_MEDIA_ORIGINS {
            add((*o).to_string());
        }
    } else {
        for o in configured {
            add(o.clone());
        }
    }
    out
}

/// The description of a finished video's `resource_link`: until when it works.
pub fn link_description(expires_at: Option<&str>) -> String {
    match expires_at {
        Some(t) => format!("The finished MP4; the link is valid until {t}."),
        None => "The finished MP4; links expire 24 h after the video was created.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_view_is_small_and_self_contained() {
        assert!(PLAYER_HTML.len() < 16 * 1024, "{} bytes", PLAYER_HTML.len());
        assert!(PLAYER_HTML.starts_with("<!doctype html>"));
        for external in ["<script src", "<link ", "@import", "http://", "https://"] {
            assert!(
                !PLAYER_HTML.contains(external),
                "the view must not load {external}"
            );
        }
        for method in [
            "ui/initialize",
            "ui/notifications/initialized",
            "ui/notifications/tool-result",
            "tools/call",
        ] {
            assert!(PLAYER_HTML.contains(method), "{method}");
        }
    }

    #[test]
    fn media_origins_are_checked() {
        assert_eq!(
            normalize_media_origin(" https://CDN.example.com/ ").unwrap(),
            "https://cdn.example.com"
        );
        assert!(normalize_media_origin("https://*.example.com").is_ok());
        assert!(normalize_media_origin("http://127.0.0.1:8080").is_ok());
        for bad in [
            "cdn.example.com",
            "ftp://x",
            "https://x/path",
            "https://",
            "https://x:99999",
            "https://x?y",
        ] {
            assert!(normalize_media_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_the_api_base() {
        let o = media_origins(&[], "https://gw.example/prefix");
        assert_eq!(o[0], "https://gw.example");
        assert!(o.contains(&"https://*.heygen.ai".to_string()));
        let o = media_origins(&["https://a.example".into()], "https://gw.example");
        assert_eq!(o, vec!["https://a.example".to_string()]);
    }

    #[test]
    fn the_resource_declares_its_csp() {
        let v = serde_json::to_value(read(&["https://a.example".into()])).unwrap();
        let c = &v["contents"][0];
        assert_eq!(c["mimeType"], MCP_APP_MIME);
        assert_eq!(c["uri"], PLAYER_URI);
        assert_eq!(
            c["_meta"]["ui"]["csp"]["resourceDomains"],
            json!(["https://a.example"])
        );
        let t: Value = serde_json::to_value(tool_meta()).unwrap();
        assert_eq!(t["ui"]["resourceUri"], PLAYER_URI);
    }
}
