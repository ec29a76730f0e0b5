//! The suite's tests of retries (a held job, every attempt kept) and of workflows and
//! their runs.

use super::*;

pub async fn a_retry_holds_the_job_and_every_attempt_is_kept(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (job, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload");
    assert!(store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.is_some());
    let until = "2099-01-01T00:00:00.000Z";
    let failed = Finish {
        status: JobStatus::Failed,
        retry_at: Some(until.into()),
        exit_code: Some(1),
        error: Some("boom".into()),
        detail: None,
    };
    let moved = store.finish(&job.id, 1, &failed, &[]).await?.expect("the current attempt");
    assert_eq!((moved.status, moved.run_at.as_deref(), moved.completed_at), (JobStatus::Pending, Some(until), None));
    assert!(store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.is_none(), "held until its time");
    assert_eq!(store.next_held().await?.as_deref(), Some(until));
    assert_eq!(store.release_held("2098-12-31T23:59:59.999Z").await?, 0);
    assert_eq!(store.release_held(until).await?, 1);
    assert_eq!(store.next_held().await?, None);
    let again = store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.expect("released");
    assert_eq!((again.id.as_str(), again.attempt, again.run_at), (job.id.as_str(), 2, None));
    store.cancel(&job.id, "stopped").await?;
    let kept = |a: &[jobhost_model::JobAttempt]| {
        a.iter().map(|a| (a.attempt, a.status.clone(), a.exit_code, a.error.clone())).collect::<Vec<_>>()
    };
    assert_eq!(
        kept(&store.attempts(&job.id).await?),
        [(1, "failed".into(), Some(1), Some("boom".into())), (2, "cancelled".into(), None, Some("stopped".into()))]
    );
    // A run its node lost is an attempt too.
    let (lost, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload");
    assert!(store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.is_some());
    store.recover_orphans(NODE, "host stopped").await?;
    assert_eq!(kept(&store.attempts(&lost.id).await?), [(1, "lost".into(), None, None)]);
    Ok(())
}

pub async fn workflows_and_runs_keep_their_keys_and_their_concurrency(fx: &Fixture) -> Result<()> {
    use jobhost_model::{RunStatus, Step, Workflow};
    let (store, user) = seeded(fx).await;
    let now = ids::now();
    let workflow = Workflow {
        id: ids::new(ids::WORKFLOW),
        name: "flow".into(),
        user_id: user.clone(),
        description: None,
        steps: vec![Step { name: "s".into(), plugin: "p".into(), ..Step::default() }],
        schedule: Some("* * * * *".into()),
        concurrency: Some(1),
        params_schema: None,
        created_at: now.clone(),
        updated_at: now.clone(),
        next_run_at: Some("2030-01-01T00:01:00.000Z".into()),
    };
    assert!(store.insert_workflow(&workflow).await?);
    let twin = Workflow { id: ids::new(ids::WORKFLOW), ..workflow.clone() };
    assert!(!store.insert_workflow(&twin).await?, "one name per user");
    assert_eq!(store.find_workflow(&user, "flow").await?.as_ref(), Some(&workflow));
    assert_eq!(store.due_workflows("2030-01-01T00:00:59.999Z").await?.len(), 0);
    assert_eq!(store.due_workflows("2030-01-01T00:01:00.000Z").await?.len(), 1);
    let run = |key: Option<&str>, tick: Option<&str>| crate::NewRun {
        id: ids::new(ids::RUN),
        workflow: workflow.clone(),
        status: RunStatus::Pending,
        params: serde_json::json!({"n": 1}),
        triggered_by: "api".into(),
        client_run_id: key.map(str::to_owned),
        tick: tick.map(str::to_owned),
    };
    let first = store.insert_run(&run(Some("k"), None)).await?.expect("a new key");
    assert!(store.insert_run(&run(Some("k"), None)).await?.is_none(), "the key names a run");
    assert_eq!(store.find_run(&user, "k").await?.map(|r| r.id), Some(first.id.clone()));
    let tick = "2030-01-01T00:01:00.000Z";
    let ticked = store.insert_run(&run(None, Some(tick))).await?.expect("a new tick");
    assert!(store.insert_run(&run(None, Some(tick))).await?.is_none(), "one run per tick");
    // Concurrency 1: the second waits until the first has ended.
    assert!(store.start_run(&first.id, &workflow.id, Some(1), &ids::now()).await?);
    assert!(!store.start_run(&ticked.id, &workflow.id, Some(1), &ids::now()).await?);
    assert!(store.move_run(&first.id, &[RunStatus::Pending], RunStatus::Failed, None, &ids::now()).await?.is_none());
    let ended = store.move_run(&first.id, &[RunStatus::Running], RunStatus::Success, None, &ids::now()).await?;
    assert!(ended.is_some_and(|r| r.status == RunStatus::Success && r.ended_at.is_some()));
    assert!(store.start_run(&ticked.id, &workflow.id, Some(1), &ids::now()).await?);
    assert_eq!(store.live_runs().await?, std::slice::from_ref(&ticked.id));
    // Its tasks are the jobs that name it.
    let task = NewJob { task: Some((ticked.id.clone(), "s".into(), 0)), ..new_job(&user, None, 0) };
    store.insert_job(&task).await?.expect("no upload");
    let tasks = store.run_tasks(&ticked.id).await?;
    assert_eq!(
        tasks.iter().map(|t| (t.step.as_str(), t.index, t.status)).collect::<Vec<_>>(),
        [("s", 0, JobStatus::Pending)]
    );
    let (got, steps) = store.get_run(&ticked.id).await?.expect("recorded");
    assert_eq!((got.params, got.tick.as_deref(), steps.len()), (serde_json::json!({"n": 1}), Some(tick), 1));
    Ok(())
}
