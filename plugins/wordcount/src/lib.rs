//! `wordcount`: `wc` over every file of the job's input.
//!
//! Walks `/input` recursively (in path order, without following symlinks), counts the
//! lines (`\n` bytes), words (runs of non-whitespace bytes) and bytes of each regular
//! file, reports progress after each file and writes:
//!
//! - `/output/report.json`: `{"files":[{"path","lines","words","bytes"}],
//!   "total":{"files","lines","words","bytes"}}`, paths relative to `/input` with `/`;
//! - `/output/report.txt`: the same as a table.
//!
//! A missing or empty `/input` is not an error: the report then lists zero files.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use jobhost_sdk::{Context, Error, INPUT_DIR, Job, OUTPUT_DIR, log, progress};
use serde::Serialize;

/// Counts of one file, as they appear in `report.json`.
#[derive(Debug, Serialize)]
struct FileCounts {
    path: String,
    lines: u64,
    words: u64,
    bytes: u64,
}

/// Sums over all files.
#[derive(Debug, Default, Serialize)]
struct Total {
    files: u64,
    lines: u64,
    words: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    files: Vec<FileCounts>,
    total: Total,
}

fn wordcount(_job: Job) -> Result<(), Error> {
    let root = Path::new(INPUT_DIR);
    let mut paths = Vec::new();
    collect_files(root, &mut paths)?;
    // Sorting full paths (rather than each directory's entries) gives one global order:
    // `a/b` before `a/c/d` before `b`, whatever order the directories list in.
    paths.sort();

    let file_count = paths.len() as u64;
    let mut report = Report { files: Vec::with_capacity(paths.len()), total: Total::default() };
    for (done, path) in (1..).zip(&paths) {
        let relative = relative_display(root, path);
        let counts = count_file(path, relative.clone())?;
        report.total.files += 1;
        report.total.lines += counts.lines;
        report.total.words += counts.words;
        report.total.bytes += counts.bytes;
        report.files.push(counts);
        progress(done, Some(file_count), Some(&relative));
    }
    if paths.is_empty() {
        progress(0, Some(0), Some("no input files"));
    }

    let out = Path::new(OUTPUT_DIR);
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    std::fs::write(out.join("report.json"), json).context("writing /output/report.json")?;
    std::fs::write(out.join("report.txt"), text_table(&report)?).context("writing /output/report.txt")?;

    let t = &report.total;
    log::info(format!("counted {} files: {} lines, {} words, {} bytes", t.files, t.lines, t.words, t.bytes));
    Ok(())
}

jobhost_sdk::export_job!(wordcount);

/// Appends every regular file under `dir` to `out`. A missing `dir` has no files.
/// Symlinks are skipped, not followed: a link cycle must not hang the job.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.context(format!("listing {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type().context(format!("reading the type of {}", path.display()))?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `root`, with `/` separators (as in the report).
fn relative_display(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Counts one file.
fn count_file(path: &Path, display: String) -> Result<FileCounts, Error> {
    let file = File::open(path).context(format!("opening {}", path.display()))?;
    count(file, display).context(format!("reading {}", path.display()))
}

/// Counts what `reader` yields, streaming it in 64 KiB chunks so its size does not matter.
fn count(mut reader: impl Read, path: String) -> io::Result<FileCounts> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut counts = FileCounts { path, lines: 0, words: 0, bytes: 0 };
    // Carried across chunks so a word split by a chunk boundary counts once.
    let mut in_word = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        counts.bytes += n as u64;
        for &b in &buf[..n] {
            if b == b'\n' {
                counts.lines += 1;
            }
            if is_space(b) {
                in_word = false;
            } else if !in_word {
                in_word = true;
                counts.words += 1;
            }
        }
    }
    Ok(counts)
}

/// Whitespace as `wc` sees it in the C locale (which includes vertical tab, unlike
/// `u8::is_ascii_whitespace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The report as a right-aligned table with a total row, e.g.
///
/// ```text
/// lines  words  bytes  path
///     2      5     27  a.txt
///     2      5     27  total (1 file)
/// ```
fn text_table(report: &Report) -> Result<String, Error> {
    let t = &report.total;
    let width = |header: &str, max: u64| header.len().max(max.to_string().len());
    // Totals are the largest numbers of each column, so they fix the widths.
    let (wl, ww, wb) = (width("lines", t.lines), width("words", t.words), width("bytes", t.bytes));

    let mut s = String::new();
    writeln!(s, "{:>wl$}  {:>ww$}  {:>wb$}  path", "lines", "words", "bytes")?;
    for f in &report.files {
        writeln!(s, "{:>wl$}  {:>ww$}  {:>wb$}  {}", f.lines, f.words, f.bytes, f.path)?;
    }
    let plural = if t.files == 1 { "" } else { "s" };
    writeln!(s, "{:>wl$}  {:>ww$}  {:>wb$}  total ({} file{plural})", t.lines, t.words, t.bytes, t.files)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields one byte per read, so every byte is a chunk boundary.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn counted(data: &[u8]) -> io::Result<(u64, u64, u64)> {
        let c = count(Trickle(data), String::new())?;
        Ok((c.lines, c.words, c.bytes))
    }

    #[test]
    fn counts_like_wc() -> io::Result<()> {
        assert_eq!(counted(b"")?, (0, 0, 0));
        assert_eq!(counted(b"one two\nthree\n")?, (2, 3, 14));
        // No trailing newline: the last line is not counted, its word is.
        assert_eq!(counted(b"  a\tb\x0bc  \r\nd")?, (1, 4, 12));
        Ok(())
    }

    #[test]
    fn table_has_a_total_row() -> Result<(), Error> {
        let report = Report {
            files: vec![FileCounts { path: "a.txt".into(), lines: 2, words: 3, bytes: 14 }],
            total: Total { files: 1, lines: 2, words: 3, bytes: 14 },
        };
        let table = text_table(&report)?;
        assert_eq!(
            table,
            "lines  words  bytes  path\n    2      3     14  a.txt\n    2      3     14  total (1 file)\n"
        );
        Ok(())
    }
}
