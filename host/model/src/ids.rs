//! Prefixed, time-ordered identifiers (`job_` + UUIDv7 and friends).
//!
//! The prefix tells a reader (and a log search) what an id names; the UUIDv7 body sorts
//! by creation time, so "newest first" is an ORDER BY on the primary key.

use uuid::Uuid;

/// Prefix of job ids.
pub const JOB: &str = "job_";
/// Prefix of user ids.
pub const USER: &str = "usr_";
/// Prefix of artifact ids.
pub const ARTIFACT: &str = "art_";
/// Prefix of upload ids.
pub const UPLOAD: &str = "upl_";
/// Prefix of API token ids.
pub const TOKEN: &str = "tok_";
/// Prefix of workflow ids.
pub const WORKFLOW: &str = "wf_";
/// Prefix of run ids.
pub const RUN: &str = "run_";

/// A new id with `prefix`, e.g. `new(JOB)` → `job_0192…`.
pub fn new(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::now_v7().simple())
}

/// Whether `id` looks like an id with `prefix` (a cheap check before a lookup).
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The smallest id with `prefix` made at `at` or later: ids sort by creation time, so
/// `id >= floor(prefix, t)` selects what was made since `t`.
pub fn floor(prefix: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("{prefix}{ms:012x}{}", "0".repeat(20))
}

/// Current time as RFC 3339 UTC with a `Z`, millisecond precision (the stored form).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sort_by_creation() {
        let a = new(JOB);
        let b = new(JOB);
        assert!(has_prefix(&a, JOB));
        assert!(!has_prefix(&a, USER));
        assert!(a < b, "{a} should sort before {b}");
        assert!(!has_prefix("job_../../etc", JOB));
        let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        let made = new(JOB);
        let floor = floor(JOB, before);
        assert!(has_prefix(&floor, JOB) && floor <= made, "{floor} {made}");
        assert!(made < self::floor(JOB, chrono::Utc::now() + chrono::Duration::seconds(1)));
    }

    #[test]
    fn timestamps_are_utc_with_z() {
        assert!(now().ends_with('Z'));
    }
}
