//! Back-pressure from modules to the streams that bring stanzas in.
//!
//! A module whose work queue is filling faster than it drains (the archive writer
//! behind a busy database) raises its [`PressureSource`]; while any source is raised,
//! client and server streams stop reading their sockets before the next read, so TCP
//! flow control slows the senders down to what the module can store. Delivery to
//! sessions goes on meanwhile: only reading pauses. This is how the server keeps up
//! the promise that an accepted message is archived rather than dropped when the
//! database is slower than the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Shared {
    raised: AtomicUsize,
    cleared: Notify,
}

/// What the streams wait on: cheap to clone, one per server.
#[derive(Debug, Clone, Default)]
pub struct Ingress {
    shared: Arc<Shared>,
}

impl Ingress {
    /// A new source of pressure owned by one module.
    pub fn source(&self) -> PressureSource {
        PressureSource { shared: self.shared.clone(), raised: Arc::new(AtomicBool::new(false)) }
    }

    /// Whether some source is raised now.
    pub fn is_pressed(&self) -> bool {
        self.shared.raised.load(Ordering::Acquire) > 0
    }

    /// Returns once no source is raised (at once in the common case). Cancel-safe.
    pub async fn until_clear(&self) {
        loop {
            if !self.is_pressed() {
                return;
            }
            let cleared = self.shared.cleared.notified();
            tokio::pin!(cleared);
            // Registered before the second look, so a release in between is not missed.
            cleared.as_mut().enable();
            if !self.is_pressed() {
                return;
            }
            cleared.await;
        }
    }
}

/// One module's switch; raising it twice counts once.
#[derive(Debug, Clone)]
pub struct PressureSource {
    shared: Arc<Shared>,
    raised: Arc<AtomicBool>,
}

impl PressureSource {
    /// Asks the streams to stop reading until [`PressureSource::release`].
    pub fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.shared.raised.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Lets the streams read again (once no other source is raised).
    pub fn release(&self) {
        if self.raised.swap(false, Ordering::AcqRel) && self.shared.raised.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.cleared.notify_waiters();
        }
    }

    /// Whether this source is raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_wait_while_any_source_is_raised() {
        let ingress = Ingress::default();
        let (archive, other) = (ingress.source(), ingress.source());
        ingress.until_clear().await;
        archive.raise();
        archive.raise();
        other.raise();
        let waiting = tokio::spawn({
            let ingress = ingress.clone();
            async move { ingress.until_clear().await }
        });
        archive.release();
        tokio::task::yield_now().await;
        assert!(ingress.is_pressed(), "one source is still raised");
        assert!(!waiting.is_finished());
        other.release();
        waiting.await.expect("the reader goes on once every source is released");
        assert!(!ingress.is_pressed());
    }
}
