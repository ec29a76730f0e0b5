//! How many of something each key holds at once, against a cap: a token's live
//! subscriptions, connections and long polls, an address's unauthenticated
//! connections. Taking one answers a guard that gives it back when dropped, so a
//! subscription or a connection that ends in any way (unsubscribed, its job ended, its
//! socket closed) counts no more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Per-key counts under one cap.
#[derive(Debug)]
pub struct PerKey {
    cap: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One held unit of a key; given back when dropped.
#[derive(Debug)]
pub struct Held {
    key: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerKey {
    /// At most `cap` at once per key.
    pub fn new(cap: usize) -> PerKey {
        PerKey { cap, held: Arc::default() }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// One more for `key`, unless it holds the cap already.
    pub fn take(&self, key: &str) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(key.to_owned()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Held { key: key.to_owned(), held: self.held.clone() })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_up_to_the_cap_and_gets_back_what_it_drops() {
        let per = PerKey::new(2);
        let (a, b) = (per.take("t").unwrap(), per.take("t").unwrap());
        assert!(per.take("t").is_none());
        assert!(per.take("other").is_some(), "counts are per key");
        drop(a);
        let c = per.take("t").unwrap();
        drop((b, c));
        assert!(per.held.lock().unwrap().is_empty(), "nothing is kept for a key that holds none");
    }
}
