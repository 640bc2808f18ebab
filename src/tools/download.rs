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

use std::{
    collections::{HashMap, HashSet},
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime},
};

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::{
    io::AsyncWriteExt,
    sync::{Semaphore, watch},
};
use tokio_util::sync::CancellationToken;

use super::{
    AppState, VideoServer,
    view::{VideoStatus, VideoTask, WAIT_HINT, error_result, human_bytes},
};
use crate::gateway::{ApiKey, Operation};

/// Temporary files are named `.heygen-…​.part`. Where the writer's lock cannot
/// be tested, leftovers older than this are removed.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// An empty, unlocked temporary file younger than this may belong to a writer
/// that has created it but not locked it yet; it is left alone.
const UNLOCKED_EMPTY_GRACE: Duration = Duration::from_secs(60);
const TEMP_PREFIX: &str = ".heygen-";
const TEMP_SUFFIX: &str = ".part";
/// Longest stem of a saved file's name, in characters.
const MAX_STEM_CHARS: usize = 180;
/// Longest file name common file systems accept, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// Longest stem in bytes: room is kept for ".mp4" and the largest numbering
/// suffix, " (1000)".
const MAX_STEM_BYTES: usize = MAX_NAME_BYTES - ".mp4".len() - " (1000)".len();
/// Most redirects one download follows.
const MAX_REDIRECTS: usize = 5;
/// A stalled transfer (no bytes for this long) is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Arguments of `download_video`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadVideoParams {
    /// A completed video's task_id.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub task_id: String,
    /// Plain file name, e.g. "demo.mp4". Default "<task_id>.mp4".
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub file_name: Option<String>,
    /// Replace a file of that name (default: pick a free name).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// Where one download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobState {
    Running,
    Saved { path: PathBuf, size: u64 },
    Failed(String),
}

#[derive(Debug, Clone)]
struct Job {
    /// Where the file will be (a taken name at the end moves it to `name (n)`).
    target: PathBuf,
    state: watch::Receiver<JobState>,
}

impl Job {
    fn current(&self) -> JobState {
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
    async fn check_quota(&self, dir: &Path, replacing: Option<u64>) -> Result<(), String> {
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

    fn job(&self, task_id: &str, requested: &Path) -> Option<Job> {
        lock(&self.inner.jobs)
            .get(&(task_id.to_string(), requested.to_path_buf()))
            .cloned()
    }

    /// True the first time it is called for a task (auto-download runs once per
    /// task per process).
    fn first_auto(&self, task_id: &str) -> bool {
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
            .get_or_init(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let hops = upstream.clone();
                reqwest::Client::builder()
                    .user_agent(concat!("heygen-video-mcp/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(STALL_TIMEOUT)
                    .no_proxy()
                    .dns_resolver(Arc::new(CheckedResolver {
                        trusted_host: upstream.domain(),
                    }))
                    .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                        if attempt.previous().len() > MAX_REDIRECTS {
                            return attempt.error(Refused(format!(
                                "the video link redirected more than {MAX_REDIRECTS} times"
                            )));
                        }
                        match check_link(attempt.url(), &hops) {
                            Ok(()) => attempt.follow(),
                            Err(why) => attempt
                                .error(Refused(format!("the video link redirected to {why}"))),
                        }
                    }))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| format!("the HTTP client for downloads could not be built: {e}"))
    }

    /// Creates the folder, removes stale temporary files once per folder, and
    /// returns its absolute path.
    async fn prepare_dir(&self, dir: &Path) -> Result<PathBuf, String> {
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
    fn start(&self, spec: JobSpec, reuse: bool) -> Job {
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
        tokio::spawn(async move {
            let task_id = spec.task_id.clone();
            let result = tokio::select! {
                _ = ct.cancelled() => Err("the download was cancelled by the client".to_string()),
                r = async {
                    let _slot = slots.acquire_owned().await.map_err(|e| e.to_string())?;
                    fetch(&spec).await
                } => r,
            };
            let state = match result {
                Ok((path, size)) => {
                    tracing::info!(%task_id, size, "video saved");
                    if let Some(ledger) = &spec.state.options.ledger {
                        // Queued now; list_videos reports the saved file.
                        drop(ledger.record_saved(
                            &spec.key.fingerprint(),
                            &task_id,
                            &path.display().to_string(),
                            size,
                        ));
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
    fn record_existing(&self, task_id: &str, path: &Path, size: u64) -> Job {
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
fn reusable(state: &JobState) -> bool {
    match state {
        JobState::Running => true,
        JobState::Saved { path, size } => std::fs::metadata(path)
            .map(|m| m.is_file() && m.len() == *size)
            .unwrap_or(false),
        JobState::Failed(_) => false,
    }
}

/// Everything one background download needs.
struct JobSpec {
    state: Arc<AppState>,
    key: ApiKey,
    task_id: String,
    url: String,
    created_at: Option<String>,
    dir: PathBuf,
    requested: PathBuf,
    target: PathBuf,
    overwrite: bool,
    ct: CancellationToken,
}

/// Why one attempt to fetch a link failed.
enum Fail {
    /// 403/404/410: the link is stale; a fresh lookup may give a new one.
    Link(u16),
    /// The link policy refused the link, a redirect or an address.
    Refused(String),
    Other(String),
}

/// Downloads with one link refresh; returns the final path and verified size.
async fn fetch(spec: &JobSpec) -> Result<(PathBuf, u64), String> {
    let upstream = Upstream::from_base(&spec.state.gateway.config().base_url);
    let client = spec.state.options.downloads.client(&upstream)?;
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
                let task = spec
                    .state
                    .gateway
                    .get_task(&spec.key, &spec.task_id, spec.state.options.sync_upstream)
                    .await
                    .map_err(|e| {
                        format!(
                            "The video link answered HTTP {status}, and looking the task up again \
                             for a fresh link failed: {}",
                            e.user_message(Operation::GetTask)
                        )
                    })?;
                let view = VideoTask::from_upstream(&task, &spec.task_id, SystemTime::now());
                match view.video_urls.first() {
                    Some(u) => url = u.clone(),
                    None => {
                        return Err(format!(
                            "The video link answered HTTP {status}, and a fresh status lookup \
                             gave no new link (status {}). {}",
                            view.status.as_str(),
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

/// Deletes a temporary file when dropped, unless disarmed.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One GET of a result link into a temporary file, verified, then renamed.
async fn attempt(
    client: &reqwest::Client,
    upstream: &Upstream,
    spec: &JobSpec,
    url: &str,
) -> Result<(PathBuf, u64), Fail> {
    let parsed = url::Url::parse(url)
        .map_err(|_| Fail::Other("the task's video URL is not a valid URL".into()))?;
    check_link(&parsed, upstream)
        .map_err(|why| Fail::Refused(format!("the task's video link was refused: {why}")))?;
    let cap = spec.state.options.max_download_bytes;
    let mut resp = client
        .get(parsed)
        .header(reqwest::header::ACCEPT, "video/mp4, video/webm;q=0.9, */*;q=0.1")
        .send()
        .await
        .map_err(|e| match refusal_in(&e) {
            Some(why) => Fail::Refused(why),
            None => Fail::Other(format!(
                "the video link could not be fetched ({}); nothing was saved. Try again in a minute",
                cause(&e)
            )),
        })?;
    let status = resp.status().as_u16();
    if matches!(status, 403 | 404 | 410) {
        return Err(Fail::Link(status));
    }
    if !resp.status().is_success() {
        return Err(Fail::Other(format!(
            "the video link answered HTTP {status}; try again in a few minutes"
        )));
    }
    let is_page = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("text/html"));
    if is_page {
        return Err(Fail::Other(format!(
            "the video link answered with a web page instead of the video; {NOT_SAVED_ADVICE}"
        )));
    }
    let expected = resp.content_length();
    if let Some(len) = expected
        && len > cap
    {
        return Err(Fail::Other(too_large(len, cap)));
    }
    let broke_off = |written: u64, e: &reqwest::Error| {
        let of = expected.map(|e| format!(" of {e}")).unwrap_or_default();
        Fail::Other(format!(
            "the transfer broke off after {written}{of} bytes ({}); nothing was saved. Try again",
            cause(e)
        ))
    };

    // The first bytes must be a video container before any file is created.
    let mut head: Vec<u8> = Vec::new();
    let mut ended = false;
    while head.len() < 16 {
        match resp.chunk().await {
            Ok(Some(c)) => head.extend_from_slice(&c),
            Ok(None) => {
                ended = true;
                break;
            }
            Err(e) => return Err(broke_off(head.len() as u64, &e)),
        }
    }
    if head.is_empty() {
        return Err(Fail::Other(
            "the video link answered with an empty file; nothing was saved".into(),
        ));
    }
    if head.len() as u64 > cap {
        return Err(Fail::Other(too_large(head.len() as u64, cap)));
    }
    if let Some(what) = sniff_not_video(&head) {
        return Err(Fail::Other(not_a_video(what)));
    }

    // The writer's process id is in the name for whoever looks at the folder;
    // liveness is told by the file's lock.
    let temp_path = spec.dir.join(format!(
        "{TEMP_PREFIX}{}-{}-{:016x}{TEMP_SUFFIX}",
        file_stem_for_temp(&spec.task_id),
        std::process::id(),
        rand::random::<u64>()
    ));
    let io_fail = |what: &str, e: std::io::Error| {
        Fail::Other(format!(
            "{what} in the download folder {} failed ({e})",
            spec.dir.display()
        ))
    };
    // `temp` is declared first so that, on failure, the file is closed
    // before the guard removes it.
    let (std_file, mut temp) = create_locked_temp(&temp_path)
        .await
        .map_err(|e| io_fail("creating a temporary file", e))?;
    let mut file = tokio::fs::File::from_std(std_file);
    file.write_all(&head)
        .await
        .map_err(|e| io_fail("writing the video", e))?;
    let mut written: u64 = head.len() as u64;
    // A body that ended within the first bytes needs no further reads.
    let mut more = !ended;
    while more {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                more = false;
                continue;
            }
            Err(e) => return Err(broke_off(written, &e)),
        };
        written += chunk.len() as u64;
        if written > cap {
            return Err(Fail::Other(too_large(written, cap)));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| io_fail("writing the video", e))?;
    }
    file.flush()
        .await
        .map_err(|e| io_fail("writing the video", e))?;
    file.sync_all()
        .await
        .map_err(|e| io_fail("writing the video", e))?;
    // The lock is held (the file stays open) until the file is in place,
    // where renaming an open file is allowed.
    #[cfg(not(unix))]
    drop(file);

    // Verify what is on disk, not what we think we wrote.
    let on_disk = tokio::fs::metadata(&temp_path)
        .await
        .map_err(|e| io_fail("checking the saved file", e))?
        .len();
    if on_disk == 0 {
        return Err(Fail::Other(
            "the video link answered with an empty file; nothing was saved".into(),
        ));
    }
    if on_disk != written {
        return Err(Fail::Other(format!(
            "the saved file has {on_disk} bytes but {written} were received; nothing was saved"
        )));
    }
    if let Some(len) = expected
        && len != on_disk
    {
        return Err(Fail::Other(format!(
            "the transfer ended after {on_disk} of {len} bytes; nothing was saved. Try again"
        )));
    }
    let final_path = place(&temp_path, &spec.target, spec.overwrite)
        .await
        .map_err(|e| io_fail("moving the finished file into place", e))?;
    temp.armed = false;
    #[cfg(unix)]
    drop(file);
    let size = tokio::fs::metadata(&final_path)
        .await
        .map_err(|e| io_fail("checking the saved file", e))?
        .len();
    if size != on_disk {
        return Err(Fail::Other(format!(
            "the saved file {} has {size} bytes instead of {on_disk}",
            final_path.display()
        )));
    }
    Ok((final_path, size))
}

const NOT_SAVED_ADVICE: &str = "nothing was saved. The link may have expired or be wrong: call \
     get_video_status for a fresh link and try download_video again, or give the user the URL";

fn not_a_video(what: &str) -> String {
    format!("the link returned {what}, not a video; {NOT_SAVED_ADVICE}")
}

/// Creates a temporary file and takes its exclusive advisory lock before
/// anything is written, so that the leftover cleanup of any process can tell
/// a live writer (locked) from a dead one (unlocked). Where locks are not
/// supported the file is used unlocked (cleanup then goes by age).
async fn create_locked_temp(path: &Path) -> std::io::Result<(std::fs::File, TempFile)> {
    let p = path.to_path_buf();
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)?;
        if let Err(std::fs::TryLockError::Error(e)) = file.try_lock() {
            tracing::debug!("temporary download file not locked: {e}");
        }
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok((
        file,
        TempFile {
            path: path.to_path_buf(),
            armed: true,
        },
    ))
}

fn too_large(bytes: u64, cap: u64) -> String {
    format!(
        "the video is larger than this server's limit of {} ({} or more); nothing was saved. \
         Give the user the URL instead, or raise HEYGEN_MAX_DOWNLOAD_BYTES",
        human_bytes(cap),
        human_bytes(bytes)
    )
}

fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    let mut msg = e.to_string();
    while let Some(next) = source.source() {
        source = next;
        msg = next.to_string();
    }
    if e.is_timeout() {
        return "no data arrived for too long".into();
    }
    // The root cause, which never contains the URL.
    msg
}

/// The configured API's origin: links on it are trusted (its own addresses,
/// loopback included, are fine), and plain http is accepted only when it is
/// itself on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Upstream {
    /// Lower-cased host (IPv6 without brackets), empty when unparsable.
    host: String,
    port: Option<u16>,
    loopback: bool,
}

impl Upstream {
    fn from_base(base: &str) -> Self {
        let parsed = url::Url::parse(base).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str())
            .map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim_end_matches('.')
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        Self {
            loopback: !host.is_empty() && crate::config::is_loopback_host(&host),
            port: parsed.as_ref().and_then(|u| u.port_or_known_default()),
            host,
        }
    }

    /// The upstream's host when it is a name (not an address literal).
    fn domain(&self) -> Option<String> {
        (!self.host.is_empty() && self.host.parse::<IpAddr>().is_err()).then(|| self.host.clone())
    }

    fn same_origin(&self, url: &url::Url) -> bool {
        !self.host.is_empty()
            && url_host(url).as_deref() == Some(self.host.as_str())
            && url.port_or_known_default() == self.port
    }
}

/// A URL's host, lower-cased, IPv6 without brackets, no trailing dot.
fn url_host(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

/// A download refused by the link policy (the link, a redirect hop or a
/// resolved address); carried through reqwest's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The policy refusal somewhere in an error's chain, if any.
fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// Checks one link (the task's result URL or a redirect hop) before it is
/// fetched; the error says why it is refused ("it …"). Addresses behind
/// host names are checked when they are resolved ([`CheckedResolver`]).
fn check_link(url: &url::Url, upstream: &Upstream) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if upstream.loopback => {}
        "http" => {
            return Err("it is a plain http link (only https links are downloaded)".to_string());
        }
        other => {
            return Err(format!(
                "it has the scheme {other:?} (only https links are downloaded)"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it carries a user name or password".to_string());
    }
    let Some(host) = url_host(url) else {
        return Err("it has no host".to_string());
    };
    if upstream.same_origin(url) {
        return Ok(());
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            check_ip(IpAddr::V4(ip)).map_err(|why| format!("it points to {why} ({ip})"))
        }
        Some(url::Host::Ipv6(ip)) => {
            check_ip(IpAddr::V6(ip)).map_err(|why| format!("it points to {why} ({ip})"))
        }
        _ => check_host_name(&host).map_err(|why| format!("it names {why} ({host:?})")),
    }
}

/// Host names that always mean this machine or a cloud metadata service.
fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host == "localhost" || host.ends_with(".localhost") {
        return Err("this machine");
    }
    if matches!(
        host,
        "metadata.google.internal" | "metadata.goog" | "metadata" | "instance-data"
    ) || host.ends_with(".metadata.google.internal")
    {
        return Err("a cloud metadata service");
    }
    Ok(())
}

/// Whether a download may connect to `ip`; the error names its kind.
fn check_ip(ip: IpAddr) -> Result<(), &'static str> {
    match ip {
        IpAddr::V4(v4) => check_ipv4(v4),
        IpAddr::V6(v6) => check_ipv6(v6),
    }
}

fn check_ipv4(ip: Ipv4Addr) -> Result<(), &'static str> {
    let [a, b, c, _] = ip.octets();
    let why = match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        (0, _, _) => "an unspecified address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (192, 168, _) => "a private network address",
        (172, 16..=31, _) => "a private network address",
        (169, 254, _) => "a link-local address",
        (100, 64..=127, _) => "a carrier-grade NAT address",
        (192, 0, 0) => "an IETF protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (192, 88, 99) => "a 6to4 relay address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return Ok(()),
    };
    Err(why)
}

fn check_ipv6(ip: Ipv6Addr) -> Result<(), &'static str> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Err("an unspecified address");
    }
    if ip.is_loopback() {
        return Err("a loopback address");
    }
    // IPv4 carried in IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    // NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) are judged by the
    // IPv4 address inside.
    let low_v4 = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if let Some(v4) = ip.to_ipv4_mapped() {
        return check_ipv4(v4);
    }
    if seg[..6] == [0; 6] || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return check_ipv4(low_v4);
    }
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        );
        return check_ipv4(v4);
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Err("the cloud metadata address");
    }
    let why = match seg[0] {
        0xfc00..=0xfdff => "a private network (unique local) address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xff00..=0xffff => "a multicast address",
        0x2001 if seg[1] == 0 => "a Teredo tunnel address",
        0x2001 if seg[1] == 0xdb8 => "a documentation address",
        0x0100 if seg[1..4] == [0, 0, 0] => "a discard-only address",
        _ => return Ok(()),
    };
    Err(why)
}

/// The download client's name resolver: resolves with the system resolver
/// and refuses the whole name when any of its addresses may not be
/// connected to, so that only checked addresses are ever used. The
/// upstream API's own host name is not filtered.
struct CheckedResolver {
    trusted_host: Option<String>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let trusted = self.trusted_host.as_deref() == Some(host.as_str());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !trusted {
                for addr in &addrs {
                    if let Err(why) = check_ip(addr.ip()) {
                        return Err(Box::new(Refused(format!(
                            "the video link's host {host:?} resolves to {why} ({})",
                            addr.ip()
                        )))
                            as Box<dyn std::error::Error + Send + Sync>);
                    }
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What the first bytes of a body are, when they are not a video.
fn sniff_not_video(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return None;
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return None;
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    let lower: Vec<u8> = text.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    Some(if lower.starts_with(b"<!doctype html") || has(b"<html") {
        "an HTML page"
    } else if lower.starts_with(b"<?xml") || lower.starts_with(b"<") {
        "an XML document (often a storage service's error message)"
    } else if lower.starts_with(b"{") || lower.starts_with(b"[") {
        "a JSON document"
    } else if std::str::from_utf8(head).map_or_else(|e| e.error_len().is_none(), |_| true) {
        "plain text"
    } else {
        "a file that is neither an MP4 nor a WebM video"
    })
}

/// Moves the verified temporary file to `target` (or, without `overwrite`, to
/// the first free `name (n).mp4`) and returns where it landed.
async fn place(temp: &Path, target: &Path, overwrite: bool) -> std::io::Result<PathBuf> {
    if overwrite {
        tokio::fs::rename(temp, target).await?;
        return Ok(target.to_path_buf());
    }
    for n in 1..=1000u32 {
        let candidate = numbered(target, n);
        // A hard link never replaces an existing file: an atomic "create if absent".
        match tokio::fs::hard_link(temp, &candidate).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(temp).await;
                return Ok(candidate);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links on this file system: check, then rename.
                if tokio::fs::symlink_metadata(&candidate).await.is_ok() {
                    continue;
                }
                tokio::fs::rename(temp, &candidate).await?;
                return Ok(candidate);
            }
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "too many files with this name",
    ))
}

/// `name.mp4` for n = 1, `name (n).mp4` after that.
fn numbered(target: &Path, n: u32) -> PathBuf {
    if n <= 1 {
        return target.to_path_buf();
    }
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".mp4").unwrap_or(&name);
    target.with_file_name(format!("{stem} ({n}).mp4"))
}

/// The first path among `name.mp4`, `name (2).mp4`, … that does not exist yet.
async fn free_path(target: &Path) -> PathBuf {
    for n in 1..=1000u32 {
        let candidate = numbered(target, n);
        if tokio::fs::symlink_metadata(&candidate).await.is_err() {
            return candidate;
        }
    }
    target.to_path_buf()
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Removes the temporary files in `dir` whose writer is gone (see
/// [`writer_gone`]); a live writer's file is never touched. Returns how many
/// were removed.
async fn clean_leftovers(dir: &Path) -> usize {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || clean_leftovers_blocking(&dir, STALE_TEMP_AGE))
        .await
        .unwrap_or(0)
}

fn clean_leftovers_blocking(dir: &Path, max_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temp_name(&name) {
            continue;
        }
        // Not followed: a link named like a temporary file is not ours.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if !writer_gone(&entry.path(), meta.len(), age, max_age) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                removed += 1;
                tracing::info!("removed a partial download left by a stopped process: {name}");
            }
            Err(e) => tracing::debug!("could not remove {name}: {e}"),
        }
    }
    removed
}

/// Whether a temporary file's writer is gone. On Unix a writer holds the
/// file's lock from before its first byte until the file is renamed, so an
/// unlocked file with bytes is a leftover; an unlocked empty one is only
/// once it is older than [`UNLOCKED_EMPTY_GRACE`] (its writer may be between
/// creating and locking it). Where locks cannot be tested, a file older
/// than `max_age` is a leftover.
fn writer_gone(path: &Path, len: u64, age: Duration, max_age: Duration) -> bool {
    #[cfg(unix)]
    {
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => return len > 0 || age >= UNLOCKED_EMPTY_GRACE,
            Err(std::fs::TryLockError::WouldBlock) => return false,
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    #[cfg(not(unix))]
    let _ = (path, len);
    age >= max_age
}

/// Bidirectional-text controls, which can make a name display differently
/// from what it is (e.g. "video\u{202E}4pm.exe").
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
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

fn shorten(s: &str) -> String {
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

fn file_stem_for_temp(task_id: &str) -> String {
    task_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect()
}

fn refusal(http_mode: bool) -> String {
    if http_mode {
        "download_video is turned off on this server: it is a remote (HTTP) server, so the file \
         would be saved on the server's disk, and its operator has not configured a download \
         folder (HEYGEN_DOWNLOAD_DIR / --download-dir). Give the user the video URL from \
         get_video_status instead; it stays valid until 24 h after the video was created."
            .into()
    } else {
        "No download folder is available: set HEYGEN_DOWNLOAD_DIR (or --download-dir) to an \
         absolute folder path in this server's configuration and restart the client. Meanwhile \
         give the user the video URL from get_video_status."
            .into()
    }
}

/// The folder a caller's videos are saved in: the configured one on stdio; in
/// HTTP mode the caller's own subfolder, named by its key's fingerprint, so
/// that callers never replace, see or fill each other's files.
fn caller_dir(dir: &Path, http_mode: bool, key: &ApiKey) -> PathBuf {
    if http_mode {
        dir.join(key.fingerprint())
    } else {
        dir.to_path_buf()
    }
}

/// Puts a download's state into a view: path, size and the next step.
fn annotate(view: &mut VideoTask, job: &Job, retry_tool: &str) {
    match job.current() {
        JobState::Running => {
            view.saved_path = Some(job.target.display().to_string());
            view.size_bytes = None;
            let expiry = view
                .links_expire_at
                .as_deref()
                .map(|t| format!(" (the link stays valid until {t})"))
                .unwrap_or_default();
            view.next_step = format!(
                "The video is being saved in the background to {}{expiry}. Call {retry_tool} for \
                 task_id {} again in about a minute to confirm it is saved (it will not download \
                 twice); meanwhile you can give the user the URL.",
                job.target.display(),
                view.task_id
            );
        }
        JobState::Saved { path, size } => {
            view.saved_path = Some(path.display().to_string());
            view.size_bytes = Some(size);
            view.next_step = format!(
                "The video is saved at {} ({}, verified on disk): tell the user where to find it.",
                path.display(),
                human_bytes(size)
            );
        }
        JobState::Failed(msg) => {
            view.saved_path = None;
            view.size_bytes = None;
            view.next_step = format!(
                "Saving the video automatically failed ({msg}). Call download_video for task_id \
                 {} to try again, or give the user the URL before the link expires.",
                view.task_id
            );
        }
    }
}

impl VideoServer {
    /// `--auto-download`: the first time a status check sees a task completed,
    /// start saving it in the background; report where it is (or will be).
    pub(crate) async fn auto_save(&self, key: &ApiKey, view: &mut VideoTask) {
        let options = &self.state.options;
        if !options.auto_download || view.status != VideoStatus::Completed {
            return;
        }
        let Some(dir) = options.download_dir.clone() else {
            return;
        };
        let Some(url) = view.video_urls.first().cloned() else {
            return;
        };
        let downloads = &options.downloads;
        let dir = caller_dir(&dir, options.http_mode, key);
        let dir = match downloads.prepare_dir(&dir).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("auto-download: {e}");
                return;
            }
        };
        let requested = dir.join(default_file_name(&view.task_id));
        if let Some(job) = downloads.job(&view.task_id, &requested) {
            annotate(view, &job, "get_video_status");
            return;
        }
        if !downloads.first_auto(&view.task_id) {
            return;
        }
        // Saved by an earlier run under the same name: report it, do not fetch again.
        if let Ok(meta) = tokio::fs::metadata(&requested).await
            && meta.is_file()
            && meta.len() > 0
        {
            let job = downloads.record_existing(&view.task_id, &requested, meta.len());
            annotate(view, &job, "get_video_status");
            return;
        }
        let quota_held = if options.http_mode {
            let guard = downloads.inner.quota_check.lock().await;
            if let Err(e) = downloads.check_quota(&dir, None).await {
                tracing::warn!(task_id = %view.task_id, "auto-download skipped: {e}");
                return;
            }
            Some(guard)
        } else {
            None
        };
        let target = free_path(&requested).await;
        let job = downloads.start(
            JobSpec {
                state: self.state.clone(),
                key: key.clone(),
                task_id: view.task_id.clone(),
                url,
                created_at: view.created_at.clone(),
                dir,
                requested,
                target,
                overwrite: false,
                ct: CancellationToken::new(),
            },
            true,
        );
        drop(quota_held);
        tracing::info!(task_id = %view.task_id, "auto-download started");
        annotate(view, &job, "get_video_status");
    }
}

#[tool_router(router = download_router, vis = "pub(crate)")]
impl VideoServer {
    /// Save a completed video's MP4 in the server's download folder
    /// (HEYGEN_DOWNLOAD_DIR, locally ~/Downloads/heygen-videos) and return its
    /// path and size. Do it once completed: links expire 24 h after creation. A
    /// long download goes on in the background: call again to confirm. Over HTTP
    /// the file stays on the server; off unless a folder is set. Free.
    #[tool(
        output_schema = schema_for_output::<VideoTask>(),
        annotations(
            title = "Save a HeyGen video as an MP4 file",
            read_only_hint = false,
            // overwrite: true replaces an existing file.
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn download_video(
        &self,
        Parameters(params): Parameters<DownloadVideoParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let options = &self.state.options;
        let Some(dir) = options.download_dir.clone() else {
            return Err(error_result(refusal(options.http_mode)));
        };
        let name = match params.file_name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => Some(
                sanitize_file_name(n)
                    .map_err(|e| error_result(format!("Invalid arguments: {e}.")))?,
            ),
            _ => None,
        };
        let overwrite = params.overwrite.unwrap_or(false);
        let (key, task_id) = self.key_and_id(&ctx, &params.task_id)?;
        let mut view = self.lookup_with_key(&key, &task_id).await?;
        match view.status {
            VideoStatus::Completed if !view.video_urls.is_empty() => {}
            VideoStatus::Completed => {
                return Err(error_result(format!(
                    "The task reports completed but has no video URL yet: call get_video_status \
                     for task_id {task_id} in about 30 s, then download_video again."
                )));
            }
            VideoStatus::Failed | VideoStatus::Cancelled => {
                return Err(error_result(format!(
                    "There is no video to save: the task {}. {}",
                    if view.status == VideoStatus::Failed {
                        "failed"
                    } else {
                        "was cancelled"
                    },
                    view.next_step
                )));
            }
            _ => {
                return Err(error_result(format!(
                    "The video is not ready yet (status {}, {}%): follow it with \
                     get_video_status (task_id {task_id}) about every 30 s ({WAIT_HINT}), then \
                     call download_video again. Do not call create_video again.",
                    view.status.as_str(),
                    view.progress
                )));
            }
        }
        let downloads = &options.downloads;
        let dir = caller_dir(&dir, options.http_mode, &key);
        let dir = downloads
            .prepare_dir(&dir)
            .await
            .map_err(|e| error_result(format!("Saving the video failed: {e}.")))?;
        let file_name = name.unwrap_or_else(|| default_file_name(&task_id));
        let requested = dir.join(&file_name);
        // Defence in depth: the name is one plain component inside the folder.
        if requested.parent() != Some(dir.as_path()) {
            return Err(error_result(
                "Invalid arguments: file_name must be a plain name.",
            ));
        }
        // A shared (HTTP) server holds each caller to its quota; a call that
        // joins a download already running or saved adds nothing.
        let quota_held = if options.http_mode {
            let guard = downloads.inner.quota_check.lock().await;
            let joins = !overwrite
                && downloads
                    .job(&task_id, &requested)
                    .is_some_and(|j| reusable(&j.current()));
            if !joins {
                let replacing = match tokio::fs::symlink_metadata(&requested).await {
                    Ok(m) if overwrite && m.is_file() => Some(m.len()),
                    _ => None,
                };
                downloads
                    .check_quota(&dir, replacing)
                    .await
                    .map_err(|e| error_result(format!("Saving the video failed: {e}.")))?;
            }
            Some(guard)
        } else {
            None
        };
        let target = if overwrite {
            requested.clone()
        } else {
            free_path(&requested).await
        };
        let call_ct = CancellationToken::new();
        let job = downloads.start(
            JobSpec {
                state: self.state.clone(),
                key,
                task_id: task_id.clone(),
                url: view.video_urls.first().cloned().unwrap_or_default(),
                created_at: view.created_at.clone(),
                dir,
                requested: requested.clone(),
                target,
                overwrite,
                ct: call_ct.clone(),
            },
            !overwrite,
        );
        // Registered (it counts against the quota now): let other calls check.
        drop(quota_held);

        let mut rx = job.state.clone();
        let finished = tokio::select! {
            biased;
            _ = ctx.ct.cancelled() => {
                // Stop a download this call started; one started earlier keeps going.
                call_ct.cancel();
                return Err(error_result(
                    "The download was cancelled by the client; no file was saved by this call.",
                ));
            }
            r = tokio::time::timeout(
                options.download_deadline,
                rx.wait_for(|s| *s != JobState::Running),
            ) => r.is_ok(),
        };
        let state = job.current();
        let headline = match (&state, finished) {
            (JobState::Failed(msg), _) => return Err(error_result(msg.clone())),
            (JobState::Saved { path, size }, _) => {
                if requested.exists() && *path != requested && !overwrite {
                    format!(
                        "Saved the video to {} ({}); a file named {} already existed, so it was \
                         kept and the video got a new name.",
                        path.display(),
                        human_bytes(*size),
                        file_name
                    )
                } else {
                    format!(
                        "Saved the video to {} ({}).",
                        path.display(),
                        human_bytes(*size)
                    )
                }
            }
            (JobState::Running, _) => format!(
                "The download is taking longer than {} s and continues in the background; the \
                 file will be at {}.",
                options.download_deadline.as_secs_f64().round(),
                job.target.display()
            ),
        };
        annotate(&mut view, &job, "download_video");
        Ok(view.result(view.summary(&headline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn numbered_names() {
        let t = Path::new("/d/clip.mp4");
        assert_eq!(numbered(t, 1), PathBuf::from("/d/clip.mp4"));
        assert_eq!(numbered(t, 2), PathBuf::from("/d/clip (2).mp4"));
    }

    #[tokio::test]
    async fn place_never_replaces_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("v.mp4");
        std::fs::write(&target, b"old").unwrap();
        let temp = dir.path().join(".heygen-x.part");
        std::fs::write(&temp, b"new").unwrap();
        let landed = place(&temp, &target, false).await.unwrap();
        assert_eq!(landed, dir.path().join("v (2).mp4"));
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read(&landed).unwrap(), b"new");
        assert!(!temp.exists());

        std::fs::write(&temp, b"newer").unwrap();
        let landed = place(&temp, &target, true).await.unwrap();
        assert_eq!(landed, target);
        assert_eq!(std::fs::read(&target).unwrap(), b"newer");
        assert!(!temp.exists());
    }

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

    #[test]
    fn leftovers_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dead = d.join(".heygen-task-999999999-0000000000000001.part");
        let keep = d.join("video.mp4");
        let young_empty = d.join(".heygen-task-1-0000000000000002.part");
        std::fs::write(&dead, b"partial bytes").unwrap();
        std::fs::write(&keep, b"x").unwrap();
        std::fs::write(&young_empty, b"").unwrap();
        // A live writer: this process holds the lock on an open file.
        let live = d.join(".heygen-task-2-0000000000000003.part");
        let live_file = std::fs::File::create(&live).unwrap();
        live_file.lock().unwrap();
        std::fs::write(&live, b"still writing").unwrap();

        let removed = clean_leftovers_blocking(d, STALE_TEMP_AGE);
        if cfg!(unix) {
            assert_eq!(removed, 1);
            assert!(!dead.exists());
            assert!(live.exists(), "a live writer's file is never removed");
            assert!(young_empty.exists(), "may be between create and lock");
        } else {
            // By age only: nothing is a day old.
            assert_eq!(removed, 0);
        }
        assert!(keep.exists());

        // An old empty unlocked file is a leftover too; the live one stays
        // even when it is old.
        let old = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for p in [&young_empty, &live] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        clean_leftovers_blocking(d, STALE_TEMP_AGE);
        assert!(!young_empty.exists());
        if cfg!(unix) {
            assert!(live.exists());
        }
        drop(live_file);
        // The writer is gone: its file is now a leftover.
        if cfg!(unix) {
            assert_eq!(clean_leftovers_blocking(d, STALE_TEMP_AGE), 1);
            assert!(!live.exists());
        }
        assert!(keep.exists());
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

    fn up(base: &str) -> Upstream {
        Upstream::from_base(base)
    }

    fn link(u: &str, upstream: &Upstream) -> Result<(), String> {
        check_link(&url::Url::parse(u).unwrap(), upstream)
    }

    #[test]
    fn links_must_be_https_without_credentials_to_public_addresses() {
        let remote = up("https://api.heygen.com");
        let local = up("http://127.0.0.1:4010");
        assert!(link("https://cdn.example.com/v.mp4", &remote).is_ok());
        assert!(link("https://93.184.216.34/v.mp4", &remote).is_ok());
        // Plain http only when the upstream itself is on loopback.
        let e = link("http://cdn.example.com/v.mp4", &remote).unwrap_err();
        assert!(e.contains("http"), "{e}");
        assert!(link("http://cdn.example.com/v.mp4", &local).is_ok());
        assert!(link("http://localhost:4010/v.mp4", &up("http://localhost:4010")).is_ok());
        assert!(link("ftp://cdn.example.com/v.mp4", &local).is_err());
        assert!(link("file:///etc/passwd", &local).is_err());
        // Credentials in the link, even on the upstream's own origin.
        for u in [
            "https://user:pw@cdn.example.com/v.mp4",
            "https://user@cdn.example.com/v.mp4",
            "https://:pw@cdn.example.com/v.mp4",
            "http://u:p@127.0.0.1:4010/v.mp4",
        ] {
            let e = link(u, &local).unwrap_err();
            assert!(e.contains("user name or password"), "{u}: {e}");
        }
        // The upstream's own origin may be loopback; another port may not.
        assert!(link("http://127.0.0.1:4010/files/a.mp4", &local).is_ok());
        for u in [
            "http://127.0.0.1:4011/v.mp4",
            "http://localhost:4010/v.mp4",
            "https://127.0.0.1/v.mp4",
            "https://localhost/v.mp4",
            "https://LOCALHOST./v.mp4",
            "https://a.localhost/v.mp4",
            "https://2130706433/v.mp4",
            "https://0x7f.1/v.mp4",
            "https://[::1]/v.mp4",
            "https://[::ffff:127.0.0.1]/v.mp4",
            "https://10.1.2.3/v.mp4",
            "https://172.16.0.1/v.mp4",
            "https://172.31.255.255/v.mp4",
            "https://192.168.1.1/v.mp4",
            "https://169.254.169.254/latest/meta-data/",
            "https://169.254.1.1/v.mp4",
            "https://100.64.0.1/v.mp4",
            "https://0.0.0.0/v.mp4",
            "https://224.0.0.1/v.mp4",
            "https://255.255.255.255/v.mp4",
            "https://[fd00:ec2::254]/v.mp4",
            "https://[fc00::1]/v.mp4",
            "https://[fe80::1]/v.mp4",
            "https://[::]/v.mp4",
            "https://[ff02::1]/v.mp4",
            "https://[::ffff:10.0.0.1]/v.mp4",
            "https://[::ffff:169.254.169.254]/v.mp4",
            "https://[64:ff9b::a00:1]/v.mp4",
            "https://[2002:a00:1::]/v.mp4",
            "https://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert!(link(u, &local).is_err(), "{u} must be refused");
            assert!(link(u, &remote).is_err(), "{u} must be refused");
        }
        let e = link("https://169.254.169.254/", &remote).unwrap_err();
        assert!(e.contains("metadata"), "{e}");
        let e = link("https://10.0.0.1/", &remote).unwrap_err();
        assert!(e.contains("private"), "{e}");
    }

    #[test]
    fn address_kinds() {
        let ok = |s: &str| check_ip(s.parse().unwrap()).is_ok();
        for public in [
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::",
        ] {
            assert!(ok(public), "{public}");
        }
        for private in [
            "127.0.0.1",
            "127.255.0.1",
            "10.0.0.1",
            "192.168.0.1",
            "172.20.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fdff::1",
            "fe80::1",
            "febf::1",
            "ff00::1",
            "::ffff:127.0.0.1",
            "::ffff:192.168.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2001::1",
            "2001:db8::1",
        ] {
            assert!(!ok(private), "{private}");
        }
    }

    #[test]
    fn only_video_containers_pass_the_sniff() {
        assert_eq!(sniff_not_video(&crate::simulator::SAMPLE_MP4[..16]), None);
        assert_eq!(
            sniff_not_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"),
            None
        );
        let kind = |b: &[u8]| sniff_not_video(b).unwrap_or("video");
        assert_eq!(kind(b"<!DOCTYPE html><html>"), "an HTML page");
        assert_eq!(kind(b"\n  <html><body>"), "an HTML page");
        assert!(kind(b"<?xml version=\"1.0\"?><Error>").contains("XML"));
        assert!(kind(b"<Error><Code>AccessDenied").contains("XML"));
        assert_eq!(kind(br#"{"error": "nope"}"#), "a JSON document");
        assert_eq!(kind(b"[1,2,3]"), "a JSON document");
        assert_eq!(kind(b"Forbidden"), "plain text");
        assert!(kind(b"\x00\x01\x02\x03\xff\xfe\x00\x00").contains("neither"));
        assert!(kind(b"ftyp").contains("text"), "too short");
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let resolve = |trusted: Option<&str>| {
            CheckedResolver {
                trusted_host: trusted.map(str::to_string),
            }
            .resolve(reqwest::dns::Name::from_str("localhost").unwrap())
        };
        // "localhost" resolves to loopback addresses: refused, with the reason.
        let Err(e) = resolve(None).await else {
            panic!("a name resolving to loopback was accepted")
        };
        let why = refusal_in(e.as_ref()).expect("a policy refusal");
        assert!(why.contains("loopback"), "{why}");
        // The upstream's own host name is not filtered.
        let addrs: Vec<SocketAddr> = resolve(Some("localhost")).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
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
