//! Fault markers: the `[marker]`s of a prompt, parsed once at create time into
//! typed values. What concerns the create answer stays here; what concerns the
//! task afterwards ([`TaskFaults`]) travels inside the task id (see `ids.rs`).

use std::time::Duration;

/// Longest marker (between the brackets) that is recognised at all.
const MAX_MARKER: usize = 40;
/// Longest time any marker can ask for.
const MAX_SECONDS: f64 = 3600.0;

/// Why a create is refused before any task exists (nothing is billed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `[401]`
    Unauthorized,
    /// `[402]`
    PaymentRequired,
    /// `[422:CODE]`
    Validation(String),
    /// `[echo-key]`: a 422 whose message echoes the caller's key.
    EchoKey,
    /// `[429]`: with `Retry-After: 1`.
    RateLimited,
    /// `[429-bare]`: no `Retry-After`.
    RateLimitedBare,
    /// `[500]`, `[502]` (HTML body), `[503]`.
    Status(u16),
}

/// How the answer to an accepted create misbehaves (the task exists anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateAnswer {
    Json,
    /// `[drop]`: the connection is cut mid-answer.
    Drop,
    /// `[garbage]`: a 200 with an HTML body.
    Garbage,
    /// `[truncated]`: a 200 with half the JSON.
    Truncated,
}

/// Which status lookups a `[get:…]` fault hits, counted per simulator process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Window {
    /// Every lookup.
    Always,
    /// `[get:FAULT:N]`: the first N lookups.
    First(u16),
    /// `[get:FAULT:afterK]`: every lookup after the first K.
    After(u16),
}

impl Window {
    /// Whether the `n`-th lookup (1-based) is hit.
    pub(super) fn hits(self, n: u64) -> bool {
        match self {
            Window::Always => true,
            Window::First(first) => n <= u64::from(first),
            Window::After(skip) => n > u64::from(skip),
        }
    }
}

/// What a faulty status lookup answers instead of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LookupFault {
    /// An error status: 401, 404, 429, 500, 502, 503 (others answer 500).
    Status(u16),
    /// A 200 with a non-JSON body.
    Garbage,
    /// A 200 with half the JSON.
    Truncated,
    /// The connection is cut mid-answer.
    Drop,
    /// The right answer, after a pause.
    Slow(Duration),
}

/// How the video file (`/files/{id}.mp4`) misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileFault {
    /// `[file:truncate]`: full Content-Length, half the body, then the cut.
    Truncate,
    /// `[file:slow=S]`: the file trickles out over S seconds.
    Slow(Duration),
    /// `[file:nolength]`: chunked, no Content-Length.
    NoLength,
    /// `[file:empty]`: a 200 with an empty body.
    Empty,
    /// `[file:html]`: a 200 with a web page.
    Html,
}

/// Everything about a task after its creation; encoded in the task id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TaskFaults {
    /// `[fail]`
    pub fail: bool,
    /// `[status:X]`: reported while running, instead of pending/processing.
    pub odd_status: Option<String>,
    /// `[output]`: the result under `output` instead of `results`.
    pub output_shape: bool,
    /// `[minimal]`: status answers carry only id and status.
    pub minimal: bool,
    /// `[link:403]`: the first link handed out answers 403.
    pub link_403: bool,
    /// `[get:FAULT…]`
    pub lookup: Option<(LookupFault, Window)>,
    /// `[file:…]`
    pub file: Option<FileFault>,
}

/// Every fault marker of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Faults {
    /// The first refusal that applies, in the order the markers are checked.
    pub refusal: Option<Refusal>,
    /// `[429x:N]`: the first N creates of this prompt are rate limited.
    pub rate_limited_times: Option<u64>,
    /// `[slow:S]`: the create answer comes after S seconds.
    pub answer_delay: Option<Duration>,
    pub answer: CreateAnswer,
    /// `[after:S]`: the render time, instead of the simulator's own.
    pub render: Option<Duration>,
    pub task: TaskFaults,
}

impl Faults {
    pub(super) fn parse(prompt: &str) -> Faults {
        let m = Markers(markers(prompt));
        Faults {
            refusal: refusal(&m),
            rate_limited_times: m.value("429x").map(|n| n.parse().unwrap_or(1)),
            answer_delay: m.value("slow").map(seconds),
            answer: if m.has("drop") {
                CreateAnswer::Drop
            } else if m.has("garbage") {
                CreateAnswer::Garbage
            } else if m.has("truncated") {
                CreateAnswer::Truncated
            } else {
                CreateAnswer::Json
            },
            render: m.value("after").map(seconds),
            task: TaskFaults {
                fail: m.has("fail"),
                odd_status: m.value("status").map(String::from),
                output_shape: m.has("output"),
                minimal: m.has("minimal"),
                link_403: m.value("link") == Some("403"),
                lookup: m
                    .0
                    .iter()
                    .find_map(|x| lookup_fault(x.strip_prefix("get:")?)),
                file: m.value("file").and_then(file_fault),
            },
        }
    }
}

fn refusal(m: &Markers) -> Option<Refusal> {
    if m.has("401") {
        return Some(Refusal::Unauthorized);
    }
    if m.has("402") {
        return Some(Refusal::PaymentRequired);
    }
    if let Some(code) = m.value("422") {
        return Some(Refusal::Validation(code.to_string()));
    }
    if m.has("echo-key") {
        return Some(Refusal::EchoKey);
    }
    if m.has("429") {
        return Some(Refusal::RateLimited);
    }
    if m.has("429-bare") {
        return Some(Refusal::RateLimitedBare);
    }
    [500u16, 502, 503]
        .into_iter()
        .find(|code| m.has(&code.to_string()))
        .map(Refusal::Status)
}

/// `FAULT`, `FAULT:N` or `FAULT:afterK` (the part after `get:`).
fn lookup_fault(spec: &str) -> Option<(LookupFault, Window)> {
    let (fault, count) = spec.split_once(':').unwrap_or((spec, ""));
    let fault = match fault {
        "garbage" => LookupFault::Garbage,
        "truncated" => LookupFault::Truncated,
        "drop" => LookupFault::Drop,
        f => match f.strip_prefix("slow=") {
            Some(s) => LookupFault::Slow(seconds(s)),
            None => LookupFault::Status(f.parse().ok()?),
        },
    };
    let window = match count.strip_prefix("after") {
        Some(k) => Window::After(k.parse::<u64>().map_or(1, saturate)),
        None => count
            .parse::<u64>()
            .map_or(Window::Always, |n| Window::First(saturate(n))),
    };
    Some((fault, window))
}

fn saturate(n: u64) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn file_fault(spec: &str) -> Option<FileFault> {
    Some(match spec {
        "truncate" => FileFault::Truncate,
        "nolength" => FileFault::NoLength,
        "empty" => FileFault::Empty,
        "html" => FileFault::Html,
        s => FileFault::Slow(seconds(s.strip_prefix("slow=")?)),
    })
}

/// A marker's number of seconds (fractions allowed), 1 s when unreadable.
fn seconds(v: &str) -> Duration {
    Duration::from_secs_f64(v.parse::<f64>().unwrap_or(1.0).clamp(0.0, MAX_SECONDS))
}

struct Markers(Vec<String>);

impl Markers {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|x| x == name)
    }

    /// The value of the first `name:VALUE` marker.
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|m| m.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
    }
}

/// Every `[marker]` in a prompt, lowercased, without brackets.
pub(super) fn markers(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find('[') {
        let after = &rest[start + 1..];
        let Some(end) = after.find(']') else { break };
        let m = after[..end].trim().to_ascii_lowercase();
        if !m.is_empty() && m.len() <= MAX_MARKER {
            out.push(m);
        }
        rest = &after[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found() {
        assert_eq!(
            markers("make [FAIL] and [after:2] [get:500:1] ok"),
            vec!["fail", "after:2", "get:500:1"]
        );
        let f = Faults::parse("[422:no_compatible_channel]");
        assert_eq!(
            f.refusal,
            Some(Refusal::Validation("no_compatible_channel".into()))
        );
    }

    #[test]
    fn every_marker_parses_to_its_value() {
        let f = Faults::parse(
            "[fail][after:1.5][status:Rendering][output][minimal][link:403]\
             [get:slow=3:after2][file:slow=2][slow:0.5][drop][429x:3]",
        );
        assert_eq!(f.refusal, None);
        assert_eq!(f.rate_limited_times, Some(3));
        assert_eq!(f.answer_delay, Some(Duration::from_millis(500)));
        assert_eq!(f.answer, CreateAnswer::Drop);
        assert_eq!(f.render, Some(Duration::from_millis(1500)));
        assert_eq!(
            f.task,
            TaskFaults {
                fail: true,
                odd_status: Some("rendering".into()),
                output_shape: true,
                minimal: true,
                link_403: true,
                lookup: Some((LookupFault::Slow(Duration::from_secs(3)), Window::After(2))),
                file: Some(FileFault::Slow(Duration::from_secs(2))),
            }
        );
        assert_eq!(
            Faults::parse("[get:500:2]").task.lookup,
            Some((LookupFault::Status(500), Window::First(2)))
        );
        assert_eq!(
            Faults::parse("[get:garbage]").task.lookup,
            Some((LookupFault::Garbage, Window::Always))
        );
        assert_eq!(Faults::parse("[get:nonsense]").task.lookup, None);
        assert_eq!(
            Faults::parse("[503][429]").refusal,
            Some(Refusal::RateLimited)
        );
        assert_eq!(Faults::parse("[502]").refusal, Some(Refusal::Status(502)));
        assert_eq!(Faults::parse("[truncated]").answer, CreateAnswer::Truncated);
        assert_eq!(
            Faults::parse("[file:html]").task.file,
            Some(FileFault::Html)
        );
    }

    #[test]
    fn windows_count_lookups() {
        assert!(Window::Always.hits(1));
        assert!(Window::First(2).hits(2) && !Window::First(2).hits(3));
        assert!(!Window::After(1).hits(1) && Window::After(1).hits(2));
    }
}
