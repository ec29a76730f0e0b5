//! API tokens on every door, users who see only their own work, and transport limits.

use super::*;
use jobhost_model::Scope;
use jobhost_tests::PROBE_WASM;

/// Every way a request can fail to present a valid token, as (label, Authorization).
async fn bad_credentials(t: &TestServer) -> Vec<(&'static str, Option<String>)> {
    let short = t.client.create_token(None, &[Scope::Read], Some(1)).await.unwrap();
    let revoked = t.client.create_token(None, &[Scope::Read], None).await.unwrap();
    t.client.revoke_token(&revoked.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    vec![
        ("none", None),
        ("wrong", Some("Bearer jh_notarealtokenatallnotarealtokenatallnotar".into())),
        ("not bearer", Some("Basic YWRtaW46YWRtaW4=".into())),
        ("expired", Some(format!("Bearer {}", short.token))),
        ("revoked", Some(format!("Bearer {}", revoked.token))),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_on_http_websocket_and_file_routes() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let job = t.run("probe", &["write-output", "1"]).await;
    let artifact = t.client.artifacts(&job.id).await.unwrap().remove(0);
    let upload = t.client.create_upload().await.unwrap();
    let addr = t.server().local_addr;

    for (label, auth) in bad_credentials(&t).await {
        let auth = auth.as_deref();
        let (status, body) =
            http_raw(addr, "POST", "/", auth, br#"{"jsonrpc":"2.0","id":1,"method":"jobs.list","params":{}}"#).await;
        if auth.is_none() {
            // Without a token the call itself answers: unauthorized.
            assert_eq!(status, 200, "{label}");
            assert_eq!(body["error"]["data"]["kind"], "unauthorized", "{label}: {body}");
        } else {
            assert_eq!(status, 401, "{label}: {body}");
            assert_eq!(body["error"]["data"]["kind"], "unauthorized", "{label}: {body}");
        }
        let (status, _) =
            http_raw(addr, "GET", &format!("/jobs/{}/artifacts/{}", job.id, artifact.name), auth, b"").await;
        assert_eq!(status, 401, "artifact download, {label}");
        let (status, _) = http_raw(addr, "PUT", &format!("/uploads/{}/files/a.txt", upload.id), auth, b"x").await;
        assert_eq!(status, 401, "upload, {label}");

        // The typed client over HTTP and WebSocket.
        let token = auth.and_then(|a| a.strip_prefix("Bearer "));
        let client = jobhost_client::Client::with_token(&t.server().url(), token).unwrap();
        let err = client.list(None, None, None).await.unwrap_err();
        assert_eq!(err.kind(), Some("unauthorized"), "{label}: {err}");
        match client.websocket().await {
            Err(e) => assert_eq!(e.kind(), Some("unauthorized"), "{label}: {e}"),
            Ok(ws) => panic!("{label}: a WebSocket opened: {ws:?}"),
        }
    }
    // Health stays open.
    let open = jobhost_client::Client::new(&t.server().url()).unwrap();
    assert_eq!(open.health().await.unwrap().status, "ok");
    // And a good token works on every door.
    assert!(t.client.websocket().await.unwrap().subscribe(Some(&job.id)).await.is_ok());
    assert_eq!(t.client.download_artifact(&job.id, &artifact.name).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_only_their_own_work() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let job = t.run("probe", &["write-output", "1"]).await;
    let artifact = t.client.artifacts(&job.id).await.unwrap().remove(0);
    let upload = t.client.create_upload().await.unwrap();

    t.client.create_user("bob", false).await.unwrap();
    let dup = t.client.create_user("bob", false).await.unwrap_err();
    assert_eq!(dup.kind(), Some("conflict"));
    let bob_token = t.client.create_token(Some("bob"), &[Scope::Submit, Scope::Read], None).await.unwrap();
    assert!(bob_token.token.starts_with("jh_"));
    let bob = jobhost_client::Client::with_token(&t.server().url(), Some(&bob_token.token)).unwrap();

    assert!(bob.list(None, None, None).await.unwrap().jobs.is_empty(), "bob sees no jobs");
    for err in [
        bob.get(&job.id).await.unwrap_err(),
        bob.logs(&job.id, 0, None).await.unwrap_err(),
        bob.artifacts(&job.id).await.map(|_| ()).unwrap_err(),
        bob.read_artifact(&job.id, &artifact.name).await.map(|_| ()).unwrap_err(),
        bob.download_artifact(&job.id, &artifact.name).await.map(|_| ()).unwrap_err(),
        bob.cancel(&job.id).await.map(|_| ()).unwrap_err(),
        bob.get_upload(&upload.id).await.map(|_| ()).unwrap_err(),
        bob.upload_put(&upload.id, "x", b"x").await.map(|_| ()).unwrap_err(),
        bob.put_file(&upload.id, "x", b"x".to_vec()).await.map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(err.kind(), Some("not_found"), "{err}");
    }
    let ws = bob.websocket().await.unwrap();
    assert_eq!(ws.subscribe(Some(&job.id)).await.unwrap_err().kind(), Some("not_found"));

    // Bob's own job is his, and the admin sees it too.
    let bob_job = bob
        .submit(&SubmitRequest { plugin: "probe".into(), args: vec!["echo".into()], ..Default::default() })
        .await
        .unwrap()
        .job;
    assert_ne!(bob_job.user_id, job.user_id);
    assert_eq!(bob.list(None, None, None).await.unwrap().jobs.len(), 1);
    assert_eq!(t.client.get(&bob_job.id).await.unwrap().id, bob_job.id);

    // Bob cannot raise himself: no admin token, no user management, no installs.
    let admin = bob.create_token(None, &[Scope::Admin], None).await.unwrap_err();
    assert_eq!(admin.kind(), Some("forbidden"), "{admin}");
    let for_admin = bob.create_token(Some("admin"), &[Scope::Read], None).await.unwrap_err();
    assert_eq!(for_admin.kind(), Some("not_found"), "{for_admin}");
    assert_eq!(bob.create_user("eve", true).await.unwrap_err().kind(), Some("forbidden"));
    assert_eq!(bob.install("x", b"\0asm").await.unwrap_err().kind(), Some("forbidden"));
    // A read-only token minted by bob cannot submit.
    let ro = bob.create_token(None, &[Scope::Read], None).await.unwrap();
    let ro = jobhost_client::Client::with_token(&t.server().url(), Some(&ro.token)).unwrap();
    let denied = ro.submit(&SubmitRequest { plugin: "probe".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(denied.kind(), Some("forbidden"));
    // Bob sees and revokes only his own tokens.
    let listed = bob.tokens().await.unwrap();
    assert!(listed.iter().all(|tk| tk.user_id == bob_job.user_id), "{listed:?}");
    let admins = t.client.tokens().await.unwrap();
    let admin_token = admins.iter().find(|tk| tk.user_id == job.user_id).unwrap();
    assert_eq!(bob.revoke_token(&admin_token.id).await.unwrap_err().kind(), Some("not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_stored_hashed_and_the_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut t = TestServer::start().await;
    let path = t.dir.path().join("token");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let admin = t.server().admin_token().unwrap();
    let minted = t.client.create_token(None, &[Scope::Read], Some(3600)).await.unwrap();
    let listed = t.client.tokens().await.unwrap();
    assert!(listed.iter().any(|tk| tk.id == minted.id && minted.token.starts_with(&tk.prefix)));
    t.stop().await;
    let db = match &t.database {
        Some(pg) => pg.table_text("tokens").await,
        None => {
            let mut db = Vec::new();
            for name in ["jobhost.db", "jobhost.db-wal"] {
                if let Ok(bytes) = std::fs::read(t.dir.path().join(name)) {
                    db.extend(bytes);
                }
            }
            String::from_utf8_lossy(&db).into_owned()
        }
    };
    assert!(!db.contains(&admin) && !db.contains(&minted.token), "a token is stored in clear");
    assert!(db.contains(&sha256_hex(admin.as_bytes())), "its hash is what is stored");

    // A restart keeps the file's token valid instead of minting a new one.
    t.restart_with(|_| {}).await;
    assert_eq!(t.server().admin_token().unwrap(), admin);
    assert!(t.client.list(None, None, None).await.is_ok());
}

/// POSTs `body` to `/` in 16 KiB chunks (`Transfer-Encoding: chunked`): the status and
/// the answer as JSON.
async fn chunked_post(addr: SocketAddr, authorization: &str, body: &[u8]) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: {authorization}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(16 * 1024) {
        // The server may answer and close before the last chunks: not an error here.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || s.write_all(chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_limits_refuse_clearly_and_the_server_keeps_serving() {
    let t = TestServer::start_with(|c| {
        c.transport.max_body_bytes = 64 * 1024;
        c.transport.rate_per_s = 1;
        c.transport.rate_burst = 20;
    })
    .await;
    let auth = format!("Bearer {}", t.server().admin_token().unwrap());
    let big =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"jobs.get","params":{{"id":"{}"}}}}"#, "x".repeat(100 * 1024));
    let (status, _) = http_raw(t.server().local_addr, "POST", "/", Some(&auth), big.as_bytes()).await;
    assert_eq!(status, 413, "an oversized request is refused");
    // The same sent in chunks, without a Content-Length: 413 too, saying why.
    let (status, answer) = chunked_post(t.server().local_addr, &auth, big.as_bytes()).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["data"]["kind"], "limit_exceeded", "{answer}");
    assert_contains(answer["error"]["message"].as_str().unwrap_or_default(), "65536 bytes");
    assert_eq!(t.client.health().await.unwrap().status, "ok");

    let mut refused = None;
    for _ in 0..40 {
        if let Err(e) = t.client.list(None, None, None).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("the rate limit never applied");
    assert_eq!(refused.kind(), Some("limit_exceeded"), "{refused}");
    assert_eq!(t.client.health().await.unwrap().status, "ok", "health is not rate limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn listening_beyond_loopback_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = server::start(config).await.unwrap_err();
    assert!(err.to_string().contains("--allow-remote"), "{err}");
}

/// A token a user's token mints lives within it: it expires with it at the latest (by
/// default at the same time), cannot ask to outlive it, and is revoked with it, down
/// to the tokens it minted in turn.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_never_outlives_the_token_that_minted_it() {
    let t = TestServer::start().await;
    t.client.create_user("carol", false).await.unwrap();
    let url = t.server().url();
    let as_token = |token: &str| jobhost_client::Client::with_token(&url, Some(token)).unwrap();
    let refused = |c: jobhost_client::Client| async move {
        c.list(None, None, None).await.unwrap_err().kind().map(str::to_owned)
    };

    // Expiry: a parent of 2 s, its child and grandchild (neither asking for one).
    let parent = t.client.create_token(Some("carol"), &[Scope::Submit, Scope::Read], Some(2)).await.unwrap();
    let child = as_token(&parent.token).create_token(None, &[Scope::Read], None).await.unwrap();
    assert_eq!(child.expires_at, parent.expires_at);
    let too_long = as_token(&parent.token).create_token(None, &[Scope::Read], Some(3600)).await.unwrap_err();
    assert_eq!((too_long.kind(), too_long.field()), (Some("invalid_params"), Some("expires_in_s")), "{too_long}");
    let grandchild = as_token(&child.token).create_token(None, &[Scope::Read], None).await.unwrap();
    assert_eq!(grandchild.expires_at, parent.expires_at);
    assert!(as_token(&grandchild.token).list(None, None, None).await.is_ok());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for token in [&parent.token, &child.token, &grandchild.token] {
        assert_eq!(refused(as_token(token)).await.as_deref(), Some("unauthorized"));
    }

    // Revocation: of a parent without expiry, by its user, takes its line with it.
    let parent = t.client.create_token(Some("carol"), &[Scope::Submit, Scope::Read], None).await.unwrap();
    let child = as_token(&parent.token).create_token(None, &[Scope::Submit, Scope::Read], None).await.unwrap();
    let grandchild = as_token(&child.token).create_token(None, &[Scope::Read], None).await.unwrap();
    let sibling = t.client.create_token(Some("carol"), &[Scope::Read], None).await.unwrap();
    let listed = t.client.tokens().await.unwrap();
    let parent_of = |id: &str| listed.iter().find(|i| i.id == id).and_then(|i| i.parent_id.clone());
    assert_eq!(parent_of(&child.id), Some(parent.id.clone()));
    assert_eq!(parent_of(&grandchild.id), Some(child.id.clone()));
    assert_eq!(parent_of(&parent.id), None, "an admin's mint has no parent");
    as_token(&child.token).revoke_token(&parent.id).await.unwrap();
    for token in [&parent.token, &child.token, &grandchild.token] {
        assert_eq!(refused(as_token(token)).await.as_deref(), Some("unauthorized"));
    }
    assert!(as_token(&sibling.token).list(None, None, None).await.is_ok(), "another line lives on");
}

/// A token revoked while a WebSocket opened with it is still open stops working on it:
/// its open subscriptions end at once, their last notification saying why, and the
/// server closes the socket.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_stops_working_on_an_open_websocket() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let minted = t.client.create_token(None, &[Scope::Submit, Scope::Read], None).await.unwrap();
    let user = jobhost_client::Client::with_token(&t.server().url(), Some(&minted.token)).unwrap();
    let socket = user.websocket().await.unwrap();
    let mut all = socket.subscribe(None).await.unwrap();
    let mut other = user.websocket().await.unwrap().subscribe(None).await.unwrap();
    let req = SubmitRequest { plugin: "probe".into(), args: vec!["noop".into()], ..SubmitRequest::default() };
    let params = jobhost_client::submit_params(&req).unwrap();
    let before: jobhost_model::Submitted = socket.call("jobs.submit", params.clone()).await.unwrap();
    assert!(before.created);
    t.client.revoke_token(&minted.id).await.unwrap();
    // Both subscriptions (on two sockets) end within a moment: the revocation was
    // made here, so they are told at once, not at their next periodic check.
    for sub in [&mut all, &mut other] {
        let ended = tokio::time::timeout(Duration::from_millis(1500), async {
            loop {
                match sub.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Some(e.to_string()),
                    None => return None,
                }
            }
        })
        .await
        .expect("a subscription of the revoked token is still open");
        if let Some(e) = ended {
            assert_contains(&e, "revoked");
        }
    }
    // The socket itself is closed by the server.
    tokio::time::timeout(Duration::from_millis(1500), socket.closed())
        .await
        .expect("the revoked token's socket is still open");
    assert!(socket.call::<jobhost_model::Submitted>("jobs.submit", params).await.is_err());
    let listed = t.client.list(None, None, None).await.unwrap();
    assert_eq!(listed.jobs.len(), 1, "only the submit made before the revocation created a job");
}

/// The file routes count against a token's request rate as calls do: past the burst,
/// a transfer is `limit_exceeded`.
#[tokio::test(flavor = "multi_thread")]
async fn file_transfers_count_against_the_token_rate() {
    let t = TestServer::start_with(|c| {
        c.transport.rate_per_s = 1;
        c.transport.rate_burst = 3;
    })
    .await;
    let upload = t.client.create_upload().await.unwrap();
    let mut answers = Vec::new();
    for n in 0..3 {
        let put = t.client.put_file(&upload.id, &format!("f{n}.txt"), b"x".to_vec()).await;
        answers.push(put.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.kind().unwrap_or("transport").to_owned()));
    }
    assert_eq!(answers, ["ok", "ok", "limit_exceeded"], "the call and two transfers fill a burst of three");
}

/// A token holds at most `max_subscriptions_per_token` subscriptions at once, over all
/// its sockets; one that ends (here: its socket closes) frees its place.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_capped_per_token() {
    let t = TestServer::start_with(|c| c.transport.max_subscriptions_per_token = 2).await;
    let (first, second) = (t.client.websocket().await.unwrap(), t.client.websocket().await.unwrap());
    let _one = first.subscribe(None).await.unwrap();
    let _two = second.subscribe(None).await.unwrap();
    let third = second.subscribe(None).await.unwrap_err();
    assert_eq!(third.kind(), Some("limit_exceeded"), "{third}");
    // Another token has places of its own.
    let other = t.client.create_token(None, &[Scope::Read], None).await.unwrap();
    let other = jobhost_client::Client::with_token(&t.server().url(), Some(&other.token)).unwrap();
    let _its = other.websocket().await.unwrap().subscribe(None).await.unwrap();
    drop((_one, first));
    eventually(5, || async { second.subscribe(None).await.is_ok() }).await;
}

/// A cap raised past jsonrpsee's own 1,024 subscriptions a connection still holds on
/// one socket, and is refused there with its stable kind.
#[tokio::test(flavor = "multi_thread")]
async fn a_raised_subscription_cap_holds_on_one_socket() {
    let t = TestServer::start_with(|c| c.transport.max_subscriptions_per_token = 1030).await;
    let socket = t.client.websocket().await.unwrap();
    let mut held = Vec::new();
    for _ in 0..1030 {
        held.push(socket.subscribe(None).await.unwrap());
    }
    let over = socket.subscribe(None).await.unwrap_err();
    assert_eq!(over.kind(), Some("limit_exceeded"), "{over}");
}
