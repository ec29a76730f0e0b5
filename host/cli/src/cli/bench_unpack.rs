//! `jobhost bench --unpack-files N`: one tar archive of N small files (100 bytes each,
//! 100 to a directory) sent to an upload of a fresh in-process server, as `jobhost
//! upload DIR` sends a tree: the time from the start of the `PUT
//! /uploads/<id>/archive` to its answer, which comes once every file is checked,
//! written, moved into the upload and on disk (see `BENCHMARKS.md`).

use super::bench::{self, BenchArgs};
use anyhow::{Context as _, ensure};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Instant;

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    files: u64,
    archive_bytes: usize,
    unpack_s: f64,
    files_per_s: f64,
}

/// Sends the archive and prints the report.
pub(super) async fn exec(args: &BenchArgs, files: u64) -> anyhow::Result<ExitCode> {
    ensure!(files > 0, "--unpack-files must be at least 1");
    let archive = archive(files).context("building the archive")?;
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let server = bench::start(&tmp.path().join("data"), |c| {
        c.uploads.max_files = c.uploads.max_files.max(files);
    })
    .await?;
    let client = bench::client_of(&server)?;
    let upload = client.create_upload().await?;
    let archive_bytes = archive.len();
    let t0 = Instant::now();
    client.put_archive(&upload.id, archive).await?;
    let unpack_s = t0.elapsed().as_secs_f64();
    let sealed = client.finalize_upload(&upload.id).await?;
    ensure!(sealed.file_count == files, "the upload holds {} files, not {files}", sealed.file_count);
    server.stop().await;
    let report = Report { files, archive_bytes, unpack_s, files_per_s: files as f64 / unpack_s };
    println!("archive of {files} files ({archive_bytes} bytes), sent and unpacked   {:.2} s", report.unpack_s);
    println!("files per second                                            {:.0}", report.files_per_s);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// A tar of `files` files of 100 bytes, `dNNN/fNNNNN.txt`.
fn archive(files: u64) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let body = [b'x'; 100];
    for i in 0..files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("d{:03}/f{i:05}.txt", i / 100), &body[..])?;
    }
    tar.into_inner()
}
