//! Files in and out of jobs from the terminal: a directory sent as one upload (a tar
//! the server unpacks, seen by the job read-only at `/input`) and every artifact of a
//! job written into a directory, each checked against its recorded size and SHA-256.
//! `run`, `submit`, `upload` and `artifacts` share these.

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jobhost_client::Client;
use jobhost_model::{Artifact, Upload};
use sha2::{Digest as _, Sha256};
use std::io::IsTerminal as _;
use std::path::{Component, Path, PathBuf};

/// Transfers at least this large draw a progress bar (on a terminal): below it, one
/// finishes before a bar would be seen.
const BAR_FROM_BYTES: u64 = 8 << 20;

/// Sends the files under `dir` as one finalized upload and returns it. Symbolic links
/// and other special files are refused (the server would refuse them too).
pub(super) async fn upload_dir(client: &Client, dir: &Path) -> anyhow::Result<Upload> {
    let (tar, bytes) = tar_of(dir)?;
    let bar = bar(bytes, "uploading");
    let upload = client.create_upload().await?;
    client.put_archive(&upload.id, tar).await.with_context(|| format!("uploading {}", dir.display()))?;
    let sealed = client.finalize_upload(&upload.id).await?;
    bar.finish_and_clear();
    Ok(sealed)
}

/// A tar of the regular files and directories under `dir`, paths relative to it, and
/// the bytes of its files.
fn tar_of(dir: &Path) -> anyhow::Result<(Vec<u8>, u64)> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let rel = entry.path().strip_prefix(dir).context("a path outside the directory")?;
        let kind = entry.file_type();
        if kind.is_dir() {
            tar.append_dir(rel, entry.path())?;
        } else if kind.is_file() {
            bytes += entry.metadata()?.len();
            tar.append_path_with_name(entry.path(), rel)
                .with_context(|| format!("reading {}", entry.path().display()))?;
        } else {
            bail!("{} is not a regular file or directory; only those can be uploaded", entry.path().display());
        }
    }
    Ok((tar.into_inner()?, bytes))
}

/// Downloads `artifact` of `job_id` and checks it against its record.
pub(super) async fn fetch(client: &Client, job_id: &str, artifact: &Artifact) -> anyhow::Result<Vec<u8>> {
    let body = client.download_artifact(job_id, &artifact.name).await?.body;
    if body.len() as u64 != artifact.size_bytes {
        bail!("{}: got {} bytes, the record says {}", artifact.name, body.len(), artifact.size_bytes);
    }
    let sha256 = hex::encode(Sha256::digest(&body));
    if sha256 != artifact.sha256 {
        bail!("{}: SHA-256 {sha256} does not match the record's {}", artifact.name, artifact.sha256);
    }
    Ok(body)
}

/// Writes every artifact of `job_id` under `dir` (sub-paths kept); returns them.
pub(super) async fn download_all(client: &Client, job_id: &str, dir: &Path) -> anyhow::Result<Vec<Artifact>> {
    let artifacts = client.artifacts(job_id).await?;
    let bar = bar(artifacts.iter().map(|a| a.size_bytes).sum(), "downloading");
    for artifact in &artifacts {
        let data = fetch(client, job_id, artifact).await?;
        let path = dir.join(relative(&artifact.name)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &data).with_context(|| format!("writing {}", path.display()))?;
        bar.inc(artifact.size_bytes);
    }
    bar.finish_and_clear();
    Ok(artifacts)
}

/// An artifact's name as a path that stays under the directory it is written to.
fn relative(name: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(name);
    if name.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("refusing to write the artifact {name:?}: not a plain relative path");
    }
    Ok(path)
}

/// A byte bar on stderr for a transfer of `total` bytes, hidden when stderr is not a
/// terminal or the transfer is small.
fn bar(total: u64, what: &str) -> ProgressBar {
    if total < BAR_FROM_BYTES || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_stay_under_the_directory() {
        assert_eq!(relative("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
            assert!(relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_becomes_a_tar_of_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "bb").unwrap();
        let (tar, bytes) = tar_of(dir.path()).unwrap();
        assert_eq!(bytes, 3);
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["a.txt", "sub", "sub/b.txt"]);
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        assert!(tar_of(dir.path()).unwrap_err().to_string().contains("not a regular file"));
    }
}
