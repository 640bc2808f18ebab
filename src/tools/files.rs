//! `file_paths` of `create_video`: local files used as reference material.
//! Every check that can fail runs before anything is bought: the path is
//! absolute, the file exists, is a regular file of an accepted type and at
//! most the backend's upload limit (both known from its name and metadata, before it
//! is read). Each file is read once for its digest (so an identical repeat is
//! recognised without uploading again) and once more when it is uploaded.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Extensions the Video Agent can use as reference material.
const ACCEPTED: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "bmp", "heic", "mp4", "mov", "webm", "m4v", "mp3", "wav",
    "m4a", "aac", "ogg", "pdf",
];

/// A checked local file, not yet uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    /// The name sent with the upload (it drives the MIME type upstream).
    pub name: String,
    pub size: u64,
    /// SHA-256 (hex) of the content when it was checked.
    pub digest: String,
}

fn expand_home(raw: &str) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("~/").or_else(|| raw.strip_prefix("~\\")) {
        let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
        if let Some(home) = home {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(raw)
}

/// Checks every path and reads each file's digest; the first problem is an
/// error naming the entry and what to do.
pub async fn check_all(paths: &[String], max_bytes: u64) -> Result<Vec<LocalFile>, String> {
    let mut out = Vec::with_capacity(paths.len());
    for (i, raw) in paths.iter().enumerate() {
        let file = check_one(raw.trim(), max_bytes)
            .await
            .map_err(|why| format!("file_paths[{i}] ({:?}) {why}", super::excerpt(raw)))?;
        out.push(file);
    }
    Ok(out)
}

async fn check_one(raw: &str, max_bytes: u64) -> Result<LocalFile, String> {
    if raw.is_empty() {
        return Err("is empty; pass the absolute path of a local file".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    let path = expand_home(raw);
    if !path.is_absolute() {
        return Err(
            "is not an absolute path; pass the full path, e.g. /Users/me/slides.pdf".into(),
        );
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or("has no usable file name")?;
    let ext = Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !ACCEPTED.contains(&ext.as_str()) {
        return Err(format!(
            "is not a file type the Video Agent can use (images, videos, audio or PDF: {})",
            ACCEPTED.join(", ")
        ));
    }
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist; check the path".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "cannot be read (permission denied)".to_string()
            }
            _ => format!("cannot be read ({e})"),
        })?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() == 0 {
        return Err("is empty".into());
    }
    if meta.len() > max_bytes {
        return Err(format!(
            "is {} MB; at most {} MB can be uploaded: shrink it, or put it online and pass its \
             URL in file_urls",
            meta.len().div_ceil(1024 * 1024),
            max_bytes / (1024 * 1024)
        ));
    }
    let digest = digest_of(&path, max_bytes)
        .await
        .map_err(|e| format!("cannot be read ({e})"))?;
    Ok(LocalFile {
        path,
        name,
        size: meta.len(),
        digest,
    })
}

/// Streams the file through SHA-256 without holding it in memory.
async fn digest_of(path: &Path, cap: u64) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > cap {
            return Err(std::io::Error::other("the file grew past the upload limit"));
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Reads a checked file for its upload, refusing one that changed size or
/// grew past the limit since it was checked.
pub async fn read_for_upload(file: &LocalFile, max_bytes: u64) -> Result<Vec<u8>, String> {
    let f = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| format!("{} can no longer be read ({e})", file.path.display()))?;
    let mut data = Vec::with_capacity(file.size as usize);
    f.take(max_bytes + 1)
        .read_to_end(&mut data)
        .await
        .map_err(|e| format!("{} can no longer be read ({e})", file.path.display()))?;
    if data.len() as u64 > max_bytes {
        return Err(format!(
            "{} grew past {} MB while the video was being prepared",
            file.path.display(),
            max_bytes / (1024 * 1024)
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    const LIMIT: u64 = 20 * 1024 * 1024;
    use super::*;

    #[tokio::test]
    async fn paths_are_checked_before_reading() {
        let dir = std::env::temp_dir().join(format!("heygen-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("a.PNG");
        std::fs::write(&png, b"\x89PNG....").unwrap();
        let txt = dir.join("notes.txt");
        std::fs::write(&txt, b"hello").unwrap();
        let empty = dir.join("e.pdf");
        std::fs::write(&empty, b"").unwrap();
        let s = |p: &Path| p.display().to_string();

        let ok = check_all(&[s(&png)], LIMIT).await.unwrap();
        assert_eq!(ok[0].name, "a.PNG");
        assert_eq!(ok[0].size, 8);
        assert_eq!(ok[0].digest.len(), 64);
        for (bad, why) in [
            (s(&txt), "not a file type"),
            (s(&empty), "is empty"),
            ("relative/a.png".to_string(), "not an absolute path"),
            (s(&dir.join("missing.png")), "does not exist"),
            (s(&dir), "not a file type"),
            (String::new(), "is empty"),
        ] {
            let e = check_all(&[s(&png), bad.clone()], LIMIT).await.unwrap_err();
            assert!(e.starts_with("file_paths[1]"), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
