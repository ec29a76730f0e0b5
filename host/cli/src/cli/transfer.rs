//! Files in and out of jobs from the terminal: a directory sent as one upload (a tar
//! the server unpacks, seen by the job read-only at `/input`) and every artifact of a
//! job written into a directory, each checked against its recorded size and SHA-256.
//! `run`, `submit`, `upload` and `artifacts` share these.

use anyhow::{Context as _, bail};
use futures::TryStreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use jobhost_client::Client;
use jobhost_model::{Artifact, Upload};
use sha2::{Digest as _, Sha256};
use std::io::{IsTerminal as _, Seek as _, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use tokio_util::io::ReaderStream;

/// Transfers at least this large draw a progress bar (on a terminal): below it, one
/// finishes before a bar would be seen.
const BAR_FROM_BYTES: u64 = 8 << 20;

/// Bytes read or written at a time in a transfer.
const CHUNK: usize = 256 << 10;

/// Sends the files under `dir` as one finalized upload and returns it. The archive is
/// written to a temporary file and streamed from it, so its size is bounded by the
/// disk, not by memory. Symbolic links and other special files are refused (the server
/// would refuse them too).
pub(super) async fn upload_dir(client: &Client, dir: &Path) -> anyhow::Result<Upload> {
    let mut file = tempfile::tempfile().context("creating a temporary file for the archive")?;
    tar_into(dir, &mut file)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let bar = bar(len, "uploading");
    let sent = bar.clone();
    let chunks = ReaderStream::with_capacity(tokio::fs::File::from_std(file), CHUNK)
        .inspect_ok(move |chunk| sent.inc(chunk.len() as u64));
    let upload = client.create_upload().await?;
    client.put_archive_stream(&upload.id, len, chunks).await.with_context(|| format!("uploading {}", dir.display()))?;
    let sealed = client.finalize_upload(&upload.id).await?;
    bar.finish_and_clear();
    Ok(sealed)
}

/// Writes a tar of the regular files and directories under `dir`, paths relative to
/// it, into `out`.
fn tar_into(dir: &Path, out: impl Write) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let rel = entry.path().strip_prefix(dir).context("a path outside the directory")?;
        let kind = entry.file_type();
        if kind.is_dir() {
            tar.append_dir(rel, entry.path())?;
        } else if kind.is_file() {
            tar.append_path_with_name(entry.path(), rel)
                .with_context(|| format!("reading {}", entry.path().display()))?;
        } else {
            bail!("{} is not a regular file or directory; only those can be uploaded", entry.path().display());
        }
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Streams `artifact` of `job_id` into `out`, drawing `bar`, and checks what arrived
/// against the artifact's recorded size and SHA-256. `out` has seen the bytes either
/// way: a caller writing to a file keeps it only when this succeeds.
pub(super) async fn fetch(
    client: &Client,
    job_id: &str,
    artifact: &Artifact,
    mut out: impl Write,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut hasher = Sha256::new();
    let received = client
        .download_artifact_into(job_id, &artifact.name, |chunk| {
            hasher.update(chunk);
            bar.inc(chunk.len() as u64);
            out.write_all(chunk)
        })
        .await?;
    out.flush()?;
    if received != artifact.size_bytes {
        bail!("{}: got {received} bytes, the record says {}", artifact.name, artifact.size_bytes);
    }
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != artifact.sha256 {
        bail!("{}: SHA-256 {sha256} does not match the record's {}", artifact.name, artifact.sha256);
    }
    Ok(())
}

/// Downloads `artifact` of `job_id` to `path`: into a temporary file beside it, renamed
/// over `path` once size and SHA-256 match, so a failed download leaves nothing.
pub(super) async fn fetch_to(
    client: &Client,
    job_id: &str,
    artifact: &Artifact,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(parent).with_context(|| format!("writing in {}", parent.display()))?;
    fetch(client, job_id, artifact, std::io::BufWriter::with_capacity(CHUNK, tmp.as_file_mut()), bar).await?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes every artifact of `job_id` under `dir` (sub-paths kept); returns them.
pub(super) async fn download_all(client: &Client, job_id: &str, dir: &Path) -> anyhow::Result<Vec<Artifact>> {
    let artifacts = client.artifacts(job_id).await?;
    let bar = bar(artifacts.iter().map(|a| a.size_bytes).sum(), "downloading");
    for artifact in &artifacts {
        fetch_to(client, job_id, artifact, &dir.join(relative(&artifact.name)?), &bar).await?;
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
pub(super) fn bar(total: u64, what: &str) -> ProgressBar {
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
        let mut tar = Vec::new();
        tar_into(dir.path(), &mut tar).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["a.txt", "sub", "sub/b.txt"]);
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        assert!(tar_into(dir.path(), Vec::new()).unwrap_err().to_string().contains("not a regular file"));
    }
}
