//! `model-pull`: jobhost's built-in model puller.
//!
//! Downloads a model repository from a Hugging Face compatible hub into the models
//! directory (its only preopen, `/models`) in the Hugging Face cache layout, so
//! huggingface_hub and other tools find it offline with `HF_HUB_CACHE=<data>/models`:
//!
//! ```text
//! models--{org}--{name}/blobs/<etag>                 file contents (etag: LFS sha256 or git oid)
//! models--{org}--{name}/blobs/<etag>.incomplete      a download in progress, resumed with Range
//! models--{org}--{name}/snapshots/<commit>/<path>    relative symlink to ../../blobs/<etag>
//! models--{org}--{name}/refs/<revision>              the commit the revision pointed to
//! ```
//!
//! Input (set by the host from `models.pull`): `{endpoint, model, revision?, quantize?,
//! init?, allow_patterns?}`. The hub protocol: `GET /api/models/{repo}/revision/{rev}`
//! (`sha` is the commit), `GET /api/models/{repo}/tree/{commit}?recursive=true` (paths,
//! sizes, git oids and LFS sha256), `GET /{repo}/resolve/{commit}/{path}` following
//! redirects, with `Range` to resume. Every LFS blob is checked against its sha256
//! before it is renamed into place; a mismatch deletes it and fails the job. The bytes
//! of a download are moved from the response into the blob, and hashed, by the host
//! (`jobhost:plugin/transfer`, see [`transfer`]): this component decides what to fetch,
//! where it goes and whether it is right, and never holds the bytes itself. Progress is
//! reported as bytes on disk out of the bytes of the selected files, at least every
//! 250 ms while bytes arrive. The hub's token, when the server has one, is added by the
//! host to requests to the hub's own host; this component never sees it.

mod http;
mod transfer;

use http::{Failure, Url};
use jobhost_sdk::{Error, Job, log, progress};
use serde::Deserialize;
use std::fs::{self, File};
use std::time::{Duration, Instant};
use transfer::Sha256;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

/// Where the host mounts the models directory.
const MODELS_DIR: &str = "/models";
/// Largest API answer read into memory (a tree of many thousand files fits).
const MAX_API_BYTES: usize = 64 << 20;
/// Progress is reported at least this often while bytes arrive.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The hub, e.g. `https://huggingface.co`.
    endpoint: String,
    /// `org/name`.
    model: String,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    quantize: Option<String>,
    #[serde(default)]
    init: Option<serde_json::Value>,
    #[serde(default)]
    allow_patterns: Vec<String>,
    /// Whether the server has an inference executor to hand `init` to.
    #[serde(default)]
    executor: bool,
}

#[derive(Debug, Deserialize)]
struct RevisionInfo {
    sha: String,
}

#[derive(Debug, Clone, Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Clone, Deserialize)]
struct Lfs {
    oid: String,
    size: u64,
}

/// One file to fetch.
#[derive(Debug, Clone)]
struct FileSpec {
    path: String,
    size: u64,
    /// The blob's name: the LFS sha256, or the git oid for small files.
    etag: String,
    /// sha256 to verify, for LFS files.
    sha256: Option<String>,
}

fn pull(job: Job) -> Result<(), Error> {
    let input: Input = job.input()?;
    let revision = input.revision.clone().unwrap_or_else(|| "main".to_owned());
    check_model(&input.model)?;
    let endpoint = Url::parse(input.endpoint.trim_end_matches('/')).map_err(Error::new)?;
    let base = endpoint.path.trim_end_matches('/').to_owned();
    let at = |path: String| Url { path: format!("{base}{path}"), ..endpoint.clone() };
    if input.init.is_some() && !input.executor {
        log::info("init recorded; no inference executor is configured on this server, so the model is only downloaded");
    }

    // 1. The revision's commit.
    let rev_url = at(format!("/api/models/{}/revision/{}", input.model, encode(&revision, false)));
    let mut answer =
        http::get(&rev_url, &[("accept", "application/json".into())]).map_err(|e| hub_error(&endpoint, e))?;
    if answer.status != 200 {
        return Err(not_found_or_status(&input.model, &revision, &mut answer));
    }
    let info: RevisionInfo = serde_json::from_str(&answer.text(MAX_API_BYTES).map_err(Error::new)?)
        .map_err(|e| Error::new(format!("the hub's revision info for {} is not understood: {e}", input.model)))?;
    drop(answer);
    let commit = info.sha;
    check_segment(&commit, "commit")?;
    log::info(format!("{} {revision} is commit {commit}", input.model));

    // 2. The file tree.
    let entries =
        list_tree(&at(format!("/api/models/{}/tree/{commit}?recursive=true", input.model)), &input, &revision)?;
    let files = select(entries, &input)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    log::info(format!("{} files, {total} bytes selected", files.len()));

    // 3. The cache layout.
    let repo_dir = format!("{MODELS_DIR}/models--{}", input.model.replace('/', "--"));
    for sub in ["blobs", "snapshots", "refs"] {
        fs::create_dir_all(format!("{repo_dir}/{sub}"))
            .map_err(|e| Error::new(format!("creating {repo_dir}/{sub}: {e}")))?;
    }
    let mut meter = Meter::new(total);
    for f in &files {
        meter.done += on_disk(&repo_dir, f);
    }
    meter.report(true, None);

    let mut fetched = 0u64;
    for f in &files {
        let url = at(format!("/{}/resolve/{commit}/{}", input.model, encode(&f.path, true)));
        fetched += fetch(&url, &repo_dir, f, &commit, &mut meter).map_err(|e| hub_error_for(&endpoint, e))?;
        link(&repo_dir, &commit, f)?;
    }
    if revision != commit {
        let r = format!("{repo_dir}/refs/{revision}");
        if let Some(parent) = r.rsplit_once('/').map(|(p, _)| p) {
            fs::create_dir_all(parent).map_err(|e| Error::new(format!("creating {parent}: {e}")))?;
        }
        fs::write(&r, &commit).map_err(|e| Error::new(format!("writing {r}: {e}")))?;
    }
    meter.report(
        true,
        Some(format!("pulled {} at {commit}: {} files, {fetched} bytes downloaded", input.model, files.len())),
    );
    log::info(format!("done: {fetched} bytes downloaded, {total} bytes in the snapshot"));
    println!(
        "{}",
        serde_json::json!({"model": input.model, "revision": revision, "commit": commit, "files": files.len(), "size_bytes": total, "downloaded_bytes": fetched})
    );
    Ok(())
}

jobhost_sdk::export_job!(pull);

/// Pages of the tree (the hub pages large repos with a `Link: <…>; rel="next"` header).
fn list_tree(first: &Url, input: &Input, revision: &str) -> Result<Vec<TreeEntry>, Error> {
    let mut entries = Vec::new();
    let mut next = Some(first.clone());
    while let Some(url) = next.take() {
        let mut answer = http::get(&url, &[("accept", "application/json".into())]).map_err(|e| hub_error(first, e))?;
        if answer.status != 200 {
            return Err(not_found_or_status(&input.model, revision, &mut answer));
        }
        next =
            answer.header("link").and_then(|l| next_link(&l)).map(|l| url.join(&l)).transpose().map_err(Error::new)?;
        let page: Vec<TreeEntry> = serde_json::from_str(&answer.text(MAX_API_BYTES).map_err(Error::new)?)
            .map_err(|e| Error::new(format!("the hub's file tree of {} is not understood: {e}", input.model)))?;
        entries.extend(page);
    }
    Ok(entries)
}

fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part[start..end].to_owned())
    })
}

/// The files to fetch: every file, narrowed by `allow_patterns` and, among GGUF
/// variants, by `quantize`.
fn select(entries: Vec<TreeEntry>, input: &Input) -> Result<Vec<FileSpec>, Error> {
    let mut files = Vec::new();
    for e in entries.into_iter().filter(|e| e.kind == "file") {
        check_path(&e.path)?;
        if !input.allow_patterns.is_empty() && !input.allow_patterns.iter().any(|p| glob(p, &e.path)) {
            continue;
        }
        let (etag, size, sha256) = match &e.lfs {
            Some(lfs) => (lfs.oid.clone(), lfs.size, Some(lfs.oid.to_ascii_lowercase())),
            None => (e.oid.clone(), e.size, None),
        };
        check_segment(&etag, "etag")?;
        files.push(FileSpec { path: e.path, size, etag, sha256 });
    }
    if let Some(q) = input.quantize.as_deref().map(str::to_ascii_lowercase) {
        let is_gguf = |f: &FileSpec| f.path.to_ascii_lowercase().ends_with(".gguf");
        let variants: Vec<String> = files.iter().filter(|f| is_gguf(f)).map(|f| f.path.clone()).collect();
        if !variants.is_empty() {
            let wanted = |f: &FileSpec| file_name(&f.path).to_ascii_lowercase().contains(&q);
            if !files.iter().any(|f| is_gguf(f) && wanted(f)) {
                return Err(Error::new(format!(
                    "no GGUF file of {} matches quantize {q:?}; the variants are: {}",
                    input.model,
                    variants.join(", ")
                )));
            }
            files.retain(|f| !is_gguf(f) || wanted(f));
        } else {
            log::warn(format!("quantize {q:?} ignored: {} has no GGUF variants to choose from", input.model));
        }
    }
    if files.is_empty() {
        return Err(Error::new(format!("no file of {} matches the selection", input.model)));
    }
    Ok(files)
}

/// Bytes of `f` already on disk (complete or partial).
fn on_disk(repo_dir: &str, f: &FileSpec) -> u64 {
    let blob = format!("{repo_dir}/blobs/{}", f.etag);
    match fs::metadata(&blob) {
        Ok(m) if m.len() == f.size => f.size,
        _ => fs::metadata(format!("{blob}.incomplete")).map_or(0, |m| m.len().min(f.size)),
    }
}

/// Why a download did not finish; `Failed` keeps the partial blob for a resume.
enum FetchError {
    Http(Failure),
    Failed(String),
}

fn hub_error(endpoint: &Url, e: Failure) -> Error {
    match e {
        Failure::Unreachable(url, why) if url.authority == endpoint.authority => {
            Error::new(why).context(format!("the hub at {endpoint} is unreachable"))
        }
        other => Error::new(other.to_string()),
    }
}

fn hub_error_for(endpoint: &Url, e: FetchError) -> Error {
    match e {
        FetchError::Http(f) => hub_error(endpoint, f),
        FetchError::Failed(msg) => Error::new(msg),
    }
}

/// Downloads `f` into `blobs/<etag>` unless it is there; returns the bytes fetched.
fn fetch(url: &Url, repo_dir: &str, f: &FileSpec, commit: &str, meter: &mut Meter) -> Result<u64, FetchError> {
    let failed = FetchError::Failed;
    let blob = format!("{repo_dir}/blobs/{}", f.etag);
    if fs::metadata(&blob).is_ok_and(|m| m.len() == f.size) {
        return Ok(0);
    }
    let partial = format!("{blob}.incomplete");
    let mut offset = fs::metadata(&partial).map_or(0, |m| m.len());
    if offset > f.size {
        meter.done = meter.done.saturating_sub(f.size);
        offset = 0;
    }
    let mut fetched = 0u64;
    // LFS blobs are hashed as the bytes arrive; a resumed one first hashes what is on disk.
    let mut hasher = None;
    if f.sha256.is_some() && offset < f.size {
        let h = Sha256::new();
        if offset > 0 {
            let on_disk = open_blob(&partial, OpenFlags::empty(), DescriptorFlags::READ)
                .map_err(|e| failed(format!("opening {partial}: {e}")))?;
            h.absorb_file(&on_disk, offset)
                .map_err(|e| failed(format!("reading {partial}: {}", transfer::describe(e))))?;
        }
        hasher = Some(h);
    }
    let started = Instant::now();
    let mut calls = 0u64;
    if offset < f.size {
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("range", format!("bytes={offset}-")));
        }
        let mut response = http::get(url, &headers).map_err(FetchError::Http)?;
        match response.status {
            206 if offset > 0 => {
                let range = response.header("content-range").unwrap_or_default();
                if !range.trim().starts_with(&format!("bytes {offset}-")) {
                    return Err(failed(format!(
                        "downloading {}: the server answered a resume with Content-Range {range:?}",
                        f.path
                    )));
                }
                log::info(format!("resuming {} at byte {offset} of {}", f.path, f.size));
            }
            200 => {
                if offset > 0 {
                    log::info(format!("{}: the server ignored the Range request; starting over", f.path));
                    meter.done = meter.done.saturating_sub(offset);
                    offset = 0;
                    if hasher.is_some() {
                        hasher = Some(Sha256::new());
                    }
                }
            }
            404 => {
                return Err(failed(format!(
                    "downloading {}: not found on the hub ({})",
                    f.path,
                    hub_message(&mut response)
                )));
            }
            status => {
                let from = response.url.clone();
                let message = hub_message(&mut response);
                return Err(failed(format!("downloading {} from {from}: HTTP {status} ({message})", f.path)));
            }
        }
        if let Some(c) = response.hub_header("x-repo-commit")
            && c != commit
        {
            log::warn(format!("{}: the hub served commit {c}, expected {commit}", f.path));
        }
        if let Some(etag) = response.hub_header("x-linked-etag").or_else(|| response.hub_header("etag")) {
            let etag = etag.trim().trim_start_matches("W/").trim_matches('"').to_owned();
            if !etag.is_empty() && etag != f.etag {
                log::warn(format!("{}: the hub's etag {etag} differs from the tree's {}", f.path, f.etag));
            }
        }
        let mut flags = OpenFlags::CREATE;
        if offset == 0 {
            flags |= OpenFlags::TRUNCATE;
        }
        let out = open_blob(&partial, flags, DescriptorFlags::WRITE)
            .map_err(|e| failed(format!("opening {partial}: {e}")))?;
        let mut written = offset;
        // The host moves the body into the file, feeding the hash, and comes back at
        // least every 100 ms while bytes arrive: progress is reported between calls.
        while let Some(body) = response.body_stream() {
            // One byte more than the file has left: a server that sends more is caught.
            let room = f.size - written + 1;
            let got = transfer::copy(body, &out, written, room, hasher.as_ref())
                .map_err(|e| failed(format!("downloading {}: {}", f.path, transfer::describe(e))))?;
            written += got.bytes;
            fetched += got.bytes;
            calls += 1;
            if written > f.size {
                drop(out);
                let _ = fs::remove_file(&partial);
                return Err(failed(format!(
                    "downloading {}: the server sent more than the {} bytes the tree lists; discarded",
                    f.path, f.size
                )));
            }
            meter.done += got.bytes;
            meter.report(false, None);
            if got.ended {
                break;
            }
        }
        if written != f.size {
            return Err(failed(format!(
                "downloading {}: the connection ended after {written} of {} bytes; pull again to resume",
                f.path, f.size
            )));
        }
    }
    if let Some(expected) = &f.sha256 {
        let got = match hasher {
            Some(h) => h.hex_digest(),
            // Complete on disk but never moved into place (stopped while verifying).
            None => {
                meter.report(true, Some(format!("verifying {}", f.path)));
                let h = Sha256::new();
                let on_disk = open_blob(&partial, OpenFlags::empty(), DescriptorFlags::READ)
                    .map_err(|e| failed(format!("verifying {}: opening {partial}: {e}", f.path)))?;
                h.absorb_file(&on_disk, f.size)
                    .map_err(|e| failed(format!("verifying {}: {}", f.path, transfer::describe(e))))?;
                h.hex_digest()
            }
        };
        if &got != expected {
            let _ = fs::remove_file(&partial);
            meter.done = meter.done.saturating_sub(f.size);
            return Err(failed(format!(
                "sha256 mismatch for {}: the hub's tree lists {expected} but the downloaded bytes hash to {got}; \
                 the blob was discarded",
                f.path
            )));
        }
    }
    if f.size == 0 {
        // An empty file needs no download; its blob is made here.
        File::create(&partial).map_err(|e| failed(format!("creating {partial}: {e}")))?;
    }
    fs::rename(&partial, &blob).map_err(|e| failed(format!("moving {partial} into place: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    log::debug(format!(
        "{}: {fetched} bytes in {calls} transfers, {secs:.3} s ({:.0} MiB/s)",
        f.path,
        fetched as f64 / secs.max(1e-9) / 1048576.0
    ));
    Ok(fetched)
}

/// Opens `path` (under [`MODELS_DIR`]) through the WASI descriptor of the models
/// directory, as `transfer` takes it.
fn open_blob(path: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, String> {
    let rel = path
        .strip_prefix(MODELS_DIR)
        .map(|p| p.trim_start_matches('/'))
        .ok_or_else(|| format!("{path} is not under {MODELS_DIR}"))?;
    let dirs = wasip2::filesystem::preopens::get_directories();
    let (models, _) =
        dirs.iter().find(|(_, p)| p == MODELS_DIR).ok_or_else(|| format!("{MODELS_DIR} is not mounted"))?;
    models.open_at(PathFlags::empty(), rel, open, flags).map_err(|e| e.name().to_owned())
}

/// `snapshots/<commit>/<path>` → the blob, as a relative symlink.
fn link(repo_dir: &str, commit: &str, f: &FileSpec) -> Result<(), Error> {
    let rel = format!("{}/snapshots/{commit}/{}", repo_dir.trim_start_matches(&format!("{MODELS_DIR}/")), f.path);
    let full = format!("{MODELS_DIR}/{rel}");
    if let Some((parent, _)) = full.rsplit_once('/') {
        fs::create_dir_all(parent).map_err(|e| Error::new(format!("creating {parent}: {e}")))?;
    }
    let ups = 2 + f.path.matches('/').count();
    let target = format!("{}blobs/{}", "../".repeat(ups), f.etag);
    if fs::read_link(&full).is_ok_and(|t| t.to_str() == Some(target.as_str())) {
        return Ok(());
    }
    let _ = fs::remove_file(&full);
    let dirs = wasip2::filesystem::preopens::get_directories();
    let (models, _) =
        dirs.iter().find(|(_, p)| p == MODELS_DIR).ok_or_else(|| Error::new(format!("{MODELS_DIR} is not mounted")))?;
    models.symlink_at(&target, &rel).map_err(|e| Error::new(format!("linking {full} to {target}: {}", e.name())))
}

/// Reports progress at most every [`PROGRESS_EVERY`] unless forced.
struct Meter {
    total: u64,
    done: u64,
    last: Option<Instant>,
}

impl Meter {
    fn new(total: u64) -> Meter {
        Meter { total, done: 0, last: None }
    }

    fn report(&mut self, force: bool, message: Option<String>) {
        let now = Instant::now();
        if force || self.last.is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY) {
            self.last = Some(now);
            progress(self.done.min(self.total), Some(self.total), message.as_deref());
        }
    }
}

/// "repository not found" for a 401/404 on the API (the hub answers 401 for a repo
/// that does not exist or is private), with the hub's own message.
fn not_found_or_status(model: &str, revision: &str, answer: &mut http::Response) -> Error {
    let status = answer.status;
    let message = hub_message(answer);
    if matches!(status, 401 | 404) {
        Error::new(format!("HTTP {status}: {message}"))
            .context(format!("repository not found: {model} at revision {revision}"))
    } else {
        Error::new(format!("the hub answered HTTP {status} for {model} at revision {revision}: {message}"))
    }
}

/// The hub's explanation: `X-Error-Message`, the JSON `error` field, or the body.
fn hub_message(answer: &mut http::Response) -> String {
    if let Some(m) = answer.header("x-error-message") {
        return m;
    }
    let body = answer.text(64 << 10).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(500).collect())
}

fn check_model(model: &str) -> Result<(), Error> {
    let ok = !model.is_empty()
        && model.split('/').count() <= 2
        && model.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok { Ok(()) } else { Err(Error::new(format!("invalid model name {model:?}: expected org/name"))) }
}

/// A single path segment from the hub (a commit, an etag): no separators, no dots only.
fn check_segment(s: &str, what: &str) -> Result<(), Error> {
    if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
        Ok(())
    } else {
        Err(Error::new(format!("the hub sent an invalid {what}: {s:?}")))
    }
}

/// A file path from the tree: relative, without `.`/`..` or empty segments.
fn check_path(path: &str) -> Result<(), Error> {
    if !path.is_empty() && path.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\')) {
        Ok(())
    } else {
        Err(Error::new(format!("the hub's tree lists an unsafe path: {path:?}")))
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Percent-encodes for a URL path; `/` kept when `keep_slash`.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `fnmatch`-style matching as huggingface_hub's `allow_patterns`: `*` matches any run
/// of characters (`/` included), `?` one character; a pattern ending in `/` matches
/// everything under that folder.
fn glob(pattern: &str, path: &str) -> bool {
    let pattern = if pattern.ends_with('/') { format!("{pattern}*") } else { pattern.to_owned() };
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), path.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob("*.json", "config.json"));
        assert!(glob("*.json", "sub/config.json"));
        assert!(!glob("*.json", "model.safetensors"));
        assert!(glob("tok?nizer.*", "tokenizer.json"));
        assert!(glob("onnx/", "onnx/model.onnx"));
        assert!(!glob("onnx/", "model.onnx"));
    }

    #[test]
    fn names_and_paths_are_checked() {
        assert!(check_model("org/name-1.5B").is_ok());
        assert!(check_model("../x").is_err());
        assert!(check_model("a/b/c").is_err());
        assert!(check_path("a/b.txt").is_ok());
        assert!(check_path("../b").is_err());
        assert!(check_path("/etc/passwd").is_err());
        assert!(check_segment("abc123", "x").is_ok());
        assert!(check_segment("a/b", "x").is_err());
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("a b/c", true), "a%20b/c");
        assert_eq!(next_link("<https://h/api?cursor=x>; rel=\"next\"").as_deref(), Some("https://h/api?cursor=x"));
    }
}
