//! The dashboard at `/ui/`: its files served without a token under a strict policy;
//! the API it relies on (`jobs.list` by plugin and label, `jobs.stats`,
//! `uploads.list`, WebSocket tickets); and the page itself, driven in headless
//! Chromium by `tests/browser/dashboard.py` (Selenium): sign in, a job appearing and
//! completing live, its log, an artifact downloaded byte for byte, a cancel, and a
//! second user who sees none of it.

use crate::*;
use jobhost_model::{JobStats, Scope, Ticket, UploadPage};
use serde_json::{Value, json};

fn labelled(plugin: &str, args: &[&str], labels: &[(&str, &str)]) -> SubmitRequest {
    SubmitRequest {
        plugin: plugin.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..SubmitRequest::default()
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_served_without_a_token_under_a_strict_policy() {
    let t = TestServer::start().await;
    let addr = t.server().local_addr;
    let (status, head, body) = http_get(addr, "/ui/", None).await;
    assert_eq!(status, 200, "{head}");
    assert_contains(&head.to_ascii_lowercase(), "content-security-policy: default-src 'self'; script-src 'self'");
    assert_contains(&body, "app.js");
    let (status, head, _) = http_get(addr, "/ui", None).await;
    assert_eq!(status, 308);
    assert_contains(&head.to_ascii_lowercase(), "location: /ui/");
    let (status, head, _) = http_get(addr, "/ui/api.js", None).await;
    assert_eq!(status, 200);
    assert_contains(&head.to_ascii_lowercase(), "content-type: text/javascript");
    assert_eq!(http_get(addr, "/ui/nothing.js", None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_listed_by_plugin_and_label() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    t.install("hello", jobhost_tests::HELLO_WASM).await;
    let client = &t.client;
    let submit = |req: SubmitRequest| async move { client.submit(&req).await.unwrap().job.id };
    let a = submit(labelled("probe", &["noop"], &[("team", "red"), ("tier", "1")])).await;
    let b = submit(labelled("probe", &["noop"], &[("team", "blue")])).await;
    let c = submit(labelled("hello", &[], &[("team", "red")])).await;
    let list = |params: Value| async move { ids(&client.call::<Value>("jobs.list", params).await.unwrap()) };
    assert_eq!(list(json!({"plugin": "probe"})).await, vec![b.clone(), a.clone()]);
    assert_eq!(list(json!({"label": "team=red"})).await, vec![c.clone(), a.clone()]);
    assert_eq!(list(json!({"label": "team=red", "plugin": "probe"})).await, vec![a.clone()]);
    assert_eq!(list(json!({"label": "tier=1"})).await, vec![a.clone()]);
    assert!(list(json!({"label": "team=green"})).await.is_empty());
    // A value with `=` in it is the value's.
    assert!(list(json!({"label": "team=red=1"})).await.is_empty());
    // Paged under a filter: the cursor goes on within it.
    let first = t.client.call::<Value>("jobs.list", json!({"label": "team=red", "limit": 1})).await.unwrap();
    assert_eq!(ids(&first), vec![c.clone()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(list(json!({"label": "team=red", "limit": 1, "cursor": cursor})).await, vec![a]);
    for bad in [json!({"label": "team"}), json!({"label": "=red"})] {
        let e = t.client.call::<Value>("jobs.list", bad).await.unwrap_err();
        assert_eq!(e.kind(), Some("invalid_params"), "{e}");
        assert_contains(&e.to_string(), "key=value");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_the_last_hour_of_the_callers_jobs_by_minute() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    for _ in 0..3 {
        t.run("probe", &["noop"]).await;
    }
    let stuck = labelled("probe", &["noop"], &[]);
    let held = SubmitRequest { delay_s: Some(3600), ..stuck };
    t.client.submit(&held).await.unwrap();
    let stats: JobStats = t.client.call("jobs.stats", json!({})).await.unwrap();
    assert_eq!(stats.minutes.len(), 60);
    let now = stats.minutes.last().unwrap();
    let this_minute = chrono::Utc::now().format("%Y-%m-%dT%H:%M").to_string();
    let sum = |f: fn(&jobhost_model::MinuteStats) -> u64| stats.minutes.iter().map(f).sum::<u64>();
    // The jobs may straddle a minute's turn: counted over the hour, and at its end.
    assert!(now.at.starts_with(&this_minute) || stats.minutes[58].at.starts_with(&this_minute), "{now:?}");
    assert_eq!(sum(|m| m.submitted), 4, "{stats:?}");
    assert_eq!(sum(|m| m.started), 3);
    assert_eq!(sum(|m| m.ended), 3);
    assert_eq!((stats.queue_depth, stats.running), (1, 0));
    assert_eq!(now.queue_depth, 1, "the held job waits at the end of the last minute");
    assert_eq!(stats.minutes[0].queue_depth, 0, "an hour ago nothing waited");

    // Another user sees their own jobs only; an admin everyone's.
    t.client.create_user("carol", false).await.unwrap();
    let token = t.client.create_token(Some("carol"), &[Scope::Read, Scope::Submit], None).await.unwrap();
    let carol = Client::with_token(&t.server().url(), Some(&token.token)).unwrap();
    let hers: JobStats = carol.call("jobs.stats", json!({})).await.unwrap();
    assert_eq!((hers.minutes.iter().map(|m| m.submitted).sum::<u64>(), hers.queue_depth), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_listed_newest_first_for_their_owner() {
    let t = TestServer::start().await;
    let first = t.client.create_upload().await.unwrap();
    let second = t.client.create_upload().await.unwrap();
    let page: UploadPage = t.client.call("uploads.list", json!({"limit": 1})).await.unwrap();
    assert_eq!(page.uploads.iter().map(|u| u.id.clone()).collect::<Vec<_>>(), vec![second.id.clone()]);
    let cursor = page.next_cursor.unwrap();
    let rest: UploadPage = t.client.call("uploads.list", json!({"cursor": cursor})).await.unwrap();
    assert_eq!(rest.uploads.iter().map(|u| u.id.clone()).collect::<Vec<_>>(), vec![first.id]);
    assert!(rest.next_cursor.is_none());
    t.client.create_user("dave", false).await.unwrap();
    let token = t.client.create_token(Some("dave"), &[Scope::Read], None).await.unwrap();
    let dave = Client::with_token(&t.server().url(), Some(&token.token)).unwrap();
    let his: UploadPage = dave.call("uploads.list", json!({})).await.unwrap();
    assert!(his.uploads.is_empty());
    let bad = t.client.call::<Value>("uploads.list", json!({"cursor": "job_x"})).await.unwrap_err();
    assert_eq!(bad.kind(), Some("invalid_params"));
}

/// A client whose WebSocket opens with `ticket` in the URL and no token.
fn ticketed(t: &TestServer, ticket: &str) -> Client {
    Client::with_token(&format!("{}/?ticket={ticket}", t.server().url()), None).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_opens_one_websocket_as_its_token() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    t.client.create_user("erin", false).await.unwrap();
    let token = t.client.create_token(Some("erin"), &[Scope::Read, Scope::Submit], None).await.unwrap();
    let erin = Client::with_token(&t.server().url(), Some(&token.token)).unwrap();
    let admins = t.submit("probe", &["noop"]).await;

    let ticket: Ticket = erin.call("tokens.ticket", json!({})).await.unwrap();
    assert!(ticket.ticket.starts_with("jht_") && ticket.expires_in_s == 30, "{ticket:?}");
    let ws = ticketed(&t, &ticket.ticket).websocket().await.unwrap();
    // The socket is erin's: her job's events come, the admin's job is not hers.
    let mine = erin.submit(&labelled("probe", &["sleep", "0.3"], &[])).await.unwrap().job.id;
    let mut events = ws.subscribe(Some(&mine)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.job_id, mine);
    assert_eq!(ws.subscribe(Some(&admins.id)).await.unwrap_err().kind(), Some("not_found"));

    // Used once: a second socket with it is refused, as is a made-up one.
    for bad in [ticket.ticket.as_str(), "jht_made-up"] {
        let refused = ticketed(&t, bad).websocket().await.unwrap_err().to_string();
        assert_contains(&refused, "401");
    }
    // A ticket does not stand in for a token on plain HTTP.
    let again: Ticket = erin.call("tokens.ticket", json!({})).await.unwrap();
    let plain = ticketed(&t, &again.ticket).call::<Value>("jobs.list", json!({})).await.unwrap_err();
    assert_eq!(plain.kind(), Some("unauthorized"));
    // A ticket of a token revoked since opens nothing.
    let later: Ticket = erin.call("tokens.ticket", json!({})).await.unwrap();
    t.client.revoke_token(&token.id).await.unwrap();
    assert_contains(&ticketed(&t, &later.ticket).websocket().await.unwrap_err().to_string(), "401");
}

/// The page in a real browser; see `tests/browser/dashboard.py` for the steps.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_works_in_a_real_browser() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        t.client.create_user(name, false).await.unwrap();
        tokens.push(t.client.create_token(Some(name), &[Scope::Read, Scope::Submit], None).await.unwrap().token);
    }
    let downloads = tempfile::tempdir().unwrap();
    let backend = if on_postgres() { "postgres" } else { "sqlite" };
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let screenshot = target.join(format!("dashboard-{backend}.png"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/dashboard.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("JOBHOST_URL", t.server().url())
        .env("TOKEN_A", &tokens[0])
        .env("TOKEN_B", &tokens[1])
        .env("SCREENSHOT", &screenshot)
        .env("DOWNLOADS", downloads.path())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {python} {} (with selenium installed): {e}", script.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    // Every step said it passed: signed in, live completion, log, downloads, cancel,
    // screenshot, the second user, a clean console.
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok: ")).count(), 8, "{stdout}");
    assert!(screenshot.exists(), "no screenshot at {}", screenshot.display());
}
