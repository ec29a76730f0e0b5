//! Connections: no client holds the server for the others. Unauthenticated
//! connections count per client address, a token's connections per token, long polls
//! apart from both; slow bodies and silent connections are cut off; `system.health` is
//! answered whatever is held.

use crate::{TestServer, assert_contains, connect, connect_from, eventually, http_raw, http_raw_from};
use jobhost_model::{Scope, SubmitRequest};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEALTH: &str = r#"{"jsonrpc":"2.0","id":1,"method":"system.health"}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"jobs.list"}"#;

/// The median of five `system.health` calls, each on a connection of its own, all
/// answered `ok`.
async fn health_median(addr: SocketAddr) -> Duration {
    let mut took = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let (status, answer) = http_raw(addr, "POST", "/", None, HEALTH.as_bytes()).await;
        took.push(start.elapsed());
        assert_eq!((status, answer["result"]["status"].as_str()), (200, Some("ok")), "{answer}");
    }
    took.sort();
    took[2]
}

/// Opens a connection that sends a call's headers and the first byte of a 1,000-byte
/// body, and no more.
async fn slow_body(addr: SocketAddr, head: &str) -> tokio::net::TcpStream {
    let mut s = connect(addr).await;
    let head = format!("{head}\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{");
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads what the server sends until it closes the connection, within `secs`.
async fn until_closed(s: &mut tokio::net::TcpStream, secs: u64) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(secs), s.read_to_end(&mut got))
        .await
        .expect("the server kept the connection open")
        .unwrap_or_default();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_calls_with_a_token_go_through_while_1100_slow_bodies_are_held() {
    let t = TestServer::start().await;
    let addr = t.server().local_addr;
    let mut held = Vec::new();
    for _ in 0..1100 {
        held.push(slow_body(addr, "POST / HTTP/1.1").await);
    }
    // This address's places for connections without a token are all taken: one more
    // call without a token is `busy`, and its connection is closed.
    let (status, answer) = http_raw(addr, "POST", "/", None, LIST.as_bytes()).await;
    assert_eq!((status, answer["error"]["data"]["kind"].as_str()), (429, Some("busy")), "{answer}");
    assert_contains(answer["error"]["message"].as_str().unwrap(), "127.0.0.1");
    // Another address has places of its own (the call then fails for want of a token).
    let (_, answer) = http_raw_from(connect_from([127, 0, 0, 2], addr).await, "POST", "/", None, LIST.as_bytes()).await;
    assert_eq!(answer["error"]["data"]["kind"], "unauthorized", "{answer}");
    // Health is answered, at once, even from the crowded address; a token's calls too.
    let median = health_median(addr).await;
    assert!(median < Duration::from_millis(100), "health took {median:?} (median of 5)");
    assert!(t.client.list(None, None, None).await.is_ok());
    // Every slow connection is still open: none was answered or closed meanwhile.
    for s in &mut held {
        s.write_all(b" ").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_or_a_silent_connection_is_cut_off() {
    let t = TestServer::start_with(|c| {
        c.transport.body_read_timeout = Duration::from_secs(1);
        c.transport.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = t.server().local_addr;
    let token = t.server().admin_token().unwrap();
    // A call whose body stops coming: 408 `request_timeout`, and the connection closes.
    let mut call = slow_body(addr, "POST / HTTP/1.1").await;
    let answer = until_closed(&mut call, 10).await;
    assert_contains(&answer, "HTTP/1.1 408");
    assert_contains(&answer, "request_timeout");
    // A file whose body stops coming: the same, and nothing lands in the upload.
    let upload = t.client.create_upload().await.unwrap();
    let head = format!("PUT /uploads/{}/files/a.txt HTTP/1.1\r\nAuthorization: Bearer {token}", upload.id);
    let mut put = slow_body(addr, &head).await;
    let answer = until_closed(&mut put, 10).await;
    assert_contains(&answer, "HTTP/1.1 408");
    let upload = t.client.get_upload(&upload.id).await.unwrap();
    assert_eq!((upload.file_count, upload.size_bytes), (0, 0), "{upload:?}");
    // Headers never finished, or nothing sent at all: closed.
    let mut half = connect(addr).await;
    half.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    until_closed(&mut half, 10).await;
    let mut silent = connect(addr).await;
    until_closed(&mut silent, 10).await;
    assert_eq!(t.client.health().await.unwrap().status, "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_calls_do_not_take_the_places_other_calls_need() {
    let t = TestServer::start_with(|c| {
        c.transport.max_waits_per_token = 2000;
        c.transport.max_connections_per_token = 8;
    })
    .await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    // Held for an hour: every wait on it waits until it is cancelled.
    let req = SubmitRequest { plugin: "probe".into(), delay_s: Some(3600), ..SubmitRequest::default() };
    let job = t.client.submit(&req).await.unwrap().job;
    let addr = t.server().local_addr;
    let token = t.server().admin_token().unwrap();
    let wait = |timeout_s: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"jobs.wait","params":{{"id":"{}","timeout_s":{timeout_s}}}}}"#,
            job.id
        )
    };
    let mut waiting = Vec::new();
    for _ in 0..2000 {
        let mut s = connect(addr).await;
        let body = wait(300);
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        waiting.push(s);
    }
    // Once all 2,000 wait, one more is `busy`.
    eventually(30, || {
        let token = token.clone();
        async move {
            let (_, _, metrics) = crate::http_get(addr, "/metrics", Some(&token)).await;
            metrics.lines().any(|l| l == "jobhost_waits_open 2000")
        }
    })
    .await;
    let auth = format!("Bearer {token}");
    let (status, answer) = http_raw(addr, "POST", "/", Some(&auth), wait(0).as_bytes()).await;
    assert_eq!((status, answer["error"]["data"]["kind"].as_str()), (429, Some("busy")), "{answer}");
    assert_contains(answer["error"]["message"].as_str().unwrap(), "2000 `jobs.wait` open");
    // Health is answered at once, and the token's other calls (more of them than it
    // may hold connections) go through.
    let median = health_median(addr).await;
    assert!(median < Duration::from_millis(100), "health took {median:?} (median of 5)");
    for _ in 0..20 {
        let (status, answer) = http_raw(addr, "POST", "/", Some(&auth), LIST.as_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["result"]["jobs"].is_array(), "{answer}");
    }
    t.client.cancel(&job.id).await.unwrap();
    // The waits end with the job.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("cancelled") {
        let n = tokio::time::timeout(Duration::from_secs(10), waiting[0].read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_holds_at_most_its_connections() {
    let t = TestServer::start_with(|c| c.transport.max_connections_per_token = 2).await;
    let minted = t.client.create_token(None, &[Scope::Submit, Scope::Read], None).await.unwrap();
    let user = jobhost_client::Client::with_token(&t.server().url(), Some(&minted.token)).unwrap();
    let first = user.websocket().await.unwrap();
    let _second = user.websocket().await.unwrap();
    assert!(user.websocket().await.is_err(), "a third WebSocket of the token opened");
    let addr = t.server().local_addr;
    let auth = format!("Bearer {}", minted.token);
    let (status, answer) = http_raw(addr, "POST", "/", Some(&auth), LIST.as_bytes()).await;
    assert_eq!((status, answer["error"]["data"]["kind"].as_str()), (429, Some("busy")), "{answer}");
    assert_contains(answer["error"]["message"].as_str().unwrap(), "this token holds 2");
    // Health still answers it; other tokens are not affected.
    let (status, _) = http_raw(addr, "POST", "/", Some(&auth), HEALTH.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(t.client.list(None, None, None).await.is_ok());
    // A socket that closes gives its place back.
    drop(first);
    eventually(5, || {
        let auth = auth.clone();
        async move { http_raw(addr, "POST", "/", Some(&auth), LIST.as_bytes()).await.0 == 200 }
    })
    .await;
}

/// jsonrpsee's map of live subscriptions never shrinks, so once many have ended the
/// server builds its methods afresh for the connections that come after. Sockets
/// from before keep theirs: a subscription held across the renewal and one made after
/// it both see a job's events, and both unsubscribe.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_go_on_across_a_renewal_of_the_methods() {
    let crowd_size = jobhost_server::rpc::conn::RENEW_AFTER;
    let t = TestServer::start_with(|c| c.transport.max_subscriptions_per_token = crowd_size as u32 + 16).await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let metric = |name: &'static str| {
        let t = &t;
        async move { crate::metrics::scrape(t).await.get(name).copied() }
    };
    let old = t.client.websocket().await.unwrap();
    let mut held = old.subscribe(None).await.unwrap();
    // A crowd of them, 1,024 to a socket (jsonrpsee's most per connection).
    let mut crowd = Vec::new();
    for _ in 0..crowd_size.div_ceil(1024) {
        let socket = t.client.websocket().await.unwrap();
        let mut subs = Vec::new();
        for _ in 0..1024 {
            subs.push(socket.subscribe(None).await.unwrap());
        }
        crowd.push((socket, subs));
    }
    assert_eq!(metric("jobhost_rpc_methods_renewed_total{}").await, Some(0.0));
    drop(crowd);
    eventually(15, || async { metric("jobhost_rpc_methods_renewed_total{}").await == Some(1.0) }).await;
    let new = t.client.websocket().await.unwrap();
    let mut fresh = new.subscribe(None).await.unwrap();
    let req = SubmitRequest { plugin: "probe".into(), args: vec!["noop".into()], ..SubmitRequest::default() };
    let job = t.client.submit(&req).await.unwrap().job;
    for sub in [&mut held, &mut fresh] {
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = sub.next().await {
                if event.unwrap().job_id == job.id {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "a subscription saw nothing of job {}", job.id);
    }
    held.unsubscribe().await.unwrap();
    fresh.unsubscribe().await.unwrap();
    eventually(5, || async { metric("jobhost_subscriptions_open{}").await == Some(0.0) }).await;
    drop((old, new));
}
