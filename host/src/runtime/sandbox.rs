//! A job's directories on the host and what the guest is shown of them.
//!
//! Each job owns `jobs/<id>/` under the data dir with `output/` and `work/`, and
//! `input/` when it was given files (a consumed upload). The guest gets exactly three
//! WASI preopens — `/input` read-only, `/output` and `/work` read-write — and nothing
//! else: no inherited environment, no sockets, no other paths. A job without files
//! is shown `jobs/.empty-input` as `/input`, one empty directory shared read-only by
//! all such jobs, which saves a directory per job (creating one is the larger part of
//! a short job's file system work). Path resolution inside a preopen is cap-std's (in wasmtime-wasi), which
//! refuses `..`, absolute paths and symlinks that leave the directory.

use crate::jobs::model::Artifact;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Guest path of the read-only input directory.
pub const INPUT: &str = "/input";
/// Guest path of the directory whose files become artifacts.
pub const OUTPUT: &str = "/output";
/// Guest path of the scratch directory (also the working directory).
pub const WORK: &str = "/work";

/// Name, under the jobs directory, of the empty directory shown as `/input` to jobs
/// given no files.
pub const EMPTY_INPUT: &str = ".empty-input";

/// The most random bytes one `get-random-bytes` call may return (WASI's default is 64 MiB).
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The host side of one job's sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `jobs/<id>`.
    pub root: PathBuf,
    /// A directory to move in as `input/` when the sandbox is first prepared.
    input_from: Option<PathBuf>,
}

impl Sandbox {
    /// The sandbox of the job whose directory is `root`.
    pub fn new(root: PathBuf) -> Sandbox {
        Sandbox { root, input_from: None }
    }

    /// Moves `dir` (a consumed upload's files) in as `input/` at [`Sandbox::prepare`].
    pub fn with_input_from(mut self, dir: Option<PathBuf>) -> Sandbox {
        self.input_from = dir;
        self
    }

    /// Host directory shown as `/input`.
    pub fn input(&self) -> PathBuf {
        self.root.join("input")
    }

    /// Host directory shown as `/output`.
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }

    /// Host directory shown as `/work`.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The shared empty directory shown as `/input` to jobs given no files.
    fn empty_input(&self) -> PathBuf {
        self.root.parent().unwrap_or(&self.root).join(EMPTY_INPUT)
    }

    /// Creates the job's directories (keeping what is already in them), first moving a
    /// consumed upload's files in as `input/` if they are still waiting. A rename on one
    /// file system: the upload's files are never copied, and a job that ran before (a
    /// retry after a crash) finds them already in place. Returns what to show as
    /// `/input` and the bytes already under `output/` (left by an earlier attempt).
    pub fn prepare(&self) -> io::Result<Prepared> {
        let fresh = match std::fs::create_dir(&self.root) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.root)?;
                true
            }
            Err(e) => return Err(e),
        };
        if let Some(from) = &self.input_from
            && !self.input().exists()
            && from.is_dir()
        {
            std::fs::rename(from, self.input())?;
        }
        for dir in [self.output(), self.work()] {
            match std::fs::create_dir(&dir) {
                Err(e) if !fresh && e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other?,
            }
        }
        let own_input = (!fresh || self.input_from.is_some()) && self.input().is_dir();
        let input = if own_input {
            self.input()
        } else {
            let empty = self.empty_input();
            if !empty.is_dir() {
                std::fs::create_dir_all(&empty)?;
            }
            empty
        };
        let output_used = if fresh { 0 } else { tree_size(&self.output()) };
        Ok(Prepared { input, output_used })
    }

    /// Adds the three preopens (`/input` from `input`, see [`Sandbox::prepare`]), the
    /// working directory and the network policy (none).
    pub fn apply(&self, wasi: &mut WasiCtxBuilder, input: &Path) -> io::Result<()> {
        let preopen = |wasi: &mut WasiCtxBuilder, host: PathBuf, guest: &str, perms| {
            wasi.preopened_dir(&host, guest, perms)
                .map(|_| ())
                .map_err(|e| io::Error::other(format!("preopen {guest} from {}: {e:#}", host.display())))
        };
        preopen(wasi, input.to_path_buf(), INPUT, FsPerms::ReadOnly)?;
        preopen(wasi, self.output(), OUTPUT, FsPerms::ReadWrite)?;
        preopen(wasi, self.work(), WORK, FsPerms::ReadWrite)?;
        wasi.initial_cwd(WORK)
            // One call may ask for at most this many random bytes: enough for any key
            // or seed, not enough to make the host allocate a guest's memory worth.
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        Ok(())
    }

    /// Whether `output/` holds nothing at all (one directory read: the usual case of a
    /// short job, which then needs no walk).
    pub fn output_is_empty(&self) -> bool {
        std::fs::read_dir(self.output()).is_ok_and(|mut entries| entries.next().is_none())
    }

    /// Every regular file under `output/`, named by its path relative to it with `/`
    /// separators, with size and SHA-256. Symlinks are neither followed nor listed, and
    /// names that are not UTF-8 are skipped (they cannot be named over JSON).
    pub fn collect_artifacts(&self) -> io::Result<Vec<Artifact>> {
        let out = self.output();
        let mut artifacts = Vec::new();
        for entry in WalkDir::new(&out).follow_links(false).sort_by_file_name() {
            let entry = entry.map_err(io::Error::other)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let Some(name) = relative_name(&out, entry.path()) else { continue };
            let (size_bytes, sha256) = hash_file(entry.path())?;
            artifacts.push(Artifact { name, size_bytes, sha256 });
        }
        Ok(artifacts)
    }
}

/// What [`Sandbox::prepare`] found or made.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The host directory to show as `/input`.
    pub input: PathBuf,
    /// Bytes already under `output/`.
    pub output_used: u64,
}

/// Total size of the regular files under `dir` (symlinks not followed); what cannot
/// be read counts as 0.
pub fn tree_size(dir: &Path) -> u64 {
    tree_stats(dir).0
}

/// Total size and count of the regular files under `dir` (symlinks not followed).
pub fn tree_stats(dir: &Path) -> (u64, u64) {
    WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(bytes, files), m| (bytes + m.len(), files + 1))
}

fn relative_name(base: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(base).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Size and hex SHA-256 of a file, read in 64 KiB pieces.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_regular_files_by_relative_name() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let sb = Sandbox::new(dir.path().join("job"));
        sb.prepare()?;
        std::fs::create_dir_all(sb.output().join("sub"))?;
        std::fs::write(sb.output().join("a.txt"), b"abc")?;
        std::fs::write(sb.output().join("sub/b.txt"), b"")?;
        std::os::unix::fs::symlink("/etc/passwd", sb.output().join("link"))?;
        let got = sb.collect_artifacts()?;
        let names: Vec<_> = got.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"]);
        assert_eq!(got[0].size_bytes, 3);
        assert_eq!(got[0].sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        Ok(())
    }
}
