//! A small stand-in for the Hub on 127.0.0.1 (std::net only): the endpoints edgebert's push and
//! dataset download use, with every request recorded and failures on demand. It serves one
//! connection at a time (`Connection: close`) and stops when dropped or after two idle minutes.
#![allow(dead_code)]
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// The server's repo state and failure switches.
#[derive(Debug, Default)]
pub struct State {
    /// The token the server accepts.
    pub token: String,
    pub requests: Vec<Recorded>,
    /// Repos created (`owner/name`).
    pub repos: Vec<String>,
    /// LFS objects stored, by sha256.
    pub lfs: HashMap<String, Vec<u8>>,
    /// Each commit's NDJSON lines.
    pub commits: Vec<Vec<serde_json::Value>>,
    /// Paths whose requests are answered by closing the connection (prefix match), with how many
    /// more times to do so (`usize::MAX`: always).
    pub drop: Vec<(String, usize)>,
    /// Answer LFS uploads with HTTP 500.
    pub fail_uploads: bool,
    /// Dataset revision answers, by `owner/name@revision`.
    pub dataset_info: HashMap<String, serde_json::Value>,
    /// Dataset files, by `owner/name/commit/path`.
    pub dataset_files: HashMap<String, Vec<u8>>,
}

/// A running server.
pub struct Server {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(token: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, base) = (state.clone(), stop.clone(), url.clone());
        let handle = std::thread::spawn(move || {
            let mut idle_since = Instant::now();
            while !sp.load(Ordering::SeqCst) && idle_since.elapsed() < Duration::from_secs(120) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        handle(stream, &st, &base);
                        idle_since = Instant::now();
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            url,
            state,
            stop,
            handle: Some(handle),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn respond(
    mut stream: TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, String)],
) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn json(stream: TcpStream, status: u16, v: serde_json::Value) {
    respond(
        stream,
        status,
        "application/json",
        v.to_string().as_bytes(),
        &[],
    );
}

fn lfs_by_ext(path: &str) -> bool {
    [".safetensors", ".onnx", ".edgebert", ".png"]
        .iter()
        .any(|e| path.ends_with(e))
}

fn handle(stream: TcpStream, state: &Arc<Mutex<State>>, base: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(req) = read_request(&stream) else {
        return;
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.requests.push(req.clone());
    // Dropped connections on demand.
    if let Some(d) = st
        .drop
        .iter_mut()
        .find(|(p, n)| *n > 0 && req.path.starts_with(p.as_str()))
    {
        if d.1 != usize::MAX {
            d.1 -= 1;
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let authorized = req.headers.get("authorization") == Some(&format!("Bearer {}", st.token));
    let needs_auth = !path.starts_with("/lfs-upload/") && !path.starts_with("/datasets/");
    if needs_auth && !path.starts_with("/api/datasets/") && !authorized {
        return json(
            stream,
            401,
            serde_json::json!({"error": "Invalid credentials in Authorization header"}),
        );
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body: serde_json::Value =
        serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
    match (req.method.as_str(), segs.as_slice()) {
        ("POST", ["api", "repos", "create"]) => {
            let id = format!(
                "{}/{}",
                body["organization"].as_str().unwrap_or(""),
                body["name"].as_str().unwrap_or("")
            );
            if st.repos.contains(&id) {
                json(
                    stream,
                    409,
                    serde_json::json!({"error": "You already created this model repo"}),
                )
            } else {
                st.repos.push(id.clone());
                json(
                    stream,
                    200,
                    serde_json::json!({"url": format!("{base}/{id}")}),
                )
            }
        }
        ("POST", ["api", "models", _o, _n, "preupload", _rev]) => {
            let files: Vec<serde_json::Value> = body["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let p = f["path"].as_str().unwrap_or("");
                    serde_json::json!({"path": p, "uploadMode": if lfs_by_ext(p) {"lfs"} else {"regular"}, "shouldIgnore": false})
                })
                .collect();
            json(stream, 200, serde_json::json!({"files": files}))
        }
        ("POST", [_o, n, "info", "lfs", "objects", "batch"]) if n.ends_with(".git") => {
            let objects: Vec<serde_json::Value> = body["objects"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|o| {
                    let oid = o["oid"].as_str().unwrap_or("").to_string();
                    let size = o["size"].as_u64().unwrap_or(0);
                    if st.lfs.get(&oid).is_some_and(|b| b.len() as u64 == size) {
                        serde_json::json!({"oid": oid, "size": size})
                    } else {
                        serde_json::json!({"oid": oid, "size": size, "actions": {
                            "upload": {"href": format!("{base}/lfs-upload/{oid}?X-Signature=presigned"), "header": {"X-Upload-Test": "1"}},
                            "verify": {"href": format!("{base}/lfs-verify"), "header": {}}
                        }})
                    }
                })
                .collect();
            respond(
                stream,
                200,
                "application/vnd.git-lfs+json",
                serde_json::json!({"transfer": "basic", "objects": objects})
                    .to_string()
                    .as_bytes(),
                &[],
            )
        }
        ("PUT", ["lfs-upload", oid]) => {
            if st.fail_uploads {
                return json(
                    stream,
                    500,
                    serde_json::json!({"error": "storage unavailable"}),
                );
            }
            let oid = oid.to_string();
            st.lfs.insert(oid, req.body.clone());
            respond(stream, 200, "text/plain", b"", &[("ETag", "\"e1\"".into())])
        }
        ("POST", ["lfs-verify"]) => {
            let oid = body["oid"].as_str().unwrap_or("");
            let ok = st.lfs.get(oid).is_some_and(|b| {
                sha256_hex(b) == oid && b.len() as u64 == body["size"].as_u64().unwrap_or(u64::MAX)
            });
            json(
                stream,
                if ok { 200 } else { 422 },
                serde_json::json!({"ok": ok}),
            )
        }
        ("POST", ["api", "models", o, n, "commit", _rev]) => {
            let lines: Vec<serde_json::Value> = req
                .body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect();
            for l in &lines {
                if l["key"] == "lfsFile" {
                    let oid = l["value"]["oid"].as_str().unwrap_or("");
                    if !st.lfs.contains_key(oid) {
                        return json(
                            stream,
                            400,
                            serde_json::json!({"error": format!("LFS object {oid} not found")}),
                        );
                    }
                }
                if l["key"] == "file" {
                    let c = l["value"]["content"].as_str().unwrap_or("");
                    if base64::engine::general_purpose::STANDARD.decode(c).is_err() {
                        return json(stream, 400, serde_json::json!({"error": "bad base64"}));
                    }
                }
            }
            st.commits.push(lines);
            let oid = format!("{:040x}", st.commits.len());
            json(
                stream,
                200,
                serde_json::json!({"commitUrl": format!("{base}/{o}/{n}/commit/{oid}"), "commitOid": oid}),
            )
        }
        ("GET", ["api", "datasets", o, n, "revision", rev]) => {
            let rev = rev.replace("%2F", "/");
            match st.dataset_info.get(&format!("{o}/{n}@{rev}")) {
                Some(v) => json(stream, 200, v.clone()),
                None => json(
                    stream,
                    404,
                    serde_json::json!({"error": "Revision Not Found"}),
                ),
            }
        }
        ("GET", ["datasets", o, n, "resolve", commit, rest @ ..]) => {
            let key = format!("{o}/{n}/{commit}/{}", rest.join("/"));
            match st.dataset_files.get(&key) {
                Some(b) => respond(stream, 200, "application/octet-stream", b, &[]),
                None => json(stream, 404, serde_json::json!({"error": "Entry not found"})),
            }
        }
        _ => json(
            stream,
            404,
            serde_json::json!({"error": format!("no route {} {path}", req.method)}),
        ),
    }
}

/// The files of one commit: path → (kind, content or oid, size).
pub fn commit_files(lines: &[serde_json::Value]) -> BTreeMap<String, (String, String, u64)> {
    let mut out = BTreeMap::new();
    for l in lines {
        let v = &l["value"];
        match l["key"].as_str() {
            Some("file") => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v["content"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                out.insert(
                    v["path"].as_str().unwrap_or("").to_string(),
                    ("file".to_string(), sha256_hex(&bytes), bytes.len() as u64),
                );
            }
            Some("lfsFile") => {
                assert_eq!(v["algo"], "sha256");
                out.insert(
                    v["path"].as_str().unwrap_or("").to_string(),
                    (
                        "lfsFile".to_string(),
                        v["oid"].as_str().unwrap_or("").to_string(),
                        v["size"].as_u64().unwrap_or(0),
                    ),
                );
            }
            _ => {}
        }
    }
    out
}
