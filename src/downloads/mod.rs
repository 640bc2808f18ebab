//! `download_video` and `--auto-download`: save a completed task's MP4 into the
//! download folder before its link expires (DESIGN.md §8 "Downloads").
//!
//! Only the task's own result URL is fetched (the task is looked up first; no
//! caller-supplied URL is ever fetched, and the API key is never sent to it).
//! The link and every redirect hop must be https (http only when the upstream
//! API itself is on loopback, as the simulator is), carry no user name or
//! password, and lead to public addresses only: every resolved address is
//! checked before a connection is made (loopback, private, link-local,
//! cloud-metadata, CGNAT, multicast and other special ranges are refused),
//! except on the upstream API's own origin. The first bytes must be an MP4
//! (ISO-BMFF `ftyp`) or WebM/Matroska header; a web page, JSON or anything else
//! is refused before a file is created. The body streams into a temporary file
//! in the same folder, is checked on disk (size > 0, equal to Content-Length
//! when given, under the size cap) and is then renamed into place atomically,
//! never over an existing file unless the caller asked for it (otherwise
//! `name (2).mp4`, `name (3).mp4`, …). A link answering 403/404/410 triggers
//! one fresh status lookup for a new URL. A download that outlives the call's
//! deadline continues in the background.
//!
//! A temporary file is locked (advisory, exclusive) by its writer from before
//! its first byte until it is renamed. At start-up and at the first use of a
//! folder, temporary files nobody holds locked are leftovers of a process
//! that died mid-download and are removed; on systems without such locks only
//! leftovers older than a day are. Temporary files never count against a
//! caller's quota.
//!
//! In HTTP mode several callers (tenants: one per upstream key) share the
//! server's download folder, so each saves into its own subfolder,
//! `<dir>/<key fingerprint>/`: `overwrite` can only ever replace the caller's
//! own files, and a per-caller quota ([`TenantQuota`]) keeps one caller from
//! filling the server's disk. On stdio (one user) the folder is used as it is.

mod names;
mod place;
mod transfer;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

pub use names::{default_file_name, sanitize_file_name};
pub use place::free_path;
use place::{STALE_TEMP_AGE, clean_leftovers, clean_leftovers_blocking, is_temp_name};
use transfer::{Fail, Upstream, attempt};

use crate::video::human_bytes;

/// Default cap of one saved video: 2 GiB.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Transfers at once per process (a hosted server must not be flooded).
const MAX_PARALLEL_DOWNLOADS: usize = 4;
/// Default most videos one HTTP caller may keep in its download folder.
pub const DEFAULT_TENANT_MAX_FILES: usize = 100;
/// Default most bytes one HTTP caller's download folder may hold.
pub const DEFAULT_TENANT_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// What one caller may keep in its download folder in HTTP mode. Checked
/// before each new download starts; a download still running counts as a file
/// (its partial bytes do not), so concurrent calls cannot slip past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantQuota {
    /// Most video files (saved or being saved).
    pub max_files: usize,
    /// A new download is refused once the folder holds this many bytes.
    pub max_bytes: u64,
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self {
            max_files: DEFAULT_TENANT_MAX_FILES,
            max_bytes: DEFAULT_TENANT_MAX_BYTES,
        }
    }
}

/// Where one download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    Saved { path: PathBuf, size: u64 },
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Job {
    /// Where the file will be (a taken name at the end moves it to `name (n)`).
    pub target: PathBuf,
    pub state: watch::Receiver<JobState>,
}

impl Job {
    pub fn current(&self) -> JobState {
        self.state.borrow().clone()
    }
}

/// Process-wide download bookkeeping: running and finished downloads (so a
/// repeated call or a status check reports them instead of downloading twice),
/// the tasks auto-download already handled, the folders already cleaned, and
/// the HTTP client for result links (built on first use).
#[derive(Clone, Default)]
pub struct Downloads {
    inner: Arc<DownloadsInner>,
}

struct DownloadsInner {
    /// (task id, requested path) → the latest download of it.
    jobs: Mutex<HashMap<(String, PathBuf), Job>>,
    auto_started: Mutex<HashSet<String>>,
    cleaned: Mutex<HashSet<PathBuf>>,
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Transfers running at once; more wait their turn (in the background).
    slots: Arc<Semaphore>,
    /// Per-caller limits of the download folder in HTTP mode.
    quota: TenantQuota,
    /// Held from a quota check until its download is registered, so two calls
    /// cannot both take the last place.
    quota_check: tokio::sync::Mutex<()>,
}

impl Default for DownloadsInner {
    fn default() -> Self {
        Self {
            jobs: Mutex::default(),
            auto_started: Mutex::default(),
            cleaned: Mutex::default(),
            client: OnceLock::new(),
            slots: Arc::new(Semaphore::new(MAX_PARALLEL_DOWNLOADS)),
            quota: TenantQuota::default(),
            quota_check: tokio::sync::Mutex::new(()),
        }
    }
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jobs = self.inner.jobs.lock().map(|j| j.len()).unwrap_or(0);
        f.debug_struct("Downloads").field("jobs", &jobs).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Downloads {
    /// Fresh bookkeeping whose HTTP callers are held to `quota`.
    pub fn with_tenant_quota(quota: TenantQuota) -> Self {
        Self {
            inner: Arc::new(DownloadsInner {
                quota,
                ..DownloadsInner::default()
            }),
        }
    }

    /// Removes, in the background, partial downloads left in `dir` by
    /// processes that died mid-download (in HTTP mode also in each caller's
    /// subfolder). Files of downloads still running in any process are kept.
    pub fn sweep_leftovers(&self, dir: &Path, http_mode: bool) {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut removed = clean_leftovers_blocking(&dir, STALE_TEMP_AGE);
            if http_mode && let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        removed += clean_leftovers_blocking(&entry.path(), STALE_TEMP_AGE);
                    }
                }
            }
            if removed > 0 {
                tracing::info!(removed, "removed partial downloads of stopped processes");
            }
        });
    }

    /// The per-caller limits in HTTP mode.
    pub fn tenant_quota(&self) -> TenantQuota {
        self.inner.quota
    }

    /// Refuses a new download into a caller's own folder (HTTP mode) when it
    /// already holds the quota. `replacing` is the size of the file the
    /// download will replace (overwrite), which frees its place. The caller
    /// holds `quota_check` until the download is registered.
    pub async fn check_quota(&self, dir: &Path, replacing: Option<u64>) -> Result<(), String> {
        let quota = self.inner.quota;
        let (mut files, mut bytes) = (0usize, 0u64);
        if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let Ok(meta) = entry.metadata().await else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                // Partial downloads never count (a running one counts as a
                // file through its job below).
                if is_temp_name(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                bytes = bytes.saturating_add(meta.len());
                files += 1;
            }
        }
        let running = lock(&self.inner.jobs)
            .values()
            .filter(|j| j.target.parent() == Some(dir) && j.current() == JobState::Running)
            .count();
        let after = files + running + usize::from(replacing.is_none());
        let kept = bytes.saturating_sub(replacing.unwrap_or(0));
        if after <= quota.max_files && kept < quota.max_bytes {
            return Ok(());
        }
        Err(format!(
            "your download folder on this server is full: it holds {} video file(s) ({}{}), and \
             this server lets each caller keep at most {} file(s) and {}. Nothing was \
             downloaded. Give the user the video URL instead (it stays valid until 24 h after \
             the video was created), save it under the file_name of one of your earlier videos \
             with overwrite: true to replace that file, or ask the server's operator to make room",
            files + running,
            human_bytes(bytes),
            if running > 0 {
                format!(", {running} still downloading")
            } else {
                String::new()
            },
            quota.max_files,
            human_bytes(quota.max_bytes)
        ))
    }

    /// Held from a quota check until the new download is registered (see
    /// [`Downloads::start`]), so two calls cannot both take the last place.
    pub async fn quota_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.quota_check.lock().await
    }

    pub fn job(&self, task_id: &str, requested: &Path) -> Option<Job> {
        lock(&self.inner.jobs)
            .get(&(task_id.to_string(), requested.to_path_buf()))
            .cloned()
    }

    /// True the first time it is called for a task (auto-download runs once per
    /// task per process).
    pub fn first_auto(&self, task_id: &str) -> bool {
        lock(&self.inner.auto_started).insert(task_id.to_string())
    }

    /// The client for result links. Every name it resolves and every redirect
    /// hop it follows is checked against [`check_link`] / [`check_ip`]; it
    /// connects directly (no proxy), so that the checked addresses are the
    /// ones connected to. One process has one upstream, so the client is
    /// built once.
    fn client(&self, upstream: &Upstream) -> Result<&reqwest::Client, String> {
        self.inner
            .client
            .get_or_init(|| transfer::build_client(upstream))
            .as_ref()
            .map_err(|e| format!("the HTTP client for downloads could not be built: {e}"))
    }

    /// Creates the folder, removes stale temporary files once per folder, and
    /// returns its absolute path.
    pub async fn prepare_dir(&self, dir: &Path) -> Result<PathBuf, String> {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            format!(
                "the download folder {} could not be created ({e}); check HEYGEN_DOWNLOAD_DIR",
                dir.display()
            )
        })?;
        let abs = tokio::fs::canonicalize(dir).await.map_err(|e| {
            format!(
                "the download folder {} is not usable ({e}); check HEYGEN_DOWNLOAD_DIR",
                dir.display()
            )
        })?;
        let first = lock(&self.inner.cleaned).insert(abs.clone());
        if first {
            clean_leftovers(&abs).await;
        }
        Ok(abs)
    }

    /// Starts a download in the background, or returns the one already running
    /// (or finished) for the same task and requested path when `reuse` allows.
    pub fn start(&self, spec: JobSpec, reuse: bool) -> Job {
        let key = (spec.task_id.clone(), spec.requested.clone());
        let (tx, rx) = watch::channel(JobState::Running);
        let job = Job {
            target: spec.target.clone(),
            state: rx,
        };
        {
            let mut jobs = lock(&self.inner.jobs);
            if reuse
                && let Some(existing) = jobs.get(&key)
                && reusable(&existing.current())
            {
                return existing.clone();
            }
            jobs.insert(key, job.clone());
        }
        let ct = spec.ct.clone();
        let slots = self.inner.slots.clone();
        let downloads = self.clone();
        tokio::spawn(async move {
            let task_id = spec.task_id.clone();
            let mut spec = spec;
            let result = tokio::select! {
                _ = ct.cancelled() => Err("the download was cancelled by the client".to_string()),
                r = async {
                    let _slot = slots.acquire_owned().await.map_err(|e| e.to_string())?;
                    fetch(&downloads, &spec).await
                } => r,
            };
            let state = match result {
                Ok((path, size)) => {
                    tracing::info!(%task_id, size, "video saved");
                    if let Some(on_saved) = spec.on_saved.take() {
                        on_saved(&path, size);
                    }
                    JobState::Saved { path, size }
                }
                Err(msg) => {
                    tracing::warn!(%task_id, "download failed: {msg}");
                    JobState::Failed(msg)
                }
            };
            let _ = tx.send(state);
        });
        job
    }

    /// Records a file that already exists (saved by an earlier run).
    pub fn record_existing(&self, task_id: &str, path: &Path, size: u64) -> Job {
        let (_tx, rx) = watch::channel(JobState::Saved {
            path: path.to_path_buf(),
            size,
        });
        let job = Job {
            target: path.to_path_buf(),
            state: rx,
        };
        lock(&self.inner.jobs).insert((task_id.to_string(), path.to_path_buf()), job.clone());
        job
    }
}

/// A running download can be joined; a saved one reused while its file is intact.
pub fn reusable(state: &JobState) -> bool {
    match state {
        JobState::Running => true,
        JobState::Saved { path, size } => std::fs::metadata(path)
            .map(|m| m.is_file() && m.len() == *size)
            .unwrap_or(false),
        JobState::Failed(_) => false,
    }
}

/// A fresh status lookup's answer about the task's result link.
pub enum FreshLink {
    Url(String),
    /// The task has no link now; `status` is its current status.
    Missing {
        status: String,
    },
}

/// Looks the task up again (after its link answered 403/404/410); the error
/// is a sentence for the user.
pub type LinkRefresh = Box<dyn Fn() -> BoxFuture<'static, Result<FreshLink, String>> + Send + Sync>;

/// Called once with the saved file's path and size.
pub type OnSaved = Box<dyn FnOnce(&Path, u64) + Send + Sync>;

/// Everything one background download needs.
pub struct JobSpec {
    pub task_id: String,
    pub url: String,
    pub created_at: Option<String>,
    /// The saving folder (absolute, from [`Downloads::prepare_dir`]).
    pub dir: PathBuf,
    /// The path asked for; a taken name lands at `target` instead.
    pub requested: PathBuf,
    pub target: PathBuf,
    pub overwrite: bool,
    pub ct: CancellationToken,
    /// The upstream API's base URL: links on its origin are trusted.
    pub upstream_base: String,
    /// Largest file saved.
    pub max_bytes: u64,
    pub refresh: LinkRefresh,
    pub on_saved: Option<OnSaved>,
}

/// Downloads with one link refresh; returns the final path and verified size.
async fn fetch(downloads: &Downloads, spec: &JobSpec) -> Result<(PathBuf, u64), String> {
    let upstream = Upstream::from_base(&spec.upstream_base);
    let client = downloads.client(&upstream)?;
    let mut url = spec.url.clone();
    let mut refreshed = false;
    loop {
        match attempt(client, &upstream, spec, &url).await {
            Ok(done) => return Ok(done),
            Err(Fail::Other(msg)) => return Err(format!("Downloading the video failed: {msg}")),
            Err(Fail::Refused(why)) => {
                return Err(format!(
                    "The video was not downloaded: {why}. This server fetches videos only over \
                     https from public addresses (never with credentials in the link, never \
                     from this machine, a private network or a cloud metadata service), so \
                     nothing was fetched or saved. Give the user the video URL from \
                     get_video_status instead."
                ));
            }
            Err(Fail::Link(status)) if !refreshed => {
                refreshed = true;
                tracing::info!(task_id = %spec.task_id, status, "stale link; looking the task up again");
                let fresh = (spec.refresh)().await.map_err(|e| {
                    format!(
                        "The video link answered HTTP {status}, and looking the task up again \
                         for a fresh link failed: {e}"
                    )
                })?;
                match fresh {
                    FreshLink::Url(u) => url = u,
                    FreshLink::Missing { status: now } => {
                        return Err(format!(
                            "The video link answered HTTP {status}, and a fresh status lookup \
                             gave no new link (status {now}). {}",
                            expired_advice(spec.created_at.as_deref())
                        ));
                    }
                }
            }
            Err(Fail::Link(status)) => {
                return Err(format!(
                    "Downloading the video failed: its link answered HTTP {status} even after a \
                     fresh status lookup. {}",
                    expired_advice(spec.created_at.as_deref())
                ));
            }
        }
    }
}

fn expired_advice(created_at: Option<&str>) -> String {
    let created = created_at
        .map(|c| format!("; this one was created at {c}"))
        .unwrap_or_default();
    format!(
        "The link has most likely expired (result links live 24 h after the task was \
         created{created}), so this video can no longer be downloaded. If the user still wants \
         it, it has to be made again with create_video, which spends credits."
    )
}

/// The folder a caller's videos are saved in: the configured one on stdio; in
/// HTTP mode the caller's own subfolder, named by its tenant (key fingerprint or signed-in user), so
/// that callers never replace, see or fill each other's files. `tenant`
/// is the caller's key fingerprint.
pub fn caller_dir(dir: &Path, http_mode: bool, tenant: &str) -> PathBuf {
    if http_mode {
        dir.join(tenant)
    } else {
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tenant_quota_counts_files_bytes_and_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let d = Downloads::with_tenant_quota(TenantQuota {
            max_files: 2,
            max_bytes: 100,
        });
        assert!(d.check_quota(dir.path(), None).await.is_ok());
        std::fs::write(dir.path().join("a.mp4"), [0u8; 40]).unwrap();
        assert!(d.check_quota(dir.path(), None).await.is_ok());
        std::fs::write(dir.path().join("b.mp4"), [0u8; 40]).unwrap();
        // Two files: a third is refused, replacing one of them is not.
        let full = d.check_quota(dir.path(), None).await.unwrap_err();
        assert!(full.contains("2 video file(s)"), "{full}");
        assert!(d.check_quota(dir.path(), Some(40)).await.is_ok());
        // A partial download counts neither as a file nor by its bytes.
        std::fs::write(dir.path().join(".heygen-x-1.part"), [0u8; 50]).unwrap();
        assert!(d.check_quota(dir.path(), Some(10)).await.is_ok());
        std::fs::write(dir.path().join("a.mp4"), [0u8; 70]).unwrap();
        // 110 bytes of videos: even a replacement of a smaller file is refused.
        assert!(d.check_quota(dir.path(), Some(5)).await.is_err());
        assert!(d.check_quota(dir.path(), Some(40)).await.is_ok());
        // Subfolders are not files.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(d.check_quota(dir.path(), Some(40)).await.is_ok());
    }

    #[tokio::test]
    async fn partial_downloads_never_count_in_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let d = Downloads::with_tenant_quota(TenantQuota {
            max_files: 1,
            max_bytes: 100,
        });
        std::fs::write(dir.path().join(".heygen-x-1-00.part"), [0u8; 500]).unwrap();
        std::fs::write(dir.path().join(".heygen-y-2-00.part"), [0u8; 500]).unwrap();
        assert!(d.check_quota(dir.path(), None).await.is_ok());
    }
}
