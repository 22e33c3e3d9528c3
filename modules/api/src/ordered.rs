//! Ordered background work for synchronous hooks.
//!
//! Hook handlers cannot wait, so work that needs the database runs on a task. One task
//! per event lets two events of the same account finish in the wrong order: a presence
//! update overtaking the next one, or two subscription stanzas racing to rewrite one
//! roster item. An [`OrderedSpawner`] runs the work of one key (an account) strictly
//! one after another, in the order it was spawned, and the work of different keys side
//! by side on a fixed number of lanes.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use tokio::sync::mpsc;

use crate::BoxFuture;

/// Runs futures with the same key in spawn order, one at a time.
pub struct OrderedSpawner {
    lanes: Vec<OnceLock<mpsc::UnboundedSender<BoxFuture<'static, ()>>>>,
}

/// Lanes of [`OrderedSpawner::default`]: well above a database pool's connections.
const DEFAULT_LANES: usize = 64;

impl Default for OrderedSpawner {
    fn default() -> Self {
        OrderedSpawner::new(DEFAULT_LANES)
    }
}

impl OrderedSpawner {
    /// A spawner with `lanes` lanes (at least one): keys hash onto lanes, so at most
    /// that many pieces of work run at once, and a slow one delays only its lane.
    pub fn new(lanes: usize) -> Self {
        OrderedSpawner { lanes: (0..lanes.max(1)).map(|_| OnceLock::new()).collect() }
    }

    /// Queues `work` behind everything spawned before for `key`. Must be called within
    /// a Tokio runtime (hooks are). A panic in `work` ends only that piece of work.
    pub fn spawn<K: Hash + ?Sized>(&self, key: &K, work: impl Future<Output = ()> + Send + 'static) {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let lane = &self.lanes[(hasher.finish() % self.lanes.len() as u64) as usize];
        let sender = lane.get_or_init(|| {
            let (sender, mut queue) = mpsc::unbounded_channel::<BoxFuture<'static, ()>>();
            tokio::spawn(async move {
                while let Some(work) = queue.recv().await {
                    // Its own task, so that a panic stays inside it.
                    let _ = tokio::spawn(work).await;
                }
            });
            sender
        });
        // The lane's task only stops when the runtime does.
        let _ = sender.send(Box::pin(work));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn work_of_one_key_runs_in_spawn_order_and_survives_a_panic() {
        let spawner = OrderedSpawner::new(8);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (done, finished) = tokio::sync::oneshot::channel();
        for i in 0..200u32 {
            let seen = seen.clone();
            spawner.spawn("alice@example.org", async move {
                // Later work is quicker: without ordering it would finish first.
                tokio::time::sleep(std::time::Duration::from_micros(u64::from(200 - i))).await;
                if i == 50 {
                    panic!("one piece of work fails");
                }
                seen.lock().expect("lock").push(i);
            });
        }
        spawner.spawn("alice@example.org", async move {
            let _ = done.send(());
        });
        finished.await.expect("the lane kept going");
        let expected: Vec<u32> = (0..200).filter(|i| *i != 50).collect();
        assert_eq!(*seen.lock().expect("lock"), expected);
    }

    #[tokio::test]
    async fn a_slow_key_does_not_hold_up_another_lane() {
        let spawner = OrderedSpawner::new(64);
        // Two keys on different lanes.
        let lane = |key: &str| {
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish() % 64
        };
        let a = "a@x".to_owned();
        let b = (0..).map(|n| format!("b{n}@x")).find(|b| lane(b) != lane(&a)).expect("another lane");
        spawner.spawn(&a, std::future::pending());
        let (done, finished) = tokio::sync::oneshot::channel();
        spawner.spawn(&b, async move {
            let _ = done.send(());
        });
        finished.await.expect("b ran while a is stuck");
    }
}
