//! The in-process bus of job events that `jobs.wait` and `jobs.subscribe` listen to.

use super::model::JobEvent;
use tokio::sync::broadcast;

/// Events buffered per listener; a listener further behind than this gets a `lagged`
/// marker instead of slowing the jobs down.
pub const EVENT_BUFFER: usize = 4096;

/// Fan-out of job events; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<JobEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no listeners.
    pub fn new() -> EventBus {
        EventBus { tx: broadcast::channel(EVENT_BUFFER).0 }
    }

    /// Sends `event` to every listener (none listening is fine).
    pub fn publish(&self, event: JobEvent) {
        let _ = self.tx.send(event);
    }

    /// A new listener that sees events published from now on.
    pub fn listen(&self) -> broadcast::Receiver<JobEvent> {
        self.tx.subscribe()
    }
}
