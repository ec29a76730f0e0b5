//! Safe unpacking of a tar archive into an upload.
//!
//! The archive is first read through once without writing anything: every entry
//! must be a regular file or a directory, named by a plain relative path (no
//! absolute path, no `..`), not named twice, and the entries and their bytes must
//! stay within the upload's limits. Only an archive that passes all of that is
//! unpacked, through cap-std inside the upload's directory; links, devices and
//! fifos are refused, so nothing can be written or pointed outside it. The files are
//! put on disk together at the end ([`sync`]), not one by one.

use super::{UploadLimits, check_path, open_dir};
use crate::jobs::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What an unpacked archive added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Checks, then unpacks the tar file at `archive` into the upload directory `root`,
/// which already holds `have_bytes` in `have_files` files.
pub fn unpack(
    archive: &Path,
    root: &Path,
    limits: &UploadLimits,
    have_bytes: u64,
    have_files: u64,
) -> Result<Unpacked> {
    let entries: HashMap<PathBuf, Kind> =
        check(std::fs::File::open(archive).map_err(io_internal)?, limits, have_bytes, have_files)?
            .into_iter()
            .collect();
    let dir = open_dir(root)?;
    let mut tar = tar::Archive::new(std::fs::File::open(archive).map_err(io_internal)?);
    let mut unpacked = Unpacked { files: 0, bytes: 0 };
    // Directories made so far: a tree of many small files asks for each parent once.
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut make_dir = |path: &Path| -> Result<()> {
        if !made.contains(path) {
            dir.create_dir_all(path).map_err(|e| conflict(path, &e))?;
            made.extend(path.ancestors().filter(|a| !a.as_os_str().is_empty()).map(Path::to_path_buf));
        }
        Ok(())
    };
    for entry in tar.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let Some(path) = entry_path(&entry)? else { continue };
        let Some(&kind) = entries.get(&path) else { continue };
        match kind {
            Kind::Dir => make_dir(&path)?,
            Kind::File => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    make_dir(parent)?;
                }
                let mut file = dir.create(&path).map_err(|e| conflict(&path, &e))?;
                let n = io::copy(&mut entry, &mut file).map_err(io_internal)?;
                unpacked.files += 1;
                unpacked.bytes += n;
            }
        }
    }
    Ok(unpacked)
}

/// Puts on disk everything written to the file system holding `root` (the files an
/// archive brought and the renames that moved them in): one `syncfs` rather than an
/// `fsync` per file, which made a tree of 10,000 small files take 20 s.
pub fn sync(root: &Path) -> Result<()> {
    let dir = std::fs::File::open(root).map_err(io_internal)?;
    rustix::fs::syncfs(&dir).map_err(|e| io_internal(e.into()))
}

/// Moves what `staged` holds (a directory an archive was just unpacked into) into the
/// upload directory `root`, files replacing files of the same name. Every entry is
/// checked against `root` first (a file where `root` has a directory, or the other way
/// round, is a conflict), so the moves, renames on one file system, all happen or,
/// when a check fails, none does.
pub fn move_in(staged: &Path, root: &Path) -> Result<()> {
    let from = open_dir(staged)?;
    let to = open_dir(root)?;
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(staged).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| io_internal(io::Error::other(e)))?;
        let rel = entry.path().strip_prefix(staged).map_err(|e| io_internal(io::Error::other(e)))?.to_path_buf();
        let is_dir = entry.file_type().is_dir();
        match to.symlink_metadata(&rel) {
            Ok(there) if there.is_dir() != is_dir => {
                let what = if is_dir { "a file" } else { "a directory" };
                return Err(Error::Conflict(format!("{}: the upload has {what} there", rel.display())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_internal(e)),
        }
        entries.push((rel, is_dir));
    }
    for (rel, is_dir) in entries {
        if is_dir {
            to.create_dir_all(&rel).map_err(|e| conflict(&rel, &e))?;
        } else {
            from.rename(&rel, &to, &rel).map_err(|e| conflict(&rel, &e))?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// Reads every header and refuses the archive on the first entry that is not safe.
fn check(file: impl Read, limits: &UploadLimits, have_bytes: u64, have_files: u64) -> Result<Vec<(PathBuf, Kind)>> {
    let mut tar = tar::Archive::new(file);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let (mut bytes, mut files) = (have_bytes, have_files);
    for entry in tar.entries().map_err(bad_archive)? {
        let entry = entry.map_err(bad_archive)?;
        let Some(path) = entry_path(&entry)? else { continue };
        let shown = path.display().to_string();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            other => {
                return Err(Error::invalid(
                    "archive",
                    format!("entry {shown:?} is a {other:?}; only regular files and directories are accepted"),
                ));
            }
        };
        if !seen.insert(path.clone()) {
            return Err(Error::invalid("archive", format!("entry {shown:?} appears twice")));
        }
        if kind == Kind::File {
            files += 1;
            bytes += entry.header().size().map_err(bad_archive)?;
            if files > limits.max_files {
                return Err(Error::LimitExceeded(format!("files per upload: the limit is {}", limits.max_files)));
            }
            if bytes > limits.max_bytes {
                return Err(Error::LimitExceeded(format!("bytes per upload: the limit is {}", limits.max_bytes)));
            }
        }
        out.push((path, kind));
    }
    Ok(out)
}

/// The entry's path, checked to be plain and relative (a leading `./` and a trailing
/// `/` are allowed, as `tar -C dir -c .` writes them); `None` for the archive's own
/// root directory (`./`), which is the upload itself.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<PathBuf>> {
    let raw = entry.path_bytes();
    let text = String::from_utf8_lossy(&raw);
    let trimmed = text.strip_suffix('/').unwrap_or(&text);
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if (trimmed.is_empty() || trimmed == ".") && entry.header().entry_type() == tar::EntryType::Directory {
        return Ok(None);
    }
    check_path(trimmed).map(Some).map_err(|m| Error::invalid("archive", format!("entry {text:?}: {m}")))
}

fn bad_archive(e: io::Error) -> Error {
    Error::invalid("archive", format!("not a readable tar archive: {e}"))
}

fn conflict(path: &Path, e: &io::Error) -> Error {
    Error::Conflict(format!("{}: {e}", path.display()))
}

fn io_internal(e: io::Error) -> Error {
    tracing::error!(error = %e, "unpacking an archive");
    Error::Internal("unpacking the archive failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // `set_path` refuses `..`; write the raw name as a hostile tool would.
        let name_field = &mut h.as_old_mut().name;
        name_field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn run(archive: &[u8]) -> (Result<Unpacked>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("a.tar");
        std::fs::write(&tar_path, archive).unwrap();
        let root = dir.path().join("upload");
        std::fs::create_dir(&root).unwrap();
        (unpack(&tar_path, &root, &UploadLimits::default(), 0, 0), dir)
    }

    #[test]
    fn plain_files_and_directories_unpack() {
        let (r, dir) = run(&tar_with(|b| {
            file(b, "a.txt", b"hello");
            file(b, "sub/b.txt", b"world");
        }));
        assert_eq!(r.ok(), Some(Unpacked { files: 2, bytes: 10 }));
        assert_eq!(std::fs::read(dir.path().join("upload/sub/b.txt")).ok(), Some(b"world".to_vec()));
    }

    #[test]
    fn escapes_links_and_duplicates_are_refused_and_nothing_is_written() {
        let cases: Vec<Vec<u8>> = vec![
            tar_with(|b| {
                file(b, "ok.txt", b"x");
                file(b, "../evil", b"x");
            }),
            tar_with(|b| file(b, "/etc/evil", b"x")),
            tar_with(|b| {
                file(b, "ok.txt", b"x");
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let _ = h.set_path("link");
                let _ = h.set_link_name("/etc");
                h.set_cksum();
                let _ = b.append(&h, io::empty());
            }),
            tar_with(|b| {
                file(b, "same", b"x");
                file(b, "same", b"y");
            }),
        ];
        for archive in cases {
            let (r, dir) = run(&archive);
            let e = r.err().map(|e| e.kind());
            assert_eq!(e, Some("invalid_params"));
            assert!(!dir.path().join("upload/ok.txt").exists(), "nothing written");
            assert!(!dir.path().join("evil").exists());
        }
    }
}
