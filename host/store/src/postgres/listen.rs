//! Hearing of other nodes' changes: one connection `LISTEN`s on [`NOTIFY_CHANNEL`] and
//! hands what other stores (other `origin`s) on the same schema moved to the hook.
//!
//! Postgres delivers a notification only to connections listening when it is sent:
//! while the listening connection is lost, changes go unheard. The hook is then told
//! [`Remote::Missed`], so it can do what a missed wake-up needs (look for work).

use super::NOTIFY_CHANNEL;
use crate::{Remote, RemoteHook};
use jobhost_model::JobStatus;
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;

/// How long to wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Listens until aborted.
pub(super) async fn run(pool: PgPool, origin: std::sync::Arc<str>, hook: RemoteHook) {
    loop {
        match listen(&pool, &origin, &hook).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "listening for other nodes' changes; trying again"),
        }
        hook(Remote::Missed);
        tokio::time::sleep(RETRY).await;
    }
}

/// One listening connection's life: returns when it is lost.
async fn listen(pool: &PgPool, origin: &str, hook: &RemoteHook) -> Result<(), sqlx::Error> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(pool).await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    // Anything sent before this point was not heard.
    hook(Remote::Missed);
    loop {
        let Some(notification) = listener.try_recv().await? else { return Ok(()) };
        if let Some(moved) = parse(notification.payload(), &schema, origin) {
            hook(Remote::Moved(moved));
        }
    }
}

/// The jobs a payload says moved, unless it is about another schema or from `origin`.
fn parse(payload: &str, schema: &str, origin: &str) -> Option<Vec<(String, JobStatus)>> {
    let mut words = payload.split(' ');
    if words.next()? != schema || words.next()? == origin {
        return None;
    }
    let moved: Vec<_> = words
        .filter_map(|w| {
            let (id, status) = w.split_once(':')?;
            Some((id.to_owned(), JobStatus::parse(status)?))
        })
        .collect();
    (!moved.is_empty()).then_some(moved)
}

#[cfg(test)]
mod tests {
    use super::super::writer::sql::notify_payloads;
    use super::*;

    #[test]
    fn a_payload_names_its_schema_and_origin_and_stays_under_the_limit() {
        let ids: Vec<String> = (0..1000).map(|n| format!("job_{n:032}")).collect();
        let moved: Vec<(&str, JobStatus)> = ids.iter().map(|id| (id.as_str(), JobStatus::Completed)).collect();
        let payloads = notify_payloads("st_a", &moved);
        assert!(payloads.len() > 1, "1000 jobs take several notifications");
        let mut heard = Vec::new();
        for p in &payloads {
            let full = format!("jh_x {p}");
            assert!(full.len() < 8000, "{} bytes", full.len());
            assert!(parse(&full, "jh_x", "st_a").is_none(), "a store skips its own");
            assert!(parse(&full, "jh_y", "st_b").is_none(), "another schema is not ours");
            heard.extend(parse(&full, "jh_x", "st_b").unwrap());
        }
        assert_eq!(heard.len(), 1000);
        assert_eq!(heard[999], (ids[999].clone(), JobStatus::Completed));
    }
}
