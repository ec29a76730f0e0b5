//! The tools: one input type and one output type each (their JSON Schemas are the
//! tool's `inputSchema` and `outputSchema`), and the calls that implement them, all
//! through [`Client`].

use base64::Engine as _;
use jobhost_client::{self as client, Client};
use jobhost_model::SubmitRequest;
use jobhost_model::{Artifact, Job, JobStatus, LogStream, Progress};
use jobhost_model::{ArtifactData, PluginList};
use jobhost_model::{LogPage, Submitted};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Bytes of stdout (and of stderr) that `run_job` returns: the end of the output,
/// which is where a failure's explanation usually is. An agent's context is small.
pub const TAIL_BYTES: usize = 8 << 10;
/// `read_artifact` without `length`.
pub const DEFAULT_ARTIFACT_READ: u64 = 64 << 10;
/// The most `read_artifact` returns in one call.
pub const MAX_ARTIFACT_READ: u64 = 1 << 20;
/// Log chunks asked for per `jobs.logs` page while collecting a tail.
const LOG_PAGE: u32 = 1000;

/// A tool call that did not work, as the agent will read it (an `isError` result).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// Turns a failed call of `method` into a message an agent can act on.
pub fn call_error(client: &Client, method: &str, e: client::Error) -> ToolError {
    match e {
        // JSON-RPC "method not found": an older server, or a feature not built in.
        client::Error::Rpc { code: -32601, .. } => ToolError(format!(
            "the jobhost server at {} does not offer `{method}`: this feature is not available on it",
            client.url()
        )),
        client::Error::Rpc { message, kind, .. } => ToolError(format!("{method} failed: {message} ({kind})")),
        client::Error::Transport(t) => {
            ToolError(format!("cannot reach the jobhost server at {} ({method}): {t}", client.url()))
        }
    }
}

/// What every tool returns: JSON for `structuredContent`, and a text rendering.
pub trait ToolOutput: Serialize + JsonSchema {
    /// The text content block (by default the JSON itself).
    fn text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `run_job` and `submit_job` input: the API's own `jobs.submit` request, so the tools
/// take every field a client can set (cpus, labels, priority, idempotency key, …) and
/// never drift from it.
pub type JobInput = SubmitRequest;

/// `run_job` output.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunJobOutput {
    /// The job's id.
    pub job_id: String,
    /// How it ended: completed, failed, timed_out or cancelled.
    pub status: JobStatus,
    /// Exit code of a command component (0 for a plugin that succeeded).
    pub exit_code: Option<i32>,
    /// Why it failed, timed out or was cancelled.
    pub error: Option<String>,
    /// The end of its stdout (at most 8 KiB).
    pub stdout_tail: String,
    /// The end of its stderr, log lines and host notes (at most 8 KiB).
    pub stderr_tail: String,
    /// Whether stdout had more than `stdout_tail` shows.
    pub stdout_truncated: bool,
    /// Whether stderr had more than `stderr_tail` shows.
    pub stderr_truncated: bool,
    /// Files the job left in `/output` (read them with `read_artifact`).
    pub artifacts: Vec<Artifact>,
    /// Its last reported progress.
    pub progress: Option<Progress>,
}

impl ToolOutput for RunJobOutput {
    fn text(&self) -> String {
        let mut t = format!("job {} {}", self.job_id, self.status);
        if let Some(code) = self.exit_code {
            t.push_str(&format!(", exit code {code}"));
        }
        if let Some(e) = &self.error {
            t.push_str(&format!("\nerror: {e}"));
        }
        t.push('\n');
        for (name, tail, cut) in
            [("stdout", &self.stdout_tail, self.stdout_truncated), ("stderr", &self.stderr_tail, self.stderr_truncated)]
        {
            if !tail.is_empty() {
                let what = if cut { format!("{name} (last {} bytes)", tail.len()) } else { name.to_owned() };
                t.push_str(&format!("--- {what} ---\n{tail}"));
                if !tail.ends_with('\n') {
                    t.push('\n');
                }
            }
        }
        if self.artifacts.is_empty() {
            t.push_str("no artifacts");
        } else {
            t.push_str("artifacts:");
            for a in &self.artifacts {
                t.push_str(&format!("\n  {} ({} bytes)", a.name, a.size_bytes));
            }
        }
        t
    }
}

impl ToolOutput for Submitted {}
impl ToolOutput for Job {}
impl ToolOutput for LogPage {}
impl ToolOutput for PluginList {}
impl ToolOutput for jobhost_model::StartedRun {}
impl ToolOutput for jobhost_model::Run {}

/// `workflow_status` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIdInput {
    /// The run's id (`run_…`).
    pub run_id: String,
}

/// Input of tools about one job.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIdInput {
    /// The job's id (`job_…`).
    pub job_id: String,
}

/// `job_logs` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobLogsInput {
    /// The job's id.
    pub job_id: String,
    /// First chunk to return (inclusive); pass the previous page's `next_seq`.
    #[serde(default)]
    pub since_seq: Option<u64>,
    /// Chunks per page, 1–1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// No input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// How `content` is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Text, stored as UTF-8.
    #[default]
    Utf8,
    /// Binary, base64 (standard alphabet).
    Base64,
}

/// `upload_file` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadFileInput {
    /// Where the file appears under the job's `/input` (relative, `/`-separated).
    pub path: String,
    /// The file's content.
    pub content: String,
    /// How `content` is written (default utf8).
    #[serde(default)]
    pub encoding: Encoding,
    /// Add the file to this open upload (from an earlier call with `finalize: false`)
    /// instead of starting a new one.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Seal the upload so jobs can use it as `files_id` (default true); pass false to
    /// add more files with further calls.
    #[serde(default)]
    pub finalize: Option<bool>,
}

/// `upload_file` output.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UploadFileOutput {
    /// The upload's id: pass it as `files_id` to `run_job` once finalized.
    pub files_id: String,
    /// The file's path in the upload.
    pub path: String,
    /// Bytes written.
    pub size_bytes: u64,
    /// Whether the upload is finalized (usable by jobs, closed to more files).
    pub finalized: bool,
    /// Files in the upload, once finalized.
    pub file_count: Option<u64>,
}

impl ToolOutput for UploadFileOutput {}

/// `read_artifact` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArtifactInput {
    /// The job's id.
    pub job_id: String,
    /// The artifact's name (its path under `/output`).
    pub name: String,
    /// First byte to read (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Most bytes to read, 1 B–1 MiB (default 64 KiB).
    #[serde(default)]
    pub length: Option<u64>,
}

/// `read_artifact` output.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReadArtifactOutput {
    /// The artifact's name.
    pub name: String,
    /// Where this piece starts.
    pub offset: u64,
    /// The bytes read: text when they are UTF-8, else base64.
    pub content: String,
    /// How `content` is written.
    pub encoding: Encoding,
    /// Bytes read.
    pub size_bytes: u64,
    /// Whether this piece reaches the end of the artifact; if not, read on from
    /// `offset + size_bytes`.
    pub eof: bool,
}

impl ToolOutput for ReadArtifactOutput {
    fn text(&self) -> String {
        match self.encoding {
            Encoding::Utf8 if self.eof && self.offset == 0 => self.content.clone(),
            _ => serde_json::to_string_pretty(self).unwrap_or_default(),
        }
    }
}

/// `pull_model` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullModelInput {
    /// Model repository, `org/name`.
    pub model: String,
    /// Branch, tag or commit (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
}

/// Collects the ends of a job's stdout and stderr.
pub async fn tails(client: &Client, id: &str) -> Result<(Tail, Tail), ToolError> {
    let (mut out, mut err) = (Tail::default(), Tail::default());
    let mut next = 0;
    loop {
        let page = client.logs(id, next, Some(LOG_PAGE)).await.map_err(|e| call_error(client, "jobs.logs", e))?;
        for chunk in &page.chunks {
            match chunk.stream {
                LogStream::Stdout => out.push(&chunk.data),
                LogStream::Stderr | LogStream::Log | LogStream::System => err.push(&chunk.data),
            }
        }
        if page.chunks.is_empty() || page.eof {
            return Ok((out, err));
        }
        next = page.next_seq;
    }
}

/// The last [`TAIL_BYTES`] of a stream.
#[derive(Debug, Default)]
pub struct Tail {
    /// The kept text.
    pub text: String,
    /// Whether earlier text was dropped.
    pub truncated: bool,
}

impl Tail {
    fn push(&mut self, data: &str) {
        self.text.push_str(data);
        if self.text.len() > TAIL_BYTES * 2 {
            self.cut();
        }
    }

    /// Keeps the last [`TAIL_BYTES`] (on a character boundary).
    pub fn finish(mut self) -> Tail {
        self.cut();
        self
    }

    fn cut(&mut self) {
        if self.text.len() <= TAIL_BYTES {
            return;
        }
        let mut start = self.text.len() - TAIL_BYTES;
        while !self.text.is_char_boundary(start) {
            start += 1;
        }
        self.text.drain(..start);
        self.truncated = true;
    }
}

/// `upload_file`, through the `uploads.*` methods.
pub async fn upload_file(client: &Client, input: UploadFileInput) -> Result<UploadFileOutput, ToolError> {
    let bytes = match input.encoding {
        Encoding::Utf8 => input.content.into_bytes(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(input.content.trim())
            .map_err(|e| ToolError(format!("content is not valid base64: {e}")))?,
    };
    let id = match input.upload_id {
        Some(id) => id,
        None => {
            let created: Value =
                client.call("uploads.create", json!({})).await.map_err(|e| call_error(client, "uploads.create", e))?;
            created["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ToolError(format!("uploads.create answered without an id: {created}")))?
        }
    };
    let size_bytes = bytes.len() as u64;
    let data_base64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let _: Value = client
        .call("uploads.put", json!({ "id": id, "path": input.path, "data_base64": data_base64 }))
        .await
        .map_err(|e| call_error(client, "uploads.put", e))?;
    let (finalized, file_count) = if input.finalize.unwrap_or(true) {
        let done: Value = client
            .call("uploads.finalize", json!({ "id": id }))
            .await
            .map_err(|e| call_error(client, "uploads.finalize", e))?;
        (true, done["file_count"].as_u64())
    } else {
        (false, None)
    };
    Ok(UploadFileOutput { files_id: id, path: input.path, size_bytes, finalized, file_count })
}

/// `read_artifact`, one `artifacts.read` range.
pub async fn read_artifact(client: &Client, input: ReadArtifactInput) -> Result<ReadArtifactOutput, ToolError> {
    let length = input.length.unwrap_or(DEFAULT_ARTIFACT_READ);
    if length == 0 || length > MAX_ARTIFACT_READ {
        return Err(ToolError(format!("length must be between 1 and {MAX_ARTIFACT_READ}")));
    }
    let offset = input.offset.unwrap_or(0);
    let page: ArtifactData = client
        .call(
            "artifacts.read",
            json!({ "job_id": input.job_id, "name": input.name, "offset": offset, "length": length }),
        )
        .await
        .map_err(|e| call_error(client, "artifacts.read", e))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(page.data_base64)
        .map_err(|e| ToolError(format!("artifacts.read sent invalid base64: {e}")))?;
    let (content, encoding, size_bytes) = as_content(bytes, page.eof);
    Ok(ReadArtifactOutput { name: input.name, offset, content, encoding, size_bytes, eof: page.eof })
}

/// Bytes as text when they are UTF-8, else base64, with how many bytes it holds. A
/// range that is not the end may stop inside a character: it is cut back to whole
/// characters, and the caller reads on from where they end.
fn as_content(mut bytes: Vec<u8>, eof: bool) -> (String, Encoding, u64) {
    if let Err(e) = std::str::from_utf8(&bytes)
        && e.error_len().is_none()
        && !eof
        && e.valid_up_to() > 0
    {
        bytes.truncate(e.valid_up_to());
    }
    let size = bytes.len() as u64;
    match String::from_utf8(bytes) {
        Ok(text) => (text, Encoding::Utf8, size),
        Err(e) => (base64::engine::general_purpose::STANDARD.encode(e.into_bytes()), Encoding::Base64, size),
    }
}

/// Parses a tool's arguments into its input type.
pub fn parse_input<I: DeserializeOwned>(args: Option<serde_json::Map<String, Value>>) -> Result<I, ToolError> {
    serde_json::from_value(Value::Object(args.unwrap_or_default()))
        .map_err(|e| ToolError(format!("invalid arguments: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_end_on_a_character_boundary() {
        let mut t = Tail::default();
        t.push("start\n");
        for _ in 0..5000 {
            t.push("é-");
        }
        t.push("the end\n");
        let t = t.finish();
        assert!(t.truncated);
        assert!(t.text.len() <= TAIL_BYTES);
        assert!(t.text.ends_with("the end\n"));
        assert!(!t.text.contains("start"));
    }

    #[test]
    fn a_short_output_is_kept_whole() {
        let mut t = Tail::default();
        t.push("one\n");
        t.push("two\n");
        let t = t.finish();
        assert_eq!((t.text.as_str(), t.truncated), ("one\ntwo\n", false));
    }

    #[test]
    fn artifact_bytes_are_text_when_they_can_be_and_whole_characters() {
        assert_eq!(as_content(b"hi\n".to_vec(), true), ("hi\n".into(), Encoding::Utf8, 3));
        // "é" is two bytes; a range ending after its first is cut before it.
        assert_eq!(as_content(vec![b'a', 0xC3], false), ("a".into(), Encoding::Utf8, 1));
        // At the end, or when the bytes are not text at all, they travel as base64.
        assert_eq!(as_content(vec![b'a', 0xC3], true), ("YcM=".into(), Encoding::Base64, 2));
        assert_eq!(as_content(vec![0xFF, 0x00], false), ("/wA=".into(), Encoding::Base64, 2));
    }

    #[test]
    fn a_missing_method_reads_as_a_missing_feature() {
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let e = client::Error::Rpc {
            code: -32601,
            message: "Method not found".into(),
            kind: "unknown".into(),
            field: None,
        };
        let msg = call_error(&client, "uploads.create", e).to_string();
        assert!(msg.contains("does not offer `uploads.create`"), "{msg}");
    }

    #[test]
    fn arguments_are_checked_against_the_input_type() {
        let args = json!({ "plugin": "probe", "argz": [] });
        let e = parse_input::<JobInput>(args.as_object().cloned()).unwrap_err().to_string();
        assert!(e.contains("argz"), "{e}");
        let ok = parse_input::<JobInput>(json!({ "plugin": "probe" }).as_object().cloned()).unwrap();
        assert!(ok.args.is_empty());
    }
}
