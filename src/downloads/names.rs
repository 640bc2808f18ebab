//! Safe file names for saved videos: a caller's name checked and made safe
//! for common file systems, the default `<task_id>.mp4`, and the task part of
//! a temporary file's name.

/// Longest stem of a saved file's name, in characters.
pub(crate) const MAX_STEM_CHARS: usize = 180;
/// Longest file name common file systems accept, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 255;
/// Longest stem in bytes: room is kept for ".mp4" and the largest numbering
/// suffix, " (1000)".
pub(crate) const MAX_STEM_BYTES: usize = MAX_NAME_BYTES - ".mp4".len() - " (1000)".len();

/// Bidirectional-text controls, which can make a name display differently
/// from what it is (e.g. "video\u{202E}4pm.exe").
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks a caller's file name and turns it into a safe `*.mp4` name: no
/// folders, no traversal, no hidden or empty names; characters that common
/// file systems refuse become `_`, bidirectional-text controls are dropped,
/// and the name is shortened (never inside a character) so that it, with
/// any " (n)" numbering, fits the 255-byte limit of common file systems.
pub fn sanitize_file_name(raw: &str) -> Result<String, String> {
    let without_bidi: String = raw.chars().filter(|c| !is_bidi_control(*c)).collect();
    let name = without_bidi.trim();
    if name.is_empty() {
        return Err("file_name is empty; omit it to use <task_id>.mp4".into());
    }
    if name.contains('/') || name.contains('\\') {
        return Err(format!(
            "file_name {:?} contains a folder separator ('/' or '\\'); pass a plain file name \
             such as \"my-video.mp4\" (files are always saved in the download folder)",
            shorten(name)
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "file_name {:?} starts with '.' (hidden files and '..' are not allowed); pass a plain \
             file name such as \"my-video.mp4\"",
            shorten(name)
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("file_name contains control characters".into());
    }
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let cleaned = cleaned.trim_end_matches(['.', ' ']);
    let stem = if cleaned.to_ascii_lowercase().ends_with(".mp4") {
        &cleaned[..cleaned.len() - 4]
    } else {
        cleaned
    };
    let stem: String = stem
        .trim_end_matches(['.', ' '])
        .chars()
        .take(MAX_STEM_CHARS)
        .collect();
    let stem = stem.trim_end_matches(['.', ' ']);
    if stem.is_empty() {
        return Err(format!(
            "file_name {:?} has no name before .mp4",
            shorten(name)
        ));
    }
    // Device names Windows reserves, whatever the extension.
    let base = stem
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let reserved = matches!(base.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((base.starts_with("COM") || base.starts_with("LPT"))
            && base.len() == 4
            && base.ends_with(|c: char| c.is_ascii_digit()));
    let stem = if reserved {
        format!("_{stem}")
    } else {
        stem.to_string()
    };
    let stem = truncate_bytes(&stem, MAX_STEM_BYTES).trim_end_matches(['.', ' ']);
    Ok(format!("{stem}.mp4"))
}

pub(crate) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// `<task_id>.mp4`, made safe for every file system (`:` → `_`).
pub fn default_file_name(task_id: &str) -> String {
    let s: String = task_id
        .chars()
        .map(|c| if c == ':' { '_' } else { c })
        .collect();
    let s = s.trim_start_matches('.');
    sanitize_file_name(if s.is_empty() { "video" } else { s })
        .unwrap_or_else(|_| "video.mp4".to_string())
}

pub(crate) fn file_stem_for_temp(task_id: &str) -> String {
    task_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::downloads::place::numbered;

    #[test]
    fn file_names_are_sanitised() {
        let ok =
            |raw: &str, want: &str| assert_eq!(sanitize_file_name(raw).unwrap(), want, "{raw}");
        ok("demo", "demo.mp4");
        ok("demo.mp4", "demo.mp4");
        ok("Demo.MP4", "Demo.mp4");
        ok("  my video  ", "my video.mp4");
        ok("clip.mov", "clip.mov.mp4");
        ok("a:b?c*.mp4", "a_b_c_.mp4");
        ok("name.", "name.mp4");
        ok("CON", "_CON.mp4");
        ok("com1.mp4", "_com1.mp4");
        ok("a..b", "a..b.mp4");
        ok("日本語", "日本語.mp4");
        assert_eq!(
            sanitize_file_name(&"x".repeat(500))
                .unwrap()
                .chars()
                .count(),
            MAX_STEM_CHARS + 4
        );
        for bad in [
            "",
            "   ",
            "../etc/passwd",
            "..",
            ".",
            "a/b.mp4",
            "a\\b.mp4",
            "/abs.mp4",
            ".hidden.mp4",
            ".mp4",
            "...",
            "a\u{0}b",
            "line\nbreak",
        ] {
            assert!(sanitize_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_names_come_from_the_task_id() {
        assert_eq!(
            default_file_name("task-unified-1-abc"),
            "task-unified-1-abc.mp4"
        );
        assert_eq!(default_file_name("a:b"), "a_b.mp4");
        assert_eq!(default_file_name(".x"), "x.mp4");
        assert_eq!(default_file_name("..."), "video.mp4");
    }

    #[test]
    fn names_are_cut_by_bytes_and_lose_bidi_controls() {
        for c in ["é", "日", "😀", "a"] {
            let name = sanitize_file_name(&c.repeat(180)).unwrap();
            assert!(name.ends_with(".mp4"), "{name}");
            assert!(
                name.len() <= MAX_NAME_BYTES - " (1000)".len(),
                "{c}: {}",
                name.len()
            );
            let stem = name.strip_suffix(".mp4").unwrap();
            assert!(
                stem.chars().all(|x| x.to_string() == c),
                "cut inside a character"
            );
            let numbered = numbered(Path::new(&name), 1000);
            let numbered = numbered.file_name().unwrap().to_str().unwrap();
            assert!(numbered.len() <= MAX_NAME_BYTES, "{}", numbered.len());
        }
        // 180 two-byte characters (360 bytes) are cut to 122 (244 bytes).
        assert_eq!(
            sanitize_file_name(&"é".repeat(180)).unwrap(),
            format!("{}.mp4", "é".repeat(MAX_STEM_BYTES / 2))
        );
        assert_eq!(
            sanitize_file_name(&"日".repeat(180)).unwrap(),
            format!("{}.mp4", "日".repeat(MAX_STEM_BYTES / 3))
        );
        assert_eq!(
            sanitize_file_name("invoice\u{202E}4pm.exe").unwrap(),
            "invoice4pm.exe.mp4"
        );
        assert_eq!(
            sanitize_file_name("\u{2066}a\u{2069}\u{200E}b\u{200F}c\u{061C}\u{202A}").unwrap(),
            "abc.mp4"
        );
        assert!(sanitize_file_name("\u{202E}\u{202C}").is_err());
        assert!(sanitize_file_name("\u{202E}../x").is_err());
    }
}
