//! A job's directories on the host and what the guest is shown of them.
//!
//! A job's files live in `jobs/<id>/`: `output/` and `work/`, and `input/` when it
//! was given files (a consumed upload). The guest gets exactly three WASI preopens —
//! `/input` read-only, `/output` and `/work` read-write — and nothing else: no
//! inherited environment, no sockets, no other paths.
//!
//! Creating directories is most of a short job's file system work, so a job that has
//! no directory yet and was given no files runs in a spare: an empty `output/` +
//! `work/` pair from a pool under `jobs/.spare/`, and is shown `jobs/.empty-input`,
//! one empty directory shared read-only by all such jobs, as `/input`. When the run
//! ends, a spare it left empty goes back to the pool and the job has no directory at
//! all; otherwise (or when the guest was stopped in the middle) its two directories are
//! moved (renamed) to `jobs/<id>/`, where they stay as they would have. A retried job, or one given files, gets `jobs/<id>/`
//! directly. Path resolution inside a preopen is cap-std's (in wasmtime-wasi), which
//! refuses `..`, absolute paths and symlinks that leave the directory.

use jobhost_model::Artifact;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
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
/// Name, under the jobs directory, of the pool of spare sandboxes.
pub const SPARES: &str = ".spare";

/// Spare sandboxes: empty `output/` + `work/` pairs under `jobs/.spare/<n>/`, kept
/// ready for jobs that have no directory yet (see the module's documentation).
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl Spares {
    /// An empty pool under `jobs_dir`. What a previous process left there (the runs it
    /// did not finish) is removed: their jobs start again from an empty sandbox. Also
    /// makes the shared empty `/input` ([`EMPTY_INPUT`]).
    pub fn new(jobs_dir: &Path) -> io::Result<Spares> {
        let dir = jobs_dir.join(SPARES);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&dir)?;
        let empty = jobs_dir.join(EMPTY_INPUT);
        if !empty.is_dir() {
            std::fs::create_dir_all(&empty)?;
        }
        Ok(Spares { dir, free: Mutex::new(Vec::new()), next: AtomicU64::new(0) })
    }

    /// A spare from the pool, if one is ready (no file system work).
    pub fn pop(&self) -> Option<PathBuf> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// A new spare (three directories).
    fn make(&self) -> io::Result<PathBuf> {
        let spare = self.dir.join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::create_dir(&spare)?;
        std::fs::create_dir(spare.join("output"))?;
        std::fs::create_dir(spare.join("work"))?;
        Ok(spare)
    }

    fn give_back(&self, spare: PathBuf) {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).push(spare);
    }
}

/// The most random bytes one `get-random-bytes` call may return (WASI's default is 64 MiB).
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The host side of one job's sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `jobs/<id>`.
    pub root: PathBuf,
    /// A directory to move in as `input/` when the sandbox is first prepared.
    input_from: Option<PathBuf>,
    /// The spare the job runs in, until [`Sandbox::settle`].
    spare: Option<PathBuf>,
}

impl Sandbox {
    /// The sandbox of the job whose directory is `root`.
    pub fn new(root: PathBuf) -> Sandbox {
        Sandbox { root, input_from: None, spare: None }
    }

    /// Whether the job may run in a spare: it has no directory yet and is given no
    /// files (one `stat`).
    pub fn may_use_spare(&self) -> bool {
        self.input_from.is_none() && !self.root.exists()
    }

    /// Runs the job in `spare` (from [`Spares::pop`]); `/input` is the shared empty
    /// directory.
    pub fn in_spare(mut self, spare: PathBuf) -> (Sandbox, Prepared) {
        self.spare = Some(spare);
        let input = self.empty_input();
        (self, Prepared { input, output_used: 0 })
    }

    /// [`Sandbox::prepare`], in a spare when the job may use one (a new spare when the
    /// pool has none ready), else in `jobs/<id>`.
    pub fn prepare_with(self, spares: &Spares) -> io::Result<(Sandbox, Prepared)> {
        if self.may_use_spare() {
            let spare = match spares.pop() {
                Some(s) => s,
                None => spares.make()?,
            };
            return Ok(self.in_spare(spare));
        }
        let prepared = self.prepare()?;
        Ok((self, prepared))
    }

    /// Once the run is over: a spare left empty goes back to `spares` (when `reusable`:
    /// the guest returned, so none of its file operations is still in flight) and the
    /// job keeps no directory; any other spare becomes `jobs/<id>/`'s `output/` and
    /// `work/`. Afterwards the sandbox names `jobs/<id>`. Returns whether the spare went
    /// back, so the job has no files at all.
    pub fn settle(&mut self, spares: &Spares, reusable: bool) -> io::Result<bool> {
        let Some(spare) = self.spare.take() else { return Ok(false) };
        let empty = |dir: PathBuf| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
        if reusable && empty(spare.join("output")) && empty(spare.join("work")) {
            spares.give_back(spare);
            return Ok(true);
        }
        std::fs::create_dir_all(&self.root)?;
        std::fs::rename(spare.join("output"), self.root.join("output"))?;
        std::fs::rename(spare.join("work"), self.root.join("work"))?;
        std::fs::remove_dir(&spare)?;
        Ok(false)
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
        self.spare.as_ref().unwrap_or(&self.root).join("output")
    }

    /// Host directory shown as `/work`.
    pub fn work(&self) -> PathBuf {
        self.spare.as_ref().unwrap_or(&self.root).join("work")
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
        // The shared empty directory is made once, with the pool ([`Spares::new`]).
        let input = if own_input { self.input() } else { self.empty_input() };
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

    /// Whether `output/` holds nothing at all, or is not there (a spare given back
    /// empty): one directory read, the usual case of a short job, which then needs no
    /// walk.
    pub fn output_is_empty(&self) -> bool {
        match std::fs::read_dir(self.output()) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }

    /// Removes every symlink under `output/` and `work/` that points outside the job's
    /// directory (an absolute target, or one that climbs above it): the guest could not
    /// follow it, and nothing of a run may point out of its tree once it is over.
    /// Returns how many it removed.
    pub fn remove_escaping_links(&self) -> io::Result<usize> {
        let mut removed = 0;
        for dir in [self.output(), self.work()] {
            for entry in WalkDir::new(&dir).follow_links(false) {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if e.io_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => continue,
                    Err(e) => return Err(io::Error::other(e)),
                };
                if !entry.path_is_symlink() {
                    continue;
                }
                let target = std::fs::read_link(entry.path())?;
                if escapes(&self.root, entry.path(), &target) {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
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

/// Whether the symlink at `link` (under `root`) with `target` leads out of `root`,
/// read lexically: absolute, or climbing above `root` with `..`.
fn escapes(root: &Path, link: &Path, target: &Path) -> bool {
    use std::path::Component;
    let Some(depth) = link.parent().and_then(|p| p.strip_prefix(root).ok()).map(|p| p.components().count()) else {
        return true;
    };
    let mut depth = depth as isize;
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
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
        std::os::unix::fs::symlink("../../..", sb.work().join("up"))?;
        std::os::unix::fs::symlink("../input", sb.work().join("in"))?;
        std::os::unix::fs::symlink("b.txt", sb.output().join("sub/same"))?;
        assert_eq!(sb.remove_escaping_links()?, 2);
        assert!(
            sb.output().join("link").symlink_metadata().is_err() && sb.work().join("up").symlink_metadata().is_err()
        );
        assert!(sb.work().join("in").symlink_metadata().is_ok(), "a link inside the job's tree stays");
        assert!(sb.output().join("sub/same").symlink_metadata().is_ok());
        let got = sb.collect_artifacts()?;
        let names: Vec<_> = got.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"]);
        assert_eq!(got[0].size_bytes, 3);
        assert_eq!(got[0].sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        Ok(())
    }

    #[test]
    fn a_spare_left_empty_is_reused_and_one_with_files_becomes_the_jobs_directory() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let jobs = dir.path().join("jobs");
        let spares = Spares::new(&jobs)?;

        let (mut quiet, prepared) = Sandbox::new(jobs.join("job_a")).prepare_with(&spares)?;
        assert_eq!(prepared.input, jobs.join(EMPTY_INPUT));
        let used = quiet.output().parent().map(Path::to_path_buf);
        quiet.settle(&spares, true)?;
        assert!(!jobs.join("job_a").exists(), "a job that left nothing has no directory");
        assert!(quiet.output_is_empty());

        let (mut busy, _) = Sandbox::new(jobs.join("job_b")).prepare_with(&spares)?;
        assert_eq!(busy.output().parent().map(Path::to_path_buf), used, "the spare went back to the pool");
        std::fs::write(busy.output().join("r.txt"), b"result")?;
        std::fs::write(busy.work().join("scratch"), b"")?;
        busy.settle(&spares, true)?;
        assert_eq!(busy.output(), jobs.join("job_b").join("output"));
        assert_eq!(std::fs::read(jobs.join("job_b/output/r.txt"))?, b"result");
        assert!(jobs.join("job_b/work/scratch").exists());
        assert_eq!(busy.collect_artifacts()?.len(), 1);

        // The spare of an interrupted guest is never reused, even empty.
        let (mut stopped, _) = Sandbox::new(jobs.join("job_c")).prepare_with(&spares)?;
        let spare = stopped.output().parent().map(Path::to_path_buf);
        stopped.settle(&spares, false)?;
        assert_eq!(stopped.output(), jobs.join("job_c").join("output"));
        assert!(jobs.join("job_c/work").is_dir());
        assert_ne!(spares.pop(), spare);

        // A job that already has a directory (a retry) runs there, and what it left counts.
        let (retry, prepared) = Sandbox::new(jobs.join("job_b")).prepare_with(&spares)?;
        assert_eq!(retry.output(), jobs.join("job_b").join("output"));
        assert_eq!(prepared.output_used, 6);

        // A new process starts with an empty pool, without the old spares.
        std::fs::write(jobs.join(SPARES).join("left-over"), b"")?;
        Spares::new(&jobs)?;
        assert_eq!(std::fs::read_dir(jobs.join(SPARES))?.count(), 0);
        Ok(())
    }
}
