//! The methods each new connection is served with, built afresh once many
//! subscriptions have ended.
//!
//! jsonrpsee keeps a subscription method's live subscriptions in a map that grows to
//! the most ever held at once and never shrinks: after 100,000 subscriptions have
//! ended it still holds 10 MB, and 21 MB once its tombstones force it to grow again.
//! A connection is served with the methods current when it was accepted and keeps
//! them for its life, unsubscribe included; so methods built anew give the
//! connections that come after empty maps, and the old ones, map and all, are freed
//! with the last connection that holds them. Every method reaches the server through
//! the one shared [`Context`], so the generations differ in nothing else.
//! [`super::conn::Trimmer`] asks for a renewal once
//! [`RENEW_AFTER`](super::conn::RENEW_AFTER) subscriptions have ended since the last.

use super::Context;
use jsonrpsee::Methods;
use std::sync::{Arc, Mutex, PoisonError};

/// The current methods, and how to build the next.
pub struct Generations {
    ctx: Arc<Context>,
    current: Mutex<Methods>,
}

impl std::fmt::Debug for Generations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generations").finish_non_exhaustive()
    }
}

impl Generations {
    /// The first generation, over `ctx`.
    pub fn new(ctx: Arc<Context>) -> anyhow::Result<Generations> {
        let current = Mutex::new(super::module(ctx.clone())?.into());
        Ok(Generations { ctx, current })
    }

    /// The methods a connection accepted now is served with.
    pub fn current(&self) -> Methods {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Builds the next generation; connections accepted from now on are served with it.
    pub fn renew(&self) {
        match super::module(self.ctx.clone()) {
            Ok(next) => {
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = next.into();
                self.ctx.jobs.metrics().renewed();
            }
            // The same registrations succeeded at start; kept as they are if not.
            Err(e) => tracing::warn!(error = %e, "renewing the RPC methods"),
        }
    }
}
