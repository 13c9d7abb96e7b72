//! The HTTP client of the Hub: one `ureq` agent, the token (sent only to the endpoint), bounded
//! retries with exponential backoff on connection errors and 5xx answers, and errors that name
//! the request, the URL (without its query string) and what to do, never the token.
use super::{resolve_endpoint, HubError, Result};
use indicatif::ProgressBar;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A Hub access token. Its `Debug` form is redacted; the secret leaves the process only as an
/// `Authorization` header.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Wraps a token string (surrounding whitespace removed); `None` when empty.
    pub fn new(s: &str) -> Option<Token> {
        let t = s.trim();
        (!t.is_empty()).then(|| Token(t.to_string()))
    }

    /// The token file: `$HF_HOME/token` (default `~/.cache/huggingface/token`).
    pub fn token_file() -> PathBuf {
        super::hf_home().join("token")
    }

    /// `HF_TOKEN`, else the token file, else `None`.
    pub fn from_env() -> Option<Token> {
        if let Some(t) = std::env::var("HF_TOKEN").ok().and_then(|s| Token::new(&s)) {
            return Some(t);
        }
        std::fs::read_to_string(Self::token_file())
            .ok()
            .and_then(|s| Token::new(&s))
    }

    fn secret(&self) -> &str {
        &self.0
    }
}

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least 1).
    pub tries: u32,
    /// Wait before the second try; doubled before each further one.
    pub base: Duration,
    /// Upper bound of one wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 4,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
        }
    }
}

impl RetryPolicy {
    /// The default policy, with the base wait taken from `EDGEBERT_HUB_BACKOFF_MS` when set
    /// (tests use a few milliseconds).
    pub fn from_env() -> Self {
        let mut p = RetryPolicy::default();
        if let Some(ms) = std::env::var("EDGEBERT_HUB_BACKOFF_MS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            p.base = Duration::from_millis(ms);
            p.max_delay = p.max_delay.max(p.base);
        }
        p
    }

    /// The wait after failed try `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.max_delay)
    }
}

/// A request body.
pub(crate) enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, reopened on every try, counted on `bar`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        bar: &'a ProgressBar,
    },
}

/// Whether a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and uploads of content-addressed objects: retried on connection errors and 5xx.
    Idempotent,
    /// The commit: retried only when no connection was made, so it is never applied twice.
    ConnectOnly,
}

/// One request.
pub(crate) struct Req<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// What the request is for, in error messages ("create repo", "LFS upload of model.safetensors").
    pub what: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Body<'a>,
    /// Send the token (only ever to URLs on the endpoint).
    pub auth: bool,
    pub retry: Retry,
}

/// The Hub client: endpoint, optional token, retry policy, progress setting.
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<Token>,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// Show progress bars (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    agent: ureq::Agent,
}

impl HubClient {
    /// A client for `endpoint` (see [`resolve_endpoint`]) with `token`.
    pub fn new(endpoint: Option<&str>, token: Option<Token>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .user_agent(concat!("edgebert-train/", env!("CARGO_PKG_VERSION")))
            .build();
        HubClient {
            endpoint: resolve_endpoint(endpoint),
            token,
            retry: RetryPolicy::from_env(),
            progress: true,
            agent,
        }
    }

    /// A client for `endpoint` with the token from `HF_TOKEN` or the token file.
    pub fn from_env(endpoint: Option<&str>) -> Self {
        Self::new(endpoint, Token::from_env())
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Fails with [`HubError::NoToken`] when no token is set.
    pub fn require_token(&self) -> Result<()> {
        if self.token.is_none() {
            return Err(HubError::NoToken {
                token_file: Token::token_file(),
            });
        }
        Ok(())
    }

    /// Removes the token from a message (defence in depth: servers should never echo it).
    pub(crate) fn scrub(&self, msg: &str) -> String {
        match &self.token {
            Some(t) => msg.replace(t.secret(), "<redacted>"),
            None => msg.to_string(),
        }
    }

    fn on_endpoint(&self, url: &str) -> bool {
        url.strip_prefix(&self.endpoint)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Sends a request, retrying as its [`Retry`] allows.
    pub(crate) fn send(&self, r: Req<'_>) -> Result<ureq::Response> {
        let tries = self.retry.tries.max(1);
        let url_shown = strip_query(r.url);
        let mut last = String::new();
        for attempt in 1..=tries {
            let mut req = self.agent.request(r.method, r.url);
            for (k, v) in &r.headers {
                req = req.set(k, v);
            }
            if r.auth && self.on_endpoint(r.url) {
                if let Some(t) = &self.token {
                    req = req.set("Authorization", &format!("Bearer {}", t.secret()));
                }
            }
            let result = match &r.body {
                Body::Empty => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
                Body::File {
                    path,
                    offset,
                    len,
                    bar,
                } => {
                    let mut f = std::fs::File::open(path).map_err(|e| HubError::io(*path, e))?;
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| HubError::io(*path, e))?;
                    let start = bar.position();
                    let reader = CountingReader {
                        inner: f.take(*len),
                        bar,
                    };
                    let res = req.set("Content-Length", &len.to_string()).send(reader);
                    if res.is_err() {
                        bar.set_position(start);
                    }
                    res
                }
            };
            match result {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(status, resp)) => {
                    if status == 401 || status == 403 {
                        let hint = if self.token.is_none() {
                            " (no token was sent: set HF_TOKEN)".to_string()
                        } else if r.method != "GET" {
                            " (it needs write access to the repo)".to_string()
                        } else {
                            String::new()
                        };
                        return Err(HubError::TokenRejected {
                            endpoint: self.endpoint.clone(),
                            status,
                            what: r.what.to_string(),
                            hint,
                        });
                    }
                    let message = self.scrub(&error_message(resp));
                    let retryable =
                        (status >= 500 || status == 429) && r.retry == Retry::Idempotent;
                    if retryable && attempt < tries {
                        std::thread::sleep(self.retry.delay(attempt));
                        continue;
                    }
                    return Err(HubError::Status {
                        what: r.what.to_string(),
                        url: url_shown,
                        status,
                        tries: if retryable {
                            format!(" after {attempt} tries")
                        } else {
                            String::new()
                        },
                        message,
                    });
                }
                Err(ureq::Error::Transport(t)) => {
                    last = self.scrub(&transport_message(&t));
                    let connect = matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
                    );
                    let retryable = match t.kind() {
                        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => false,
                        _ => r.retry == Retry::Idempotent || connect,
                    };
                    if !retryable {
                        return Err(HubError::Connection {
                            what: r.what.to_string(),
                            url: url_shown,
                            tries: attempt,
                            message: last,
                        });
                    }
                    if attempt < tries {
                        std::thread::sleep(self.retry.delay(attempt));
                    }
                }
            }
        }
        Err(HubError::Connection {
            what: r.what.to_string(),
            url: url_shown,
            tries,
            message: last,
        })
    }

    /// Sends a request and parses its JSON answer.
    pub(crate) fn send_json(&self, r: Req<'_>) -> Result<serde_json::Value> {
        let what = r.what.to_string();
        let url = strip_query(r.url);
        let resp = self.send(r)?;
        let mut body = String::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_string(&mut body)
            .map_err(|e| HubError::Connection {
                what: what.clone(),
                url: url.clone(),
                tries: 1,
                message: format!("reading the answer: {e}"),
            })?;
        serde_json::from_str(&body).map_err(|e| HubError::Protocol {
            what,
            url,
            message: format!("invalid JSON: {e}"),
        })
    }
}

/// The URL without its query string (presigned URLs carry signatures there).
pub(crate) fn strip_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

/// A transport error without its URL (the error message names the URL once).
fn transport_message(t: &ureq::Transport) -> String {
    use std::error::Error as _;
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s += ": ";
        s += m;
    }
    if let Some(src) = t.source() {
        s += ": ";
        s += &src.to_string();
    }
    s
}

/// The server's error text: `X-Error-Message`, a JSON `error`, or the start of the body.
fn error_message(resp: ureq::Response) -> String {
    if let Some(m) = resp.header("X-Error-Message") {
        return m.to_string();
    }
    let mut body = String::new();
    let _ = resp.into_reader().take(4096).read_to_string(&mut body);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return e.to_string();
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "(no message)".into()
    } else {
        t.chars().take(300).collect()
    }
}

struct CountingReader<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            tries: 4,
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(350));
    }

    #[test]
    fn token_is_redacted() {
        let t = Token::new(" hf_secret \n").expect("token");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let c = HubClient::new(Some("http://127.0.0.1:9"), Some(t));
        assert_eq!(c.scrub("x hf_secret y"), "x <redacted> y");
        assert!(Token::new("  ").is_none());
    }

    #[test]
    fn query_is_stripped() {
        assert_eq!(
            strip_query("https://s3/x?X-Amz-Signature=abc"),
            "https://s3/x"
        );
    }
}
