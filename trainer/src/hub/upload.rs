//! Pushing a fine-tuned model folder to a Hub model repo in one commit, with the Hub's HTTP API:
//!
//! 1. `POST /api/repos/create` (409, the repo exists, is fine); for a revision other than
//!    `main`, `POST /api/models/{repo}/branch/{revision}` (409 is fine);
//! 2. `POST /api/models/{repo}/preupload/{revision}`: which files go through LFS;
//! 3. `POST {repo}.git/info/lfs/objects/batch` with every LFS file's sha256 and size; objects the
//!    server already has come back without an `upload` action and are not sent again; the others
//!    are uploaded to the returned `upload` href (single PUT, or the multipart protocol when the
//!    action has a `chunk_size`) and confirmed through the `verify` action when one is given;
//! 4. `POST /api/models/{repo}/commit/{revision}` (NDJSON: a `header` line, then one `file` line,
//!    base64, per regular file and one `lfsFile` line per LFS file).
//!
//! Steps 1 to 3 change no file of the repo: the commit is the only step that does, and it is sent
//! only after every upload succeeded.
use super::client::{strip_query, Body, HubClient, Req, Retry};
use super::{encode_segment, looks_like_repo_id, HubError, Result};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The files of a fine-tuned model directory that are pushed, when present.
pub const MODEL_FILES: [&str; 13] = [
    "README.md",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "trainer_state.json",
    "training_args.json",
    "metrics.json",
    "classification_report.txt",
    "confusion_matrix.png",
    "confusion_matrix.txt",
];

/// The files of an export directory (`edgebert-train export --out`) that are pushed, when present.
pub const EXPORT_FILES: [&str; 5] = [
    "model.edgebert",
    "model.fp32.edgebert",
    "model.int8.onnx",
    "model.fp32.onnx",
    "export_report.json",
];

/// What to push and where.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The fine-tuned model directory (config.json, model.safetensors, ...).
    pub model_dir: PathBuf,
    /// An export directory whose bundle and ONNX files are pushed too.
    pub export_dir: Option<PathBuf>,
    /// `owner/name` of the model repo.
    pub repo: String,
    /// Branch to commit to.
    pub revision: String,
    /// Create the repo private (an existing repo keeps its visibility).
    pub private: bool,
    /// Commit title.
    pub commit_message: String,
}

/// One file of a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushedFile {
    /// Path in the repo.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// `regular` (inline in the commit) or `lfs`.
    pub mode: String,
    /// Whether its LFS object was uploaded (false: the server had it, or it is regular).
    pub uploaded: bool,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushSummary {
    /// The commit's URL on the Hub.
    pub commit_url: String,
    /// The commit id.
    pub commit_oid: String,
    /// Every file of the commit.
    pub files: Vec<PushedFile>,
}

impl PushSummary {
    /// Number of LFS objects actually uploaded.
    pub fn lfs_uploaded(&self) -> usize {
        self.files.iter().filter(|f| f.uploaded).count()
    }
}

struct Local {
    path_in_repo: String,
    local: PathBuf,
    size: u64,
    sha256: String,
    sample: Vec<u8>,
    lfs: bool,
    ignore: bool,
}

/// The `(path in repo, local file)` pairs of a push: [`MODEL_FILES`] from the model directory,
/// [`EXPORT_FILES`] from the export directory (or the model directory itself).
pub fn collect_files(o: &PushOptions) -> Result<Vec<(String, PathBuf)>> {
    let dir = &o.model_dir;
    for required in ["config.json", "model.safetensors"] {
        if !dir.join(required).is_file() {
            return Err(HubError::Invalid(format!(
                "{}: {required} is missing (push expects a directory written by `edgebert-train finetune`)",
                dir.display()
            )));
        }
    }
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for f in MODEL_FILES {
        let p = dir.join(f);
        if p.is_file() {
            out.push((f.to_string(), p));
        }
    }
    let export = o.export_dir.as_deref().unwrap_or(dir);
    if let Some(e) = &o.export_dir {
        if !e.is_dir() {
            return Err(HubError::Invalid(format!(
                "--export {}: not a directory",
                e.display()
            )));
        }
    }
    for f in EXPORT_FILES {
        let p = export.join(f);
        if p.is_file() && !out.iter().any(|(name, _)| name == f) {
            out.push((f.to_string(), p));
        }
    }
    Ok(out)
}

fn hash_file(path: &Path, bar: &indicatif::ProgressBar) -> Result<(u64, String, Vec<u8>)> {
    let mut f = std::fs::File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut sample = Vec::new();
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| HubError::io(path, e))?;
        if n == 0 {
            break;
        }
        if sample.len() < 512 {
            let take = (512 - sample.len()).min(n);
            sample.extend_from_slice(&buf[..take]);
        }
        h.update(&buf[..n]);
        size += n as u64;
        bar.inc(n as u64);
    }
    Ok((size, hex(&h.finalize()), sample))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn protocol(what: &str, url: &str, message: impl Into<String>) -> HubError {
    HubError::Protocol {
        what: what.to_string(),
        url: strip_query(url),
        message: message.into(),
    }
}

/// Pushes the model folder (see the module doc). The model card (README.md) must already be in
/// the folder when one is wanted: see [`crate::hub::card::write_model_card`].
pub fn push_folder(client: &HubClient, o: &PushOptions) -> Result<PushSummary> {
    if !looks_like_repo_id(&o.repo) {
        return Err(HubError::Invalid(format!(
            "--repo {:?}: expected OWNER/NAME",
            o.repo
        )));
    }
    if o.revision.trim().is_empty() {
        return Err(HubError::Invalid("--revision: empty".into()));
    }
    client.require_token()?;
    let pairs = collect_files(o)?;
    let total: u64 = pairs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = super::bytes_bar(total, "hashing", client.progress);
    let mut files = Vec::with_capacity(pairs.len());
    for (path_in_repo, local) in pairs {
        let (size, sha256, sample) = hash_file(&local, &bar)?;
        files.push(Local {
            path_in_repo,
            local,
            size,
            sha256,
            sample,
            lfs: false,
            ignore: false,
        });
    }
    bar.finish_and_clear();

    let ep = client.endpoint().to_string();
    let rev = encode_segment(&o.revision);
    create_repo(client, o)?;

    // Preupload: which files are LFS.
    let url = format!("{ep}/api/models/{}/preupload/{rev}", o.repo);
    let payload = serde_json::json!({
        "files": files.iter().map(|f| serde_json::json!({
            "path": f.path_in_repo,
            "sample": base64::engine::general_purpose::STANDARD.encode(&f.sample),
            "size": f.size,
        })).collect::<Vec<_>>(),
    });
    let body = serde_json::to_vec(&payload).map_err(|e| HubError::Invalid(e.to_string()))?;
    let v = client.send_json(Req {
        method: "POST",
        url: &url,
        what: "preupload check",
        headers: vec![("Content-Type", "application/json".into())],
        body: Body::Bytes(&body),
        auth: true,
        retry: Retry::Idempotent,
    })?;
    let answered = v
        .get("files")
        .and_then(|f| f.as_array())
        .ok_or_else(|| protocol("preupload check", &url, "no \"files\" list"))?;
    for f in &mut files {
        let entry = answered
            .iter()
            .find(|a| a.get("path").and_then(|p| p.as_str()) == Some(f.path_in_repo.as_str()))
            .ok_or_else(|| {
                protocol(
                    "preupload check",
                    &url,
                    format!("no upload mode for {}", f.path_in_repo),
                )
            })?;
        f.lfs = match entry.get("uploadMode").and_then(|m| m.as_str()) {
            Some("lfs") => f.size > 0,
            Some("regular") => false,
            other => {
                return Err(protocol(
                    "preupload check",
                    &url,
                    format!("{}: uploadMode {other:?}", f.path_in_repo),
                ))
            }
        };
        f.ignore = entry
            .get("shouldIgnore")
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
    }
    files.retain(|f| !f.ignore);

    let uploaded = upload_lfs(client, o, &files)?;

    // The commit: the only step that changes the repo.
    let mut ndjson = Vec::new();
    let mut line = |v: serde_json::Value| -> Result<()> {
        serde_json::to_writer(&mut ndjson, &v).map_err(|e| HubError::Invalid(e.to_string()))?;
        ndjson.push(b'\n');
        Ok(())
    };
    line(serde_json::json!({
        "key": "header",
        "value": { "summary": o.commit_message, "description": "" },
    }))?;
    for f in &files {
        if f.lfs {
            line(serde_json::json!({
                "key": "lfsFile",
                "value": { "path": f.path_in_repo, "algo": "sha256", "oid": f.sha256, "size": f.size },
            }))?;
        } else {
            let bytes = std::fs::read(&f.local).map_err(|e| HubError::io(&f.local, e))?;
            line(serde_json::json!({
                "key": "file",
                "value": {
                    "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    "path": f.path_in_repo,
                    "encoding": "base64",
                },
            }))?;
        }
    }
    let url = format!("{ep}/api/models/{}/commit/{rev}", o.repo);
    let v = client.send_json(Req {
        method: "POST",
        url: &url,
        what: "commit",
        headers: vec![("Content-Type", "application/x-ndjson".into())],
        body: Body::Bytes(&ndjson),
        auth: true,
        retry: Retry::ConnectOnly,
    })?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Ok(PushSummary {
        commit_url: s("commitUrl"),
        commit_oid: s("commitOid"),
        files: files
            .iter()
            .map(|f| PushedFile {
                path: f.path_in_repo.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
                mode: if f.lfs { "lfs" } else { "regular" }.into(),
                uploaded: uploaded.contains(&f.sha256),
            })
            .collect(),
    })
}

fn create_repo(client: &HubClient, o: &PushOptions) -> Result<()> {
    let ep = client.endpoint();
    let (owner, name) = o.repo.split_once('/').unwrap_or(("", &o.repo));
    let url = format!("{ep}/api/repos/create");
    // As the Hub's own client sends it: no "type" for model repos, "private" only when asked.
    let mut req = serde_json::json!({ "name": name, "organization": owner });
    if o.private {
        req["private"] = serde_json::Value::Bool(true);
    }
    let body = serde_json::to_vec(&req).map_err(|e| HubError::Invalid(e.to_string()))?;
    let exists_ok = |r: Result<ureq::Response>| match r {
        Ok(_) | Err(HubError::Status { status: 409, .. }) => Ok(()),
        Err(e) => Err(e),
    };
    exists_ok(client.send(Req {
        method: "POST",
        url: &url,
        what: "create repo",
        headers: vec![("Content-Type", "application/json".into())],
        body: Body::Bytes(&body),
        auth: true,
        retry: Retry::Idempotent,
    }))?;
    if o.revision != "main" {
        let url = format!(
            "{ep}/api/models/{}/branch/{}",
            o.repo,
            encode_segment(&o.revision)
        );
        exists_ok(client.send(Req {
            method: "POST",
            url: &url,
            what: "create branch",
            headers: vec![("Content-Type", "application/json".into())],
            body: Body::Bytes(b"{}"),
            auth: true,
            retry: Retry::Idempotent,
        }))?;
    }
    Ok(())
}

/// Asks the LFS batch API about every LFS file and uploads the objects the server lacks; returns
/// the sha256 of the uploaded ones.
fn upload_lfs(client: &HubClient, o: &PushOptions, files: &[Local]) -> Result<Vec<String>> {
    let lfs: Vec<&Local> = files.iter().filter(|f| f.lfs).collect();
    if lfs.is_empty() {
        return Ok(Vec::new());
    }
    let url = format!(
        "{}/{}.git/info/lfs/objects/batch",
        client.endpoint(),
        o.repo
    );
    let what = "LFS batch";
    let body = serde_json::to_vec(&serde_json::json!({
        "operation": "upload",
        "transfers": ["basic", "multipart"],
        "objects": lfs.iter().map(|f| serde_json::json!({"oid": f.sha256, "size": f.size})).collect::<Vec<_>>(),
        "hash_algo": "sha256",
        "ref": { "name": o.revision },
    }))
    .map_err(|e| HubError::Invalid(e.to_string()))?;
    let v = client.send_json(Req {
        method: "POST",
        url: &url,
        what,
        headers: vec![
            ("Accept", "application/vnd.git-lfs+json".into()),
            ("Content-Type", "application/vnd.git-lfs+json".into()),
        ],
        body: Body::Bytes(&body),
        auth: true,
        retry: Retry::Idempotent,
    })?;
    let objects = v
        .get("objects")
        .and_then(|x| x.as_array())
        .ok_or_else(|| protocol(what, &url, "no \"objects\" list"))?;
    let mut todo = Vec::new();
    for f in &lfs {
        let obj = objects
            .iter()
            .find(|x| x.get("oid").and_then(|s| s.as_str()) == Some(f.sha256.as_str()))
            .ok_or_else(|| protocol(what, &url, format!("no answer for {}", f.path_in_repo)))?;
        if let Some(err) = obj.get("error") {
            return Err(HubError::Status {
                what: format!("LFS upload of {}", f.path_in_repo),
                url: strip_query(&url),
                status: err.get("code").and_then(|c| c.as_u64()).unwrap_or(0) as u16,
                tries: String::new(),
                message: client.scrub(
                    err.get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("(no message)"),
                ),
            });
        }
        if let Some(upload) = obj.get("actions").and_then(|a| a.get("upload")) {
            let verify = obj.get("actions").and_then(|a| a.get("verify")).cloned();
            todo.push((*f, upload.clone(), verify));
        }
    }
    let total: u64 = todo.iter().map(|(f, _, _)| f.size).sum();
    let bar = super::bytes_bar(total, "uploading", client.progress);
    let mut done = Vec::new();
    for (f, upload, verify) in todo {
        bar.set_message(f.path_in_repo.clone());
        upload_object(client, f, &upload, &bar)?;
        if let Some(verify) = verify {
            verify_object(client, f, &verify)?;
        }
        done.push(f.sha256.clone());
    }
    bar.finish_and_clear();
    Ok(done)
}

fn action_href(action: &serde_json::Value, what: &str) -> Result<String> {
    action
        .get("href")
        .and_then(|h| h.as_str())
        .map(str::to_string)
        .ok_or_else(|| HubError::Protocol {
            what: what.to_string(),
            url: String::new(),
            message: "LFS action without href".into(),
        })
}

fn upload_object(
    client: &HubClient,
    f: &Local,
    action: &serde_json::Value,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let what = format!("LFS upload of {}", f.path_in_repo);
    let href = action_href(action, &what)?;
    let header = action
        .get("header")
        .and_then(|h| h.as_object())
        .cloned()
        .unwrap_or_default();
    let chunk_size = header.get("chunk_size").map(|c| match c {
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    });
    match chunk_size {
        None => {
            let headers: Vec<(&str, String)> = header
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v.to_string())))
                .collect();
            client.send(Req {
                method: "PUT",
                url: &href,
                what: &what,
                headers,
                body: Body::File {
                    path: &f.local,
                    offset: 0,
                    len: f.size,
                    bar,
                },
                auth: false,
                retry: Retry::Idempotent,
            })?;
        }
        Some(None) | Some(Some(0)) => {
            return Err(protocol(
                &what,
                &href,
                "chunk_size is not a positive integer",
            ))
        }
        Some(Some(chunk)) => {
            let mut parts: Vec<(u64, String)> = header
                .iter()
                .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
                .collect();
            parts.sort();
            if parts.len() as u64 != f.size.div_ceil(chunk) {
                return Err(protocol(
                    &what,
                    &href,
                    format!(
                        "{} part URLs for {} bytes in chunks of {chunk}",
                        parts.len(),
                        f.size
                    ),
                ));
            }
            let mut etags = Vec::with_capacity(parts.len());
            for (i, (_, part_url)) in parts.iter().enumerate() {
                let offset = i as u64 * chunk;
                let resp = client.send(Req {
                    method: "PUT",
                    url: part_url,
                    what: &what,
                    headers: Vec::new(),
                    body: Body::File {
                        path: &f.local,
                        offset,
                        len: chunk.min(f.size - offset),
                        bar,
                    },
                    auth: false,
                    retry: Retry::Idempotent,
                })?;
                let etag = resp.header("ETag").unwrap_or("").to_string();
                if etag.is_empty() {
                    return Err(protocol(
                        &what,
                        part_url,
                        format!("part {} answered without an ETag", i + 1),
                    ));
                }
                etags.push(serde_json::json!({"partNumber": i + 1, "etag": etag}));
            }
            let body = serde_json::to_vec(&serde_json::json!({"oid": f.sha256, "parts": etags}))
                .map_err(|e| HubError::Invalid(e.to_string()))?;
            client.send(Req {
                method: "POST",
                url: &href,
                what: &what,
                headers: vec![
                    ("Accept", "application/vnd.git-lfs+json".into()),
                    ("Content-Type", "application/vnd.git-lfs+json".into()),
                ],
                body: Body::Bytes(&body),
                auth: false,
                retry: Retry::Idempotent,
            })?;
        }
    }
    Ok(())
}

fn verify_object(client: &HubClient, f: &Local, action: &serde_json::Value) -> Result<()> {
    let what = format!("LFS verify of {}", f.path_in_repo);
    let href = action_href(action, &what)?;
    let mut headers: Vec<(&str, String)> = vec![
        ("Accept", "application/vnd.git-lfs+json".into()),
        ("Content-Type", "application/vnd.git-lfs+json".into()),
    ];
    if let Some(h) = action.get("header").and_then(|h| h.as_object()) {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                headers.push((k.as_str(), v.to_string()));
            }
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({"oid": f.sha256, "size": f.size}))
        .map_err(|e| HubError::Invalid(e.to_string()))?;
    client.send(Req {
        method: "POST",
        url: &href,
        what: &what,
        headers,
        body: Body::Bytes(&body),
        auth: true,
        retry: Retry::Idempotent,
    })?;
    Ok(())
}
