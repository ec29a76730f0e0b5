//! Workflows: a DAG of steps whose tasks are jobs, files flowing from a step to the
//! steps that need it, retries, cancel, concurrency and cron schedules read against a
//! clock the test sets.

use crate::*;
use jobhost_model::{Run, RunStatus, StartRun, Step, StepStatus, TaskStatus, WorkflowRequest};
use std::sync::{Arc, Mutex};

fn probe_step(name: &str, args: &[&str], needs: &[&str]) -> Step {
    Step {
        name: name.into(),
        plugin: "probe".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        needs: needs.iter().map(|n| n.to_string()).collect(),
        ..Step::default()
    }
}

fn workflow(name: &str, steps: Vec<Step>) -> WorkflowRequest {
    WorkflowRequest { name: name.into(), steps, ..WorkflowRequest::default() }
}

async fn start(t: &TestServer, name: &str) -> Run {
    let started = t.client.start_run(&StartRun { workflow: name.into(), ..StartRun::default() }).await.unwrap();
    assert!(started.created);
    started.run
}

/// Waits (up to a minute) for run `id` to end.
async fn finished(t: &TestServer, id: &str) -> Run {
    for _ in 0..600 {
        let run = t.client.run(id).await.unwrap();
        if run.status.is_terminal() {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not end: {:?}", t.client.run(id).await.unwrap());
}

fn at(t: Option<&str>) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(t.unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_dag_runs_in_order_and_files_flow_between_steps() {
    let t = TestServer::start_with(|c| c.concurrency = 16).await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let steps = vec![
        probe_step("c", &["gather"], &["b"]),
        probe_step("a", &["task-output"], &[]),
        Step { task_count: Some(50), cpus: Some(Cpus::from_millis(100)), ..probe_step("b", &["task-output"], &["a"]) },
    ];
    t.client.create_workflow(&workflow("fan", steps)).await.unwrap();
    let run = start(&t, "fan").await;
    assert_eq!((run.status, run.triggered_by.as_str()), (RunStatus::Running, "api"));
    let done = finished(&t, &run.id).await;
    assert_eq!(done.status, RunStatus::Success, "{:?}", done.error);
    let step = |name: &str| done.steps.iter().find(|s| s.name == name).unwrap();
    assert_eq!(done.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"], "in DAG order");
    let tasks: Vec<_> = done.steps.iter().flat_map(|s| &s.tasks).collect();
    assert_eq!(tasks.len(), 52);
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Success));
    assert!(done.steps.iter().all(|s| s.status == StepStatus::Success));
    // No b task before a ended; c after every b task.
    let a_end = at(step("a").tasks[0].completed_at.as_deref());
    let b = &step("b").tasks;
    assert_eq!(b.iter().map(|t| t.index).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    assert!(b.iter().all(|t| at(t.started_at.as_deref()) >= a_end));
    let b_end = b.iter().map(|t| at(t.completed_at.as_deref())).max().unwrap();
    assert!(at(step("c").tasks[0].started_at.as_deref()) >= b_end);
    // c read every b task's output under /input/b/<index>/.
    let gathered = t.stream_text(&step("c").tasks[0].job_id, LogStream::Stdout).await;
    let mut expected: Vec<String> = (0..50).map(|i| format!("b/{i}/task.txt=task {i} of 50")).collect();
    expected.sort();
    assert_eq!(gathered.lines().collect::<Vec<_>>(), expected);
    // A task knows its place: env and input.
    let b7 = t.client.get(&b[7].job_id).await.unwrap();
    assert_eq!((b7.env.get("TASK_INDEX"), b7.env.get("TASK_COUNT")), (Some(&"7".into()), Some(&"50".into())));
    let input = b7.input.unwrap();
    assert_eq!(
        (&input["task_index"], &input["task_count"], &input["params"]),
        (&7.into(), &50.into(), &serde_json::json!({}))
    );
    assert_eq!((b7.run_id.as_deref(), b7.step.as_deref(), b7.task_index), (Some(run.id.as_str()), Some("b"), Some(7)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_is_retried_and_a_failed_step_stops_its_run() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let flaky = |max_attempts| Step {
        max_attempts: Some(max_attempts),
        retry: Some(jobhost_model::RetryPolicy { backoff_s: 0, max_backoff_s: 0 }),
        ..probe_step("b", &["fail-until", "3"], &["a"])
    };
    let steps = |max| vec![probe_step("a", &["noop"], &[]), flaky(max), probe_step("c", &["noop"], &["b"])];
    t.client.create_workflow(&workflow("third-time", steps(3))).await.unwrap();
    let ok = finished(&t, &start(&t, "third-time").await.id).await;
    assert_eq!(ok.status, RunStatus::Success, "{:?}", ok.error);
    let b = &ok.steps[1].tasks[0];
    assert_eq!((b.status, b.attempt), (TaskStatus::Success, 3));
    assert_eq!(t.client.attempts(&b.job_id).await.unwrap().len(), 3);

    t.client.create_workflow(&workflow("twice", steps(2))).await.unwrap();
    let failed = finished(&t, &start(&t, "twice").await.id).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_contains(failed.error.as_deref().unwrap_or_default(), "step b task 0 failed");
    assert_eq!(failed.steps[1].tasks[0].attempt, 2);
    let c = &failed.steps[2];
    assert_eq!((c.status, c.tasks.len()), (StepStatus::Cancelled, 0), "c never started");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_stops_every_task() {
    let t = TestServer::start_with(|c| c.concurrency = 8).await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let wide = Step { task_count: Some(40), ..probe_step("wide", &["sleep", "30"], &[]) };
    t.client.create_workflow(&workflow("long", vec![wide])).await.unwrap();
    let run = start(&t, "long").await;
    eventually(20, || async {
        let run = t.client.run(&run.id).await.unwrap();
        run.steps[0].tasks.iter().filter(|t| t.status == TaskStatus::Running).count() >= 4
    })
    .await;
    let cancelled = t.client.cancel_run(&run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    eventually(2, || async {
        let run = t.client.run(&run.id).await.unwrap();
        run.steps[0].tasks.iter().all(|t| t.status == TaskStatus::Cancelled)
    })
    .await;
    let again = t.client.cancel_run(&run.id).await.unwrap_err();
    assert_eq!(again.kind(), Some("conflict"));
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_are_checked_runs_are_idempotent_and_concurrency_is_kept() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    for (steps, field) in [
        (vec![probe_step("a", &["noop"], &["x"])], "steps[0].needs"),
        (vec![probe_step("a", &["noop"], &["b"]), probe_step("b", &["noop"], &["a"])], "steps[0].needs"),
        (vec![probe_step("a", &["noop"], &[]), probe_step("a", &["noop"], &[])], "steps[1].name"),
    ] {
        let e = t.client.create_workflow(&workflow("bad", steps)).await.unwrap_err();
        assert_eq!((e.kind(), e.field()), (Some("invalid_params"), Some(field)), "{e}");
    }
    // A run's params must match the workflow's params_schema.
    let typed = WorkflowRequest {
        params_schema: Some(serde_json::json!({
            "type": "object",
            "properties": {"size": {"type": "integer"}},
            "required": ["size"]
        })),
        ..workflow("typed", vec![probe_step("a", &["noop"], &[])])
    };
    t.client.create_workflow(&typed).await.unwrap();
    let start_typed = |params| StartRun { workflow: "typed".into(), params: Some(params), ..StartRun::default() };
    let e = t.client.start_run(&start_typed(serde_json::json!({"size": "big"}))).await.unwrap_err();
    assert_eq!((e.kind(), e.field()), (Some("invalid_params"), Some("params")), "{e}");
    assert_contains(&e.to_string(), "/size");
    assert!(t.client.start_run(&start_typed(serde_json::json!({}))).await.is_err(), "size is required");
    let typed_run = t.client.start_run(&start_typed(serde_json::json!({"size": 3}))).await.unwrap().run;
    assert_eq!(finished(&t, &typed_run.id).await.status, RunStatus::Success);
    let not_a_schema = WorkflowRequest {
        params_schema: Some(serde_json::json!({"type": 12})),
        ..workflow("bad", vec![probe_step("a", &["noop"], &[])])
    };
    assert_eq!(t.client.create_workflow(&not_a_schema).await.unwrap_err().field(), Some("params_schema"));
    let bad_cron = WorkflowRequest {
        schedule: Some("every minute".into()),
        ..workflow("bad", vec![probe_step("a", &["noop"], &[])])
    };
    assert_eq!(t.client.create_workflow(&bad_cron).await.unwrap_err().field(), Some("schedule"));

    let one_at_a_time =
        WorkflowRequest { concurrency: Some(1), ..workflow("serial", vec![probe_step("s", &["sleep", "1"], &[])]) };
    t.client.create_workflow(&one_at_a_time).await.unwrap();
    let dup = t.client.create_workflow(&one_at_a_time).await.unwrap_err();
    assert_eq!(dup.kind(), Some("conflict"));
    let keyed = StartRun { workflow: "serial".into(), client_run_id: Some("k1".into()), ..StartRun::default() };
    let first = t.client.start_run(&keyed).await.unwrap();
    let same = t.client.start_run(&keyed).await.unwrap();
    assert_eq!((same.created, same.run.id.as_str()), (false, first.run.id.as_str()));
    let second = start(&t, "serial").await;
    assert_eq!(second.status, RunStatus::Pending, "the first holds the only slot");
    let (first, second) = (finished(&t, &first.run.id).await, finished(&t, &second.id).await);
    assert_eq!((first.status, second.status), (RunStatus::Success, RunStatus::Success));
    assert!(at(second.started_at.as_deref()) >= at(first.ended_at.as_deref()));
    assert_eq!(t.client.runs(Some("serial")).await.unwrap().len(), 2);
    let other = TestServer::start().await;
    assert_eq!(other.client.run(&first.id).await.unwrap_err().kind(), Some("not_found"));
}

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(Mutex<chrono::DateTime<chrono::Utc>>);

impl server::runs::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn set(&self, rfc3339: &str) {
        *self.0.lock().unwrap() = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_starts_one_run_per_tick_and_one_catch_up_run() {
    let clock = Arc::new(TestClock(Mutex::new(chrono::Utc::now())));
    clock.set("2031-03-01T10:00:30Z");
    let with_clock = |c: &mut ServerConfig| c.clock = clock.clone();
    let mut t = TestServer::start_with(with_clock).await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let every_minute = WorkflowRequest {
        schedule: Some("* * * * *".into()),
        ..workflow("cron", vec![probe_step("tick", &["noop"], &[])])
    };
    let created = t.client.create_workflow(&every_minute).await.unwrap();
    assert_eq!(created.next_run_at.as_deref(), Some("2031-03-01T10:01:00.000Z"));
    let ticks = |runs: Vec<Run>| {
        let mut ticks: Vec<String> = runs.into_iter().map(|r| r.tick.unwrap_or_default()).collect();
        ticks.sort();
        ticks
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(t.client.runs(Some("cron")).await.unwrap().is_empty(), "no tick has come");
    clock.set("2031-03-01T10:01:02Z");
    eventually(10, || async { t.client.runs(Some("cron")).await.unwrap().len() == 1 }).await;
    clock.set("2031-03-01T10:02:01Z");
    eventually(10, || async { t.client.runs(Some("cron")).await.unwrap().len() == 2 }).await;
    for run in t.client.runs(Some("cron")).await.unwrap() {
        assert_eq!(finished(&t, &run.id).await.status, RunStatus::Success);
    }
    // Down for five ticks: one catch-up run, for the latest.
    t.stop().await;
    clock.set("2031-03-01T10:07:30Z");
    t.restart_with(with_clock).await;
    eventually(10, || async { t.client.runs(Some("cron")).await.unwrap().len() == 3 }).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let runs = t.client.runs(Some("cron")).await.unwrap();
    assert!(runs.iter().all(|r| r.triggered_by == "schedule"));
    assert_eq!(ticks(runs), ["2031-03-01T10:01:00.000Z", "2031-03-01T10:02:00.000Z", "2031-03-01T10:07:00.000Z"]);
    for run in t.client.runs(Some("cron")).await.unwrap() {
        let run = finished(&t, &run.id).await;
        assert_eq!(run.status, RunStatus::Success, "{:?}", run.error);
    }
}
