//! Datasets by hub id (`--data dair-ai/emotion`): the revision's file list and card metadata from
//! `GET /api/datasets/{id}/revision/{rev}`, the split files chosen from it, downloaded from
//! `/datasets/{id}/resolve/{commit}/{path}` into the standard hub cache, and the label names.
//!
//! Which files make a split, in order:
//! 1. the card's `configs` (the `default: true` one, else `default`, else the first):
//!    `data_files` patterns per split;
//! 2. else the file names: parquet, jsonl and csv files whose name or folder says `train`,
//!    `validation` (`valid`, `val`, `dev`) or `test`;
//! 3. else the Hub's parquet conversion, revision `refs/convert/parquet` (`{config}/{split}/*.parquet`).
//!
//! Label names come from the card's `dataset_info` (`class_label.names` of the label column),
//! else `dataset_infos.json`; only when both say nothing, and the repo is `emotion`, the known
//! emotion names.
//!
//! Cache: `$HF_HUB_CACHE` (default `$HF_HOME/hub`, `~/.cache/huggingface/hub`), laid out as the
//! Hub's own clients do: `datasets--{owner}--{name}/refs/{revision}` holds the commit,
//! `snapshots/{commit}/{path}` the files (written to a temporary name and renamed), and
//! `.edgebert/info-{commit}.json` the API answer, so `HF_HUB_OFFLINE=1` (or no network) works
//! from the cache.
use crate::data::DataSource;
use crate::error::{Result, TrainError};
use crate::hub::client::{Body, Req, Retry};
use crate::hub::{encode_path, encode_segment, HubClient, HubError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The Hub's label order of `emotion` (dair-ai/emotion), used only when its metadata has none.
pub const EMOTION_LABELS: [&str; 6] = ["sadness", "joy", "love", "anger", "fear", "surprise"];

/// The revision of the Hub's automatic parquet conversion.
pub const PARQUET_REVISION: &str = "refs/convert/parquet";

const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// A hub dataset resolved to local files.
#[derive(Debug, Clone)]
pub struct HubDataset {
    /// `owner/name`.
    pub id: String,
    /// The commit the files come from.
    pub commit: String,
    /// The snapshot directory holding them.
    pub dir: PathBuf,
    /// Local files per split (`train`, `validation`, `test`), shards in order.
    pub splits: BTreeMap<String, Vec<PathBuf>>,
    /// Label names by id, from the metadata (or the emotion fallback).
    pub label_names: Option<Vec<String>>,
}

/// Which files of a revision make each split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    /// The config the files belong to, when the card names one.
    pub config: Option<String>,
    /// Paths in the repo per split.
    pub files: BTreeMap<String, Vec<String>>,
}

fn hub_err(e: HubError) -> TrainError {
    TrainError::Hub(e)
}

/// `*` matches within one path segment, `**` across segments, `?` one character.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=s.len()).any(|i| m(rest, &s[i..]))
                    || (0..=s.len()).any(|i| m(&p[2..], &s[i..]))
            }
            Some(b'*') => {
                let mut i = 0;
                loop {
                    if m(&p[1..], &s[i..]) {
                        return true;
                    }
                    if i >= s.len() || s[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some(b'?') => !s.is_empty() && s[0] != b'/' && m(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && m(&p[1..], &s[1..]),
        }
    }
    m(pattern.as_bytes(), path.as_bytes())
}

fn readable(path: &str) -> bool {
    let l = path.to_ascii_lowercase();
    [".parquet", ".jsonl", ".csv"]
        .iter()
        .any(|e| l.ends_with(e))
}

/// The split a path's name says (`train`, `validation`, `test`), if any; the file name counts
/// before its folders.
pub fn split_of(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split('/').collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or(file);
    std::iter::once(stem)
        .chain(parts.into_iter().rev())
        .find_map(|part| {
            part.split(|c: char| !c.is_ascii_alphanumeric())
                .find_map(|w| match w {
                    "train" | "training" => Some("train"),
                    "validation" | "valid" | "val" | "dev" => Some("validation"),
                    "test" | "testing" => Some("test"),
                    _ => None,
                })
        })
}

fn siblings(info: &Value) -> Vec<String> {
    let mut v: Vec<String> = info
        .get("siblings")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("rfilename").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn chosen_config(info: &Value) -> Option<&Value> {
    let configs = info.get("cardData")?.get("configs")?.as_array()?;
    configs
        .iter()
        .find(|c| c.get("default").and_then(Value::as_bool) == Some(true))
        .or_else(|| {
            configs
                .iter()
                .find(|c| c.get("config_name").and_then(Value::as_str) == Some("default"))
        })
        .or_else(|| configs.first())
}

fn patterns(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The split files of one revision (rules 1 and 2 of the module doc); empty when neither applies.
pub fn plan_from_info(info: &Value) -> SplitPlan {
    let files = siblings(info);
    let mut plan = SplitPlan {
        config: None,
        files: BTreeMap::new(),
    };
    if let Some(cfg) = chosen_config(info) {
        plan.config = cfg
            .get("config_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut by_split: Vec<(String, Vec<String>)> = Vec::new();
        match cfg.get("data_files") {
            Some(Value::Array(entries)) if entries.iter().all(Value::is_object) => {
                for e in entries {
                    if let Some(split) = e.get("split").and_then(Value::as_str) {
                        by_split.push((
                            split.to_string(),
                            e.get("path").map(patterns).unwrap_or_default(),
                        ));
                    }
                }
            }
            Some(v @ (Value::String(_) | Value::Array(_))) => {
                by_split.push(("train".into(), patterns(v)))
            }
            _ => {}
        }
        for (split, pats) in by_split {
            let name = match split.as_str() {
                "valid" | "val" | "dev" => "validation".to_string(),
                s => s.to_string(),
            };
            let matched: Vec<String> = files
                .iter()
                .filter(|f| readable(f) && pats.iter().any(|p| glob_match(p, f)))
                .cloned()
                .collect();
            if !matched.is_empty() {
                plan.files.insert(name, matched);
            }
        }
        if !plan.files.is_empty() {
            return plan;
        }
    }
    // Rule 2: names. Files in several top-level folders (configs) are narrowed to the first
    // folder that has both train and validation files.
    let mut by_split: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files.iter().filter(|f| readable(f)) {
        if let Some(s) = split_of(f) {
            by_split.entry(s.to_string()).or_default().push(f.clone());
        }
    }
    let top = |f: &str| f.split_once('/').map(|(d, _)| d.to_string());
    let mut tops: Vec<Option<String>> = by_split.values().flatten().map(|f| top(f)).collect();
    tops.sort();
    tops.dedup();
    if tops.len() > 1 {
        if let Some(keep) = tops.iter().find(|t| {
            ["train", "validation"].iter().all(|s| {
                by_split
                    .get(*s)
                    .is_some_and(|fs| fs.iter().any(|f| top(f) == **t))
            })
        }) {
            let keep = keep.clone();
            for fs in by_split.values_mut() {
                fs.retain(|f| top(f) == keep);
            }
            by_split.retain(|_, fs| !fs.is_empty());
            plan.config = keep;
        }
    }
    plan.files = by_split;
    plan
}

/// The split files of the `refs/convert/parquet` revision for `config` (or `default`, or the
/// first config folder).
pub fn plan_from_parquet_info(info: &Value, config: Option<&str>) -> SplitPlan {
    let files: Vec<String> = siblings(info)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    let configs: Vec<&str> = files.iter().filter_map(|f| f.split('/').next()).collect();
    let chosen = config
        .filter(|c| configs.contains(c))
        .or_else(|| configs.iter().copied().find(|c| *c == "default"))
        .or_else(|| configs.first().copied())
        .map(str::to_string);
    let mut plan = SplitPlan {
        config: chosen.clone(),
        files: BTreeMap::new(),
    };
    let Some(c) = chosen else { return plan };
    for f in &files {
        if let Some(rest) = f.strip_prefix(&format!("{c}/")) {
            if let Some(s) = split_of(rest) {
                plan.files.entry(s.to_string()).or_default().push(f.clone());
            }
        }
    }
    plan
}

/// The label names of `label_col` in the card's `dataset_info` (for `config`, else the first).
pub fn labels_from_card(
    info: &Value,
    config: Option<&str>,
    label_col: &str,
) -> Option<Vec<String>> {
    let di = info.get("cardData")?.get("dataset_info")?;
    let entries: Vec<&Value> = match di {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let entry = entries
        .iter()
        .find(|e| config.is_some() && e.get("config_name").and_then(Value::as_str) == config)
        .or_else(|| entries.first())?;
    let features = entry.get("features")?.as_array()?;
    let f = features
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(label_col))?;
    names_of(
        f.get("dtype")?
            .get("class_label")
            .or_else(|| f.get("class_label"))?
            .get("names")?,
    )
}

/// `class_label.names` as a YAML map (`"0": sadness`) or a list.
fn names_of(v: &Value) -> Option<Vec<String>> {
    let names: Vec<String> = match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        Value::Object(m) => {
            let mut pairs: Vec<(usize, String)> = m
                .iter()
                .map(|(k, x)| Some((k.parse().ok()?, x.as_str()?.to_string())))
                .collect::<Option<_>>()?;
            pairs.sort();
            if pairs.iter().enumerate().any(|(i, (k, _))| i != *k) {
                return None;
            }
            pairs.into_iter().map(|(_, n)| n).collect()
        }
        _ => return None,
    };
    (!names.is_empty()).then_some(names)
}

/// The label names of `label_col` in a `dataset_infos.json` (for `config`, else the first).
pub fn labels_from_infos_json(
    v: &Value,
    config: Option<&str>,
    label_col: &str,
) -> Option<Vec<String>> {
    let m = v.as_object()?;
    let entry = config
        .and_then(|c| m.get(c))
        .or_else(|| m.values().next())?;
    names_of(entry.get("features")?.get(label_col)?.get("names")?)
}

struct Cache {
    repo: PathBuf,
}

impl Cache {
    fn new(id: &str) -> Self {
        Cache {
            repo: crate::hub::hub_cache().join(format!("datasets--{}", id.replace('/', "--"))),
        }
    }
    fn ref_path(&self, rev: &str) -> PathBuf {
        self.repo.join("refs").join(rev)
    }
    fn info_path(&self, commit: &str) -> PathBuf {
        self.repo
            .join(".edgebert")
            .join(format!("info-{commit}.json"))
    }
    fn snapshot(&self, commit: &str) -> PathBuf {
        self.repo.join("snapshots").join(commit)
    }
    /// The cached API answer of `rev`.
    fn cached_info(&self, rev: &str) -> Option<Value> {
        let commit = std::fs::read_to_string(self.ref_path(rev)).ok()?;
        let bytes = std::fs::read(self.info_path(commit.trim())).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
    fn store_info(&self, rev: &str, info: &Value, commit: &str) -> Result<()> {
        let bytes = serde_json::to_vec(info)
            .map_err(|e| TrainError::data(self.info_path(commit), e.to_string()))?;
        crate::io::write_atomic(&self.info_path(commit), &bytes)?;
        crate::io::write_atomic(&self.ref_path(rev), commit.as_bytes())
    }
}

fn commit_of(info: &Value, id: &str, rev: &str) -> Result<String> {
    info.get("sha")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_string)
        .ok_or_else(|| {
            TrainError::data(
                id,
                format!("the Hub's answer for revision {rev:?} has no commit (\"sha\")"),
            )
        })
}

/// Revision info: from the Hub, or from the cache when offline (or the Hub is unreachable).
fn revision_info(
    client: &HubClient,
    cache: &Cache,
    id: &str,
    rev: &str,
    progress: bool,
) -> Result<Value> {
    if crate::hub::offline() {
        return cache.cached_info(rev).ok_or_else(|| {
            TrainError::data(
                id,
                format!(
                    "revision {rev:?} is not in the local cache {} (HF_HUB_OFFLINE is set)",
                    cache.repo.display()
                ),
            )
        });
    }
    let url = format!(
        "{}/api/datasets/{id}/revision/{}",
        client.endpoint(),
        encode_segment(rev)
    );
    match client.send_json(Req {
        method: "GET",
        url: &url,
        what: "dataset info",
        headers: Vec::new(),
        body: Body::Empty,
        auth: true,
        retry: Retry::Idempotent,
    }) {
        Ok(info) => {
            let commit = commit_of(&info, id, rev)?;
            cache.store_info(rev, &info, &commit)?;
            Ok(info)
        }
        Err(e @ HubError::Connection { .. }) => match cache.cached_info(rev) {
            Some(info) => {
                if progress {
                    eprintln!("{e}; using the cached copy of {id}@{rev}");
                }
                Ok(info)
            }
            None => Err(hub_err(e)),
        },
        Err(e) => Err(hub_err(e)),
    }
}

/// Downloads `path` of `id` at `commit` into the snapshot (unless already there).
fn download(
    client: &HubClient,
    cache: &Cache,
    id: &str,
    commit: &str,
    path: &str,
) -> Result<PathBuf> {
    let target = cache.snapshot(commit).join(path);
    if target.is_file() {
        return Ok(target);
    }
    if crate::hub::offline() {
        return Err(TrainError::data(
            &target,
            format!("{id}: {path} is not in the local cache (HF_HUB_OFFLINE is set)"),
        ));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    let url = format!(
        "{}/datasets/{id}/resolve/{commit}/{}",
        client.endpoint(),
        encode_path(path)
    );
    let what = format!("download of {path}");
    let tmp = crate::io::temp_path(&target);
    let tries = client.retry.tries.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = client
            .send(Req {
                method: "GET",
                url: &url,
                what: &what,
                headers: Vec::new(),
                body: Body::Empty,
                auth: true,
                retry: Retry::Idempotent,
            })
            .map_err(hub_err)?;
        let len = resp
            .header("Content-Length")
            .and_then(|s| s.parse::<u64>().ok());
        let bar = crate::hub::bytes_bar(len.unwrap_or(0), path, client.progress);
        let mut reader = resp.into_reader();
        let mut f = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        let read_result: std::io::Result<()> = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    f.write_all(&buf[..n])
                        .map_err(|e| TrainError::io(&tmp, e))?;
                    got += n as u64;
                    bar.inc(n as u64);
                }
                Err(e) => break Err(e),
            }
        };
        bar.finish_and_clear();
        let complete = read_result.is_ok() && len.is_none_or(|l| l == got);
        if complete {
            f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
            drop(f);
            std::fs::rename(&tmp, &target).map_err(|e| TrainError::io(&target, e))?;
            return Ok(target);
        }
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        if attempt >= tries {
            return Err(hub_err(HubError::Connection {
                what,
                url,
                tries,
                message: match read_result {
                    Err(e) => client.scrub(&e.to_string()),
                    Ok(()) => format!("got {got} of {} bytes", len.unwrap_or(0)),
                },
            }));
        }
        std::thread::sleep(client.retry.delay(attempt));
    }
}

/// Resolves `id` (`owner/name`) at `source.revision` (default `main`) to local split files.
pub fn resolve(id: &str, source: &DataSource, progress: bool) -> Result<HubDataset> {
    let mut client = HubClient::from_env(source.endpoint.as_deref());
    client.progress = progress;
    let cache = Cache::new(id);
    let rev = source
        .revision
        .clone()
        .unwrap_or_else(|| "main".to_string());
    let info = revision_info(&client, &cache, id, &rev, progress)?;
    let mut commit = commit_of(&info, id, &rev)?;
    let mut plan = plan_from_info(&info);
    let mut files_info = info.clone();
    if !plan.files.contains_key("train") || !plan.files.contains_key("validation") {
        if let Ok(pinfo) = revision_info(&client, &cache, id, PARQUET_REVISION, progress) {
            let p = plan_from_parquet_info(&pinfo, plan.config.as_deref());
            if p.files.contains_key("train") && p.files.contains_key("validation") {
                commit = commit_of(&pinfo, id, PARQUET_REVISION)?;
                plan = SplitPlan {
                    config: p.config.or(plan.config),
                    files: p.files,
                };
                files_info = pinfo;
            }
        }
    }
    for need in ["train", "validation"] {
        if !plan.files.contains_key(need) {
            let found: Vec<&String> = plan.files.keys().collect();
            return Err(TrainError::data(
                id,
                format!(
                    "no {need} split found at revision {rev:?} (found splits {found:?}; files: {:?})",
                    siblings(&files_info).into_iter().take(20).collect::<Vec<_>>()
                ),
            ));
        }
    }
    let mut splits = BTreeMap::new();
    for s in SPLITS {
        if let Some(paths) = plan.files.get(s) {
            let mut local = Vec::new();
            for p in paths {
                local.push(download(&client, &cache, id, &commit, p)?);
            }
            splits.insert(s.to_string(), local);
        }
    }
    let label_col = source.label();
    let mut label_names = labels_from_card(&info, plan.config.as_deref(), label_col);
    if label_names.is_none() && siblings(&info).iter().any(|s| s == "dataset_infos.json") {
        let main_commit = commit_of(&info, id, &rev)?;
        let p = download(&client, &cache, id, &main_commit, "dataset_infos.json")?;
        let bytes = std::fs::read(&p).map_err(|e| TrainError::io(&p, e))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::data(&p, format!("invalid JSON: {e}")))?;
        label_names = labels_from_infos_json(&v, plan.config.as_deref(), label_col);
    }
    if label_names.is_none() && id.rsplit('/').next() == Some("emotion") {
        label_names = Some(EMOTION_LABELS.iter().map(|s| s.to_string()).collect());
    }
    Ok(HubDataset {
        id: id.to_string(),
        dir: cache.snapshot(&commit),
        commit,
        splits,
        label_names,
    })
}

/// The local file of one split of a hub dataset (resolving, and downloading when needed).
pub fn split_files(
    id: &str,
    source: &DataSource,
    split: &str,
    progress: bool,
) -> Result<Vec<PathBuf>> {
    let ds = resolve(id, source, progress)?;
    Ok(ds.splits.get(split).cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "split/train-*",
            "split/train-00000-of-00001.parquet"
        ));
        assert!(!glob_match("split/train-*", "unsplit/train-00000.parquet"));
        assert!(glob_match("data/*.parquet", "data/x.parquet"));
        assert!(!glob_match("data/*.parquet", "data/a/x.parquet"));
        assert!(glob_match("**/train*", "a/b/train.csv"));
        assert!(glob_match("**/train*", "train.csv"));
    }

    #[test]
    fn split_names() {
        assert_eq!(split_of("data/train-00000-of-00001.parquet"), Some("train"));
        assert_eq!(split_of("data/validation-0.parquet"), Some("validation"));
        assert_eq!(split_of("dev.jsonl"), Some("validation"));
        assert_eq!(split_of("test/0000.parquet"), Some("test"));
        assert_eq!(split_of("README.md"), None);
        assert_eq!(split_of("data/contest.csv"), None);
    }

    fn emotion_info() -> Value {
        serde_json::json!({
            "sha": "abc123",
            "siblings": [
                {"rfilename": "README.md"},
                {"rfilename": "split/train-00000-of-00001.parquet"},
                {"rfilename": "split/validation-00000-of-00001.parquet"},
                {"rfilename": "split/test-00000-of-00001.parquet"},
                {"rfilename": "unsplit/train-00000-of-00001.parquet"}
            ],
            "cardData": {
                "configs": [
                    {"config_name": "split", "default": true, "data_files": [
                        {"split": "train", "path": "split/train-*"},
                        {"split": "validation", "path": "split/validation-*"},
                        {"split": "test", "path": "split/test-*"}]},
                    {"config_name": "unsplit", "data_files": [{"split": "train", "path": "unsplit/train-*"}]}
                ],
                "dataset_info": [
                    {"config_name": "split", "features": [
                        {"name": "text", "dtype": "string"},
                        {"name": "label", "dtype": {"class_label": {"names": {
                            "0": "sadness", "1": "joy", "2": "love", "3": "anger", "4": "fear", "5": "surprise"}}}}]},
                    {"config_name": "unsplit", "features": []}
                ]
            }
        })
    }

    #[test]
    fn card_configs_pick_the_default() {
        let info = emotion_info();
        let plan = plan_from_info(&info);
        assert_eq!(plan.config.as_deref(), Some("split"));
        assert_eq!(
            plan.files["train"],
            vec!["split/train-00000-of-00001.parquet".to_string()]
        );
        assert_eq!(plan.files.len(), 3);
        let names = labels_from_card(&info, Some("split"), "label").expect("names");
        assert_eq!(names, EMOTION_LABELS.to_vec());
    }

    #[test]
    fn names_alone_narrow_to_one_folder() {
        let mut info = emotion_info();
        info["cardData"] = serde_json::json!({});
        let plan = plan_from_info(&info);
        assert_eq!(plan.config.as_deref(), Some("split"));
        assert_eq!(plan.files["train"].len(), 1);
        assert!(plan.files["train"][0].starts_with("split/"));
    }

    #[test]
    fn parquet_conversion_layout() {
        let info = serde_json::json!({"sha": "p1", "siblings": [
            {"rfilename": "split/train/0000.parquet"},
            {"rfilename": "split/validation/0000.parquet"},
            {"rfilename": "unsplit/train/0000.parquet"}]});
        let plan = plan_from_parquet_info(&info, Some("split"));
        assert_eq!(
            plan.files["train"],
            vec!["split/train/0000.parquet".to_string()]
        );
        assert_eq!(plan.files["validation"].len(), 1);
    }

    #[test]
    fn infos_json_names() {
        let v = serde_json::json!({"default": {"features": {"label": {"names": ["neg", "pos"], "_type": "ClassLabel"}}}});
        assert_eq!(
            labels_from_infos_json(&v, None, "label"),
            Some(vec!["neg".to_string(), "pos".to_string()])
        );
    }
}
