//! The progress bar `logs -f`, `wait` and `run` draw on stderr for a job that reports
//! progress: only when stderr is a terminal and never with `--json`, so scripts and
//! pipes see exactly the output they did before.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobhost_model::Job;
use std::io::IsTerminal;
use std::time::Duration;

/// How often a command showing a progress bar looks at the job's progress.
pub const PROGRESS_LOOK: Duration = Duration::from_millis(250);

/// A bar that appears once the job first reports progress.
#[derive(Debug)]
pub struct ProgressView {
    /// Where a bar would draw; `None` when bars are off.
    target: Option<fn() -> ProgressDrawTarget>,
    bar: Option<ProgressBar>,
}

impl ProgressView {
    /// Bars on stderr when it is a terminal and `json` is off; otherwise a no-op.
    pub fn for_terminal(json: bool) -> ProgressView {
        let on = !json && std::io::stderr().is_terminal();
        ProgressView { target: on.then_some(ProgressDrawTarget::stderr as fn() -> ProgressDrawTarget), bar: None }
    }

    /// A view drawing to `target` (tests use a hidden one).
    #[cfg(test)]
    pub fn with_target(target: fn() -> ProgressDrawTarget) -> ProgressView {
        ProgressView { target: Some(target), bar: None }
    }

    /// Shows `job`'s latest progress (nothing until it has reported some).
    pub fn update(&mut self, job: &Job) {
        let (Some(target), Some(p)) = (self.target, &job.progress) else { return };
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(p.total, target());
            let style = match p.total {
                Some(_) => ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"),
                None => ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} {msg}"),
            };
            if let Ok(style) = style {
                bar.set_style(style);
            }
            bar
        });
        let message = p.message.clone().unwrap_or_default();
        if bar.position() == p.done && bar.length() == p.total.or(bar.length()) && bar.message() == message {
            return;
        }
        bar.set_message(message);
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
        // Each setter may draw, and the draw rate limit can drop the last of them: draw
        // the finished state so count and message never disagree on screen.
        bar.force_draw();
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Whether the view draws at all (so callers can skip fetching progress).
    pub fn is_on(&self) -> bool {
        self.target.is_some()
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// The bar, once shown.
    #[cfg(test)]
    pub fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_model::{JobStatus, Progress};

    fn job(progress: Option<Progress>) -> Job {
        Job {
            id: "job_1".into(),
            user_id: "admin".into(),
            kind: jobhost_model::JobKind::Wasm,
            plugin: "p".into(),
            plugin_digest: "sha256:0".into(),
            status: JobStatus::Running,
            args: vec![],
            env: Default::default(),
            input: None,
            files_id: None,
            detail: None,
            labels: Default::default(),
            priority: 0,
            cpus: jobhost_model::Cpus::ONE,
            memory_mb: 256,
            timeout_s: 600,
            client_job_id: None,
            attempt: 1,
            max_attempts: 1,
            exit_code: None,
            error: None,
            progress,
            created_at: "2026-01-01T00:00:00Z".into(),
            started_at: None,
            completed_at: None,
            requires: vec![],
            worker_id: None,
            container: None,
            container_id: None,
            gpus: 0,
            gpu_type: None,
            gpu_devices: vec![],
            grants: vec![],
            run_at: None,
            retry: Default::default(),
            run_id: None,
            step: None,
            task_index: None,
            waiting: None,
        }
    }

    #[test]
    fn the_bar_follows_reported_progress_and_only_appears_with_it() {
        let mut view = ProgressView::with_target(ProgressDrawTarget::hidden);
        view.update(&job(None));
        assert!(view.bar().is_none(), "no bar before the job reports progress");
        view.update(&job(Some(Progress { done: 3, total: Some(10), message: Some("step 3".into()) })));
        let bar = view.bar().unwrap();
        assert_eq!((bar.position(), bar.length(), bar.message()), (3, Some(10), "step 3".to_owned()));
        view.update(&job(Some(Progress { done: 7, total: Some(20), message: None })));
        let bar = view.bar().unwrap();
        assert_eq!((bar.position(), bar.length()), (7, Some(20)));
        view.finish();
        assert!(view.bar().is_none());
    }

    #[test]
    fn json_mode_never_draws() {
        let mut view = ProgressView::for_terminal(true);
        view.update(&job(Some(Progress { done: 1, total: Some(2), message: None })));
        assert!(!view.is_on());
        assert!(view.bar().is_none());
    }
}
