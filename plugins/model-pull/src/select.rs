//! Which files of the tree are pulled, and under what blob name. The selection follows
//! huggingface_hub's `allow_patterns` (fnmatch-style globs) so a pull here fetches what
//! `snapshot_download` would, and `quantize` narrows a repository of GGUF variants to the
//! one asked for, failing with the list of variants rather than fetching all of them.
//! Each chosen file becomes a [`FileSpec`]: its blob is named by the LFS sha256 (which
//! is then also checked) or, for a small file kept in git, by its git oid.

use crate::Input;
use crate::hub::{TreeEntry, check_path, check_segment};
use jobhost_sdk::{Error, log};

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: String,
    pub size: u64,
    /// The blob's name: the LFS sha256, or the git oid for small files.
    pub etag: String,
    /// sha256 to verify, for LFS files.
    pub sha256: Option<String>,
}

/// The files to fetch: every file, narrowed by `allow_patterns` and, among GGUF
/// variants, by `quantize`.
pub fn select(entries: Vec<TreeEntry>, input: &Input) -> Result<Vec<FileSpec>, Error> {
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

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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
}
