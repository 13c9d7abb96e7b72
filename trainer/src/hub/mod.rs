//! The Hugging Face Hub, both ways: pushing a fine-tuned model folder in one commit
//! ([`upload`]), its model card ([`card`]), and the HTTP client both directions share
//! ([`HubClient`]: endpoint, token, retries with exponential backoff, error mapping).
//! Datasets by hub id are downloaded by [`crate::data::hub`] through the same client.
//!
//! The endpoint is `--endpoint`, else `HF_ENDPOINT`, else `https://huggingface.co`. The token is
//! `HF_TOKEN`, else the token file (`$HF_HOME/token`, default `~/.cache/huggingface/token`); it is
//! sent only as an `Authorization` header to the endpoint and never printed, logged or written.
pub mod card;
pub mod client;
pub mod upload;

pub use client::{HubClient, RetryPolicy, Token};
pub use upload::{push_folder, PushOptions, PushSummary};

use std::path::PathBuf;

/// The Hub endpoint used when neither `--endpoint` nor `HF_ENDPOINT` is set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Everything that can go wrong talking to the Hub or preparing a push.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The endpoint answered 401 or 403.
    #[error("token rejected by {endpoint} (HTTP {status}) during {what}: check HF_TOKEN{hint}")]
    TokenRejected {
        /// The Hub endpoint.
        endpoint: String,
        /// 401 or 403.
        status: u16,
        /// The request that was refused (e.g. "create repo").
        what: String,
        /// Extra advice (a missing token, write access).
        hint: String,
    },
    /// Pushing needs a token and none was found.
    #[error("no Hub token: set HF_TOKEN or write one to {} (a write token for pushes)", token_file.display())]
    NoToken {
        /// The token file that was looked at.
        token_file: PathBuf,
    },
    /// The server answered with an error status (after retries for 5xx).
    #[error("{what}: {url} answered HTTP {status}{tries}: {message}")]
    Status {
        /// The request (e.g. "commit").
        what: String,
        /// The URL, without its query string.
        url: String,
        /// The HTTP status.
        status: u16,
        /// " after N tries" when retried, else empty.
        tries: String,
        /// The server's error message, if any.
        message: String,
    },
    /// No connection could be made or it broke, on every try.
    #[error("{what}: cannot reach {url} after {tries} tries: {message}")]
    Connection {
        /// The request.
        what: String,
        /// The URL, without its query string.
        url: String,
        /// Tries made.
        tries: u32,
        /// The last transport error.
        message: String,
    },
    /// The server's answer is not what the Hub API documents.
    #[error("{what}: unexpected answer from {url}: {message}")]
    Protocol {
        /// The request.
        what: String,
        /// The URL, without its query string.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A local file or option is unusable for a push (missing file, bad repo id, ...).
    #[error("{0}")]
    Invalid(String),
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The Hub client's result type.
pub type Result<T> = std::result::Result<T, HubError>;

/// The endpoint: `flag`, else `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`]; without a trailing `/`.
pub fn resolve_endpoint(flag: Option<&str>) -> String {
    let from_env = std::env::var("HF_ENDPOINT").ok();
    let e = flag
        .map(str::to_string)
        .or(from_env)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    e.trim().trim_end_matches('/').to_string()
}

/// `HF_HOME`, else `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(h) = std::env::var_os("HF_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface")
}

/// The hub cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`.
pub fn hub_cache() -> PathBuf {
    match std::env::var_os("HF_HUB_CACHE").filter(|s| !s.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => hf_home().join("hub"),
    }
}

/// True when `HF_HUB_OFFLINE` is set to a true value (`1`, `true`, `yes`, `on`).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// True for `owner/name` with the characters the Hub allows (letters, digits, `-`, `_`, `.`).
pub fn looks_like_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    [owner, name].iter().all(|p| {
        !p.is_empty()
            && !p.starts_with('.')
            && !p.contains("..")
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// Percent-encodes one URL path segment (a revision such as `refs/convert/parquet`).
pub fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Percent-encodes a path inside a repo, keeping its `/` separators.
pub fn encode_path(s: &str) -> String {
    s.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A progress bar for bytes moved, hidden when `show` is false or stderr is not a terminal.
pub fn bytes_bar(len: u64, msg: &str, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(looks_like_repo_id("dair-ai/emotion"));
        assert!(looks_like_repo_id("me/my_model.v2"));
        assert!(!looks_like_repo_id("emotion"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("../x"));
        assert!(!looks_like_repo_id("a/.."));
        assert!(!looks_like_repo_id("a b/c"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            encode_segment("refs/convert/parquet"),
            "refs%2Fconvert%2Fparquet"
        );
        assert_eq!(
            encode_path("data/train 1.parquet"),
            "data/train%201.parquet"
        );
    }
}
