//! `create_video`: validates the request completely, then sends exactly one
//! create to the upstream and returns the new task at once.

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use super::{
    VideoServer,
    view::{VideoTask, error_result},
};
use crate::{
    backend::Operation,
    video::{FileRef, NewVideo, Orientation},
};

pub const MAX_PROMPT_CHARS: usize = 10_000;
pub const MAX_FILE_URLS: usize = 20;
const MAX_ID_CHARS: usize = 256;
const MAX_URL_CHARS: usize = 4096;
const MAX_KEY_CHARS: usize = 128;

/// Arguments of `create_video`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVideoParams {
    /// Topic, audience, tone, script or key points, wishes about presenter or
    /// setting. The agent decides script, scenes and length.
    #[schemars(length(min = 1, max = 10000))]
    pub prompt: String,
    /// Avatar id or "auto". Omit to let the agent pick.
    #[serde(default)]
    pub avatar_id: Option<String>,
    /// Voice id or "auto". Omit to let the agent pick.
    #[serde(default)]
    pub voice_id: Option<String>,
    /// Style template id. Omit for the default.
    #[serde(default)]
    pub style_id: Option<String>,
    /// 16:9 or 9:16. Omit to let the agent decide.
    #[serde(default, deserialize_with = "orientation_or_empty")]
    pub orientation: Option<Orientation>,
    /// Public http(s) URLs of files the user gave for the video.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub file_urls: Option<Vec<String>>,
    /// Local files to upload as reference material (absolute paths; images, video,
    /// audio, PDF; ≤ 20 MB each; ≤ 20 with file_urls). Local stdio only.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub file_paths: Option<Vec<String>>,
    /// Turn off the agent's memory; only if the user asks.
    #[serde(default)]
    pub incognito_mode: Option<bool>,
    /// Name of this one video, e.g. "intro-v1": the same key within 24 h
    /// returns the same video, not a new charge.
    #[serde(default)]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub idempotency_key: Option<String>,
}

fn orientation_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Orientation>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "landscape" => Ok(Some(Orientation::Landscape)),
            "portrait" => Ok(Some(Orientation::Portrait)),
            _ => Err(serde::de::Error::custom(format!(
                "orientation must be \"landscape\" or \"portrait\" (or omitted), got {:?}",
                super::excerpt(s)
            ))),
        },
    }
}

impl CreateVideoParams {
    /// Every rule of the schema, enforced before anything is sent (rmcp does
    /// not validate arguments against the schema). Returns the upstream body.
    pub fn validate(&self) -> Result<NewVideo, String> {
        let chars = self.prompt.chars().count();
        if self.prompt.trim().is_empty() {
            return Err(
                "prompt is empty: describe the video you want (1–10,000 characters).".into(),
            );
        }
        if !self.prompt.chars().any(is_visible) {
            return Err(
                "prompt is empty: it has no visible character (only spaces, zero-width, \
                 formatting or control characters), so nothing was sent and nothing was billed. \
                 Describe the video you want in words (1–10,000 characters)."
                    .into(),
            );
        }
        if chars > MAX_PROMPT_CHARS {
            return Err(format!(
                "prompt is {chars} characters long; the limit is {MAX_PROMPT_CHARS}. Shorten it \
                 (e.g. summarise the script) and try again."
            ));
        }
        let mut body = NewVideo::new(self.prompt.clone());
        body.avatar_id = optional_id("avatar_id", &self.avatar_id)?;
        body.voice_id = optional_id("voice_id", &self.voice_id)?;
        body.style_id = optional_id("style_id", &self.style_id)?;
        body.orientation = self.orientation;
        body.incognito_mode = self.incognito_mode;
        if let Some(urls) = &self.file_urls {
            if urls.len() > MAX_FILE_URLS {
                return Err(format!(
                    "file_urls has {} entries; at most {MAX_FILE_URLS} are allowed.",
                    urls.len()
                ));
            }
            let mut checked = Vec::with_capacity(urls.len());
            for (i, u) in urls.iter().enumerate() {
                checked.push(check_url(i, u)?);
            }
            body.files = checked.into_iter().map(FileRef::Url).collect();
        }
        let urls = self.file_urls.as_ref().map_or(0, Vec::len);
        let paths = self.file_paths.as_ref().map_or(0, Vec::len);
        if urls + paths > MAX_FILE_URLS {
            return Err(format!(
                "file_urls and file_paths have {} entries together; at most {MAX_FILE_URLS} are \
                 allowed.",
                urls + paths
            ));
        }
        Ok(body)
    }
}

/// True for a character that shows up as something on screen: not whitespace,
/// not a control character, not a format character (Unicode category Cf) and
/// not a default-ignorable one (zero-width joiners, variation selectors,
/// fillers). A prompt made only of the others describes nothing.
fn is_visible(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || is_format_or_ignorable(c))
}

/// Unicode's format characters (Cf) and Default_Ignorable_Code_Point, plus the
/// blank braille pattern, which renders as nothing.
fn is_format_or_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Checks `idempotency_key`: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn check_idempotency_key(v: &Option<String>) -> Result<Option<String>, String> {
    let Some(k) = v else { return Ok(None) };
    let k = k.trim();
    if k.is_empty() {
        return Ok(None);
    }
    if k.chars().count() > MAX_KEY_CHARS {
        return Err(format!(
            "idempotency_key is longer than {MAX_KEY_CHARS} characters; use a short name such as \"intro-v1\"."
        ));
    }
    if let Some(c) = k
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "idempotency_key contains the character {c:?}; use letters, digits and . _ : - only \
             (e.g. \"intro-v1\")."
        ));
    }
    Ok(Some(k.to_string()))
}

fn optional_id(name: &str, v: &Option<String>) -> Result<Option<String>, String> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "{name} is longer than {MAX_ID_CHARS} characters; pass an id, not a description."
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(format!(
            "{name} contains control characters; pass the id exactly."
        ));
    }
    Ok(Some(v.to_string()))
}

fn check_url(i: usize, raw: &str) -> Result<String, String> {
    let u = raw.trim();
    let bad = |why: &str| {
        let shown: String = u.chars().take(100).collect();
        Err(format!(
            "file_urls[{i}] ({shown:?}) {why}; each entry must be an absolute http:// or https:// URL."
        ))
    };
    if u.is_empty() {
        return bad("is empty");
    }
    if u.chars().count() > MAX_URL_CHARS {
        return bad("is too long");
    }
    match url::Url::parse(u) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return bad("has no host");
            }
            Ok(u.to_string())
        }
        Ok(parsed) => bad(&format!("has the scheme {:?}", parsed.scheme())),
        Err(e) => bad(&format!("is not a URL ({e})")),
    }
}

#[tool_router(router = create_router, vis = "pub(crate)")]
impl VideoServer {
    /// Start one HeyGen avatar video from a prompt; returns a task_id at once.
    /// COSTS CREDITS: call once per video, never again because it is still
    /// rendering. The same idempotency_key, or identical arguments minutes later,
    /// returns the earlier video (reused, free); a new key makes a new take.
    /// Next: get_video_status until completed, then download_video (links expire
    /// 24 h after creation). If it fails saying the video may exist, check
    /// list_videos first.
    #[tool(
        output_schema = schema_for_output::<VideoTask>(),
        annotations(
            title = "Create a HeyGen video",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn create_video(
        &self,
        Parameters(params): Parameters<CreateVideoParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let body = params
            .validate()
            .map_err(|e| error_result(format!("Invalid arguments: {e}")))?;
        let idempotency_key = check_idempotency_key(&params.idempotency_key)
            .map_err(|e| error_result(format!("Invalid arguments: {e}")))?;
        let paths = params.file_paths.unwrap_or_default();
        if !paths.is_empty() && self.state.options.http_mode {
            return Err(error_result(
                "Invalid arguments: file_paths is not available on this server: it runs \
                 remotely and cannot read your disk. Put the files online and pass their \
                 https URLs in file_urls instead. Nothing was created.",
            ));
        }
        let key = self
            .resolve_key(&ctx)
            .map_err(|e| error_result(e.user_message(Operation::Create)))?;
        let files = super::files::check_all(&paths, self.state.caps().max_upload_bytes)
            .await
            .map_err(|e| error_result(format!("Invalid arguments: {e}. Nothing was created.")))?;
        // A signed-in user spending the server's key draws on its daily budget.
        let pays_server = self
            .state
            .server_key
            .as_ref()
            .is_some_and(|k| k.expose() == key.expose());
        let charge = if key.signed_in() && pays_server {
            self.state
                .options
                .user_budget
                .reserve(&key.tenant(), self.state.options.ledger.as_deref())
                .await
                .map_err(error_result)?
        } else {
            None
        };
        self.create_once(key, body, idempotency_key, files, charge)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(prompt: &str) -> CreateVideoParams {
        CreateVideoParams {
            prompt: prompt.into(),
            ..Default::default()
        }
    }

    #[test]
    fn prompt_limits_count_characters() {
        assert!(p(&"a".repeat(10_000)).validate().is_ok());
        assert!(p(&"a".repeat(10_001)).validate().is_err());
        // 10,000 three-byte characters are 30,000 bytes but still allowed.
        assert!(p(&"é".repeat(10_000)).validate().is_ok());
        assert!(p(&"日".repeat(10_001)).validate().is_err());
        assert!(p("").validate().is_err());
        assert!(p("  \n ").validate().is_err());
    }

    #[test]
    fn a_prompt_without_a_visible_character_is_refused() {
        for blank in [
            "\u{200b}",
            "\u{0000}",
            "\u{2060}",
            "\u{feff}",
            " \t\n",
            "\u{00a0}",
            "\u{3000}",
            "\u{180e}",
            "\u{200e}\u{200f}",
            "\u{202e}\u{2066}",
            "\u{00ad}\u{034f}\u{fe0f}",
            "\u{3164}\u{115f}\u{2800}",
            "\u{e0041}\u{e007f}",
            "\u{1b}\u{7f}\u{85}\u{9f}",
        ] {
            let err = p(blank).validate().expect_err(&format!("{blank:?}"));
            assert!(err.contains("prompt is empty"), "{blank:?}: {err}");
        }
        for fine in [
            "a",
            "\u{200b}a\u{200b}",
            "family: 👨\u{200d}👩\u{200d}👧 at the beach",
            "مرحبا\u{200f}",
            "❤\u{fe0f}",
        ] {
            assert!(p(fine).validate().is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn url_rules() {
        let with = |urls: Vec<&str>| CreateVideoParams {
            file_urls: Some(urls.into_iter().map(String::from).collect()),
            ..p("x")
        };
        assert!(with(vec!["https://a.example/x.png"; 20]).validate().is_ok());
        assert!(
            with(vec!["https://a.example/x.png"; 21])
                .validate()
                .is_err()
        );
        for bad in [
            "ftp://a/x",
            "file:///etc/passwd",
            "/relative",
            "",
            "https://",
            "javascript:alert(1)",
        ] {
            assert!(with(vec![bad]).validate().is_err(), "{bad}");
        }
        assert!(with(vec![]).validate().unwrap().files.is_empty());
    }

    #[test]
    fn empty_optionals_are_omitted() {
        let params = CreateVideoParams {
            avatar_id: Some("".into()),
            voice_id: Some("  ".into()),
            style_id: Some(" modern_vlog_01 ".into()),
            ..p("hello")
        };
        let body = serde_json::to_value(crate::gateway::CreateVideoRequest::from(
            &params.validate().unwrap(),
        ))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "heygen-video-agent", "prompt": "hello", "style_id": "modern_vlog_01"})
        );
    }

    #[test]
    fn idempotency_keys() {
        let k = |v: &str| check_idempotency_key(&Some(v.into()));
        assert_eq!(k("intro-v1").unwrap().as_deref(), Some("intro-v1"));
        assert_eq!(k(" take.2:b_c ").unwrap().as_deref(), Some("take.2:b_c"));
        assert_eq!(k("  ").unwrap(), None);
        assert_eq!(check_idempotency_key(&None).unwrap(), None);
        assert!(k(&"a".repeat(128)).is_ok());
        assert!(k(&"a".repeat(129)).is_err());
        for bad in ["a b", "a/b", "ä", "a\nb", "take#2"] {
            assert!(k(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn orientation_parsing() {
        let parse = |v: serde_json::Value| serde_json::from_value::<CreateVideoParams>(v);
        assert_eq!(
            parse(serde_json::json!({"prompt": "x", "orientation": "Portrait"}))
                .unwrap()
                .orientation,
            Some(Orientation::Portrait)
        );
        assert_eq!(
            parse(serde_json::json!({"prompt": "x", "orientation": ""}))
                .unwrap()
                .orientation,
            None
        );
        assert!(parse(serde_json::json!({"prompt": "x", "orientation": "square"})).is_err());
        assert!(parse(serde_json::json!({"prompt": "x", "duration": 30})).is_err());
    }
}
