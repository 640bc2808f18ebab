//! One transfer of a result link: the HTTP client with its link and address
//! policy (https only, no credentials, public addresses only, checked at
//! every redirect hop and every name resolution), the sniff of the first
//! bytes, streaming into a locked temporary file, and the checks on disk.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use tokio::io::AsyncWriteExt;

use super::{
    JobSpec,
    names::file_stem_for_temp,
    place::{TEMP_PREFIX, TEMP_SUFFIX, create_locked_temp, place},
};
use crate::video::human_bytes;

/// Most redirects one download follows.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// A stalled transfer (no bytes for this long) is given up.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the client for result links: every name it resolves and every
/// redirect hop it follows is checked against [`check_link`] / [`check_ip`];
/// it connects directly (no proxy), so that the checked addresses are the
/// ones connected to.
pub(crate) fn build_client(upstream: &Upstream) -> Result<reqwest::Client, String> {
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
                Err(why) => attempt.error(Refused(format!("the video link redirected to {why}"))),
            }
        }))
        .build()
        .map_err(|e| e.to_string())
}

/// Why one attempt to fetch a link failed.
pub(crate) enum Fail {
    /// 403/404/410: the link is stale; a fresh lookup may give a new one.
    Link(u16),
    /// The link policy refused the link, a redirect or an address.
    Refused(String),
    Other(String),
}

/// One GET of a result link into a temporary file, verified, then renamed.
pub(crate) async fn attempt(
    client: &reqwest::Client,
    upstream: &Upstream,
    spec: &JobSpec,
    url: &str,
) -> Result<(PathBuf, u64), Fail> {
    let parsed = url::Url::parse(url)
        .map_err(|_| Fail::Other("the task's video URL is not a valid URL".into()))?;
    check_link(&parsed, upstream)
        .map_err(|why| Fail::Refused(format!("the task's video link was refused: {why}")))?;
    let cap = spec.max_bytes;
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

pub(crate) const NOT_SAVED_ADVICE: &str = "nothing was saved. The link may have expired or be wrong: call \
     get_video_status for a fresh link and try download_video again, or give the user the URL";

pub(crate) fn not_a_video(what: &str) -> String {
    format!("the link returned {what}, not a video; {NOT_SAVED_ADVICE}")
}

pub(crate) fn too_large(bytes: u64, cap: u64) -> String {
    format!(
        "the video is larger than this server's limit of {} ({} or more); nothing was saved. \
         Give the user the URL instead, or raise HEYGEN_MAX_DOWNLOAD_BYTES",
        human_bytes(cap),
        human_bytes(bytes)
    )
}

pub(crate) fn cause(e: &reqwest::Error) -> String {
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
pub(crate) struct Upstream {
    /// Lower-cased host (IPv6 without brackets), empty when unparsable.
    host: String,
    port: Option<u16>,
    loopback: bool,
}

impl Upstream {
    pub(crate) fn from_base(base: &str) -> Self {
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
            loopback: !host.is_empty() && crate::net::is_loopback_host(&host),
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
pub(crate) fn url_host(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

/// A download refused by the link policy (the link, a redirect hop or a
/// resolved address); carried through reqwest's error chain.
#[derive(Debug)]
pub(crate) struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The policy refusal somewhere in an error's chain, if any.
pub(crate) fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
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
pub(crate) fn check_link(url: &url::Url, upstream: &Upstream) -> Result<(), String> {
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
pub(crate) fn check_host_name(host: &str) -> Result<(), &'static str> {
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
pub(crate) fn check_ip(ip: IpAddr) -> Result<(), &'static str> {
    match ip {
        IpAddr::V4(v4) => check_ipv4(v4),
        IpAddr::V6(v6) => check_ipv6(v6),
    }
}

pub(crate) fn check_ipv4(ip: Ipv4Addr) -> Result<(), &'static str> {
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

pub(crate) fn check_ipv6(ip: Ipv6Addr) -> Result<(), &'static str> {
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
pub(crate) struct CheckedResolver {
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
pub(crate) fn sniff_not_video(head: &[u8]) -> Option<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
