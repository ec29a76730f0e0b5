//! The in-process bus of job events that `jobs.wait` and `jobs.subscribe` listen to.

use jobhost_model::{Job, JobEvent};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events buffered per listener; a listener further behind than this gets a `lagged`
/// marker instead of slowing the jobs down.
pub const EVENT_BUFFER: usize = 4096;

/// Fan-out of job events; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<JobEvent>,
    /// Every job that reached a terminal status, whole: `jobs.wait` answers with it
    /// instead of reading the record again.
    ended: broadcast::Sender<Arc<Job>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no listeners.
    pub fn new() -> EventBus {
        EventBus { tx: broadcast::channel(EVENT_BUFFER).0, ended: broadcast::channel(EVENT_BUFFER).0 }
    }

    /// Sends `event` to every listener (none listening is fine).
    pub fn publish(&self, event: JobEvent) {
        let _ = self.tx.send(event);
    }

    /// Whether anyone listens (a subscriber or a `jobs.wait`).
    pub fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0 || self.ended.receiver_count() > 0
    }

    /// A new listener that sees events published from now on.
    pub fn listen(&self) -> broadcast::Receiver<JobEvent> {
        self.tx.subscribe()
    }

    /// Sends `job`, which has just reached a terminal status, to every [`EventBus::ends`]
    /// listener.
    pub fn publish_end(&self, job: &Job) {
        if self.ended.receiver_count() > 0 {
            let _ = self.ended.send(Arc::new(job.clone()));
        }
    }

    /// A new listener for the jobs that end from now on.
    pub fn ends(&self) -> broadcast::Receiver<Arc<Job>> {
        self.ended.subscribe()
    }
}
