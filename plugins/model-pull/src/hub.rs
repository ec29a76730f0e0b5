//! The hub's API as this puller speaks it: the wire types of the revision and tree
//! answers, the paged tree listing, and the mapping of the hub's failures to the errors
//! a user reads (a 401/404 becomes "repository not found", with the hub's own message).
//! It also holds the checks on every name that ends up in a URL or a path under
//! `/models` (the model id, a commit, an etag, a file path) and the percent-encoding of
//! URL paths: the hub is not trusted to send only safe names, so nothing it sends
//! reaches the file system or a request unchecked.

use crate::Input;
use crate::http::{self, Failure, Url};
use jobhost_sdk::Error;
use serde::Deserialize;

/// Largest API answer read into memory (a tree of many thousand files fits).
pub const MAX_API_BYTES: usize = 64 << 20;

#[derive(Debug, Deserialize)]
pub struct RevisionInfo {
    pub sha: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub oid: String,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lfs {
    pub oid: String,
    pub size: u64,
}

/// Pages of the tree (the hub pages large repos with a `Link: <…>; rel="next"` header).
pub fn list_tree(first: &Url, input: &Input, revision: &str) -> Result<Vec<TreeEntry>, Error> {
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

pub fn hub_error(endpoint: &Url, e: Failure) -> Error {
    match e {
        Failure::Unreachable(url, why) if url.authority == endpoint.authority => {
            Error::new(why).context(format!("the hub at {endpoint} is unreachable"))
        }
        other => Error::new(other.to_string()),
    }
}

/// "repository not found" for a 401/404 on the API (the hub answers 401 for a repo
/// that does not exist or is private), with the hub's own message.
pub fn not_found_or_status(model: &str, revision: &str, answer: &mut http::Response) -> Error {
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
pub fn hub_message(answer: &mut http::Response) -> String {
    if let Some(m) = answer.header("x-error-message") {
        return m;
    }
    let body = answer.text(64 << 10).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(500).collect())
}

pub fn check_model(model: &str) -> Result<(), Error> {
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
pub fn check_segment(s: &str, what: &str) -> Result<(), Error> {
    if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
        Ok(())
    } else {
        Err(Error::new(format!("the hub sent an invalid {what}: {s:?}")))
    }
}

/// A file path from the tree: relative, without `.`/`..` or empty segments.
pub fn check_path(path: &str) -> Result<(), Error> {
    if !path.is_empty() && path.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\')) {
        Ok(())
    } else {
        Err(Error::new(format!("the hub's tree lists an unsafe path: {path:?}")))
    }
}

/// Percent-encodes for a URL path; `/` kept when `keep_slash`.
pub fn encode(s: &str, keep_slash: bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
