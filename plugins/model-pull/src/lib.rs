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
//!
//! # Layout
//!
//! - [`hub`]: the hub's API (revision, paged tree), its errors, and the checks on every
//!   name it sends before it reaches a URL or a path.
//! - [`select`]: which files are pulled (`allow_patterns`, `quantize`) and their blobs.
//! - [`download`]: one file into its blob, resumed, verified, with progress.
//! - [`cache`]: the Hugging Face cache layout under `/models`.
//! - [`http`], [`transfer`]: the HTTP client over `wasi:http`, and the host's transfers.

mod cache;
mod download;
mod http;
mod hub;
mod select;
mod transfer;

use download::Meter;
use http::Url;
use hub::{MAX_API_BYTES, RevisionInfo};
use jobhost_sdk::{Error, Job, log};
use serde::Deserialize;

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

fn pull(job: Job) -> Result<(), Error> {
    let input: Input = job.input()?;
    let revision = input.revision.clone().unwrap_or_else(|| "main".to_owned());
    hub::check_model(&input.model)?;
    let endpoint = Url::parse(input.endpoint.trim_end_matches('/')).map_err(Error::new)?;
    let base = endpoint.path.trim_end_matches('/').to_owned();
    let at = |path: String| Url { path: format!("{base}{path}"), ..endpoint.clone() };
    if input.init.is_some() && !input.executor {
        log::info("init recorded; no inference executor is configured on this server, so the model is only downloaded");
    }

    // 1. The revision's commit.
    let rev_url = at(format!("/api/models/{}/revision/{}", input.model, hub::encode(&revision, false)));
    let mut answer =
        http::get(&rev_url, &[("accept", "application/json".into())]).map_err(|e| hub::hub_error(&endpoint, e))?;
    if answer.status != 200 {
        return Err(hub::not_found_or_status(&input.model, &revision, &mut answer));
    }
    let info: RevisionInfo = serde_json::from_str(&answer.text(MAX_API_BYTES).map_err(Error::new)?)
        .map_err(|e| Error::new(format!("the hub's revision info for {} is not understood: {e}", input.model)))?;
    drop(answer);
    let commit = info.sha;
    hub::check_segment(&commit, "commit")?;
    log::info(format!("{} {revision} is commit {commit}", input.model));

    // 2. The file tree.
    let entries =
        hub::list_tree(&at(format!("/api/models/{}/tree/{commit}?recursive=true", input.model)), &input, &revision)?;
    let files = select::select(entries, &input)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    log::info(format!("{} files, {total} bytes selected", files.len()));

    // 3. The cache layout.
    let repo_dir = cache::create_repo(&input.model)?;
    let mut meter = Meter::new(total);
    for f in &files {
        meter.done += cache::on_disk(&repo_dir, f);
    }
    meter.report(true, None);

    let mut fetched = 0u64;
    for f in &files {
        let url = at(format!("/{}/resolve/{commit}/{}", input.model, hub::encode(&f.path, true)));
        fetched += download::fetch(&url, &repo_dir, f, &commit, &mut meter)
            .map_err(|e| download::hub_error_for(&endpoint, e))?;
        cache::link(&repo_dir, &commit, f)?;
    }
    if revision != commit {
        cache::write_ref(&repo_dir, &revision, &commit)?;
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
