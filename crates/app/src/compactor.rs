//! Background compaction. Ingest hands compaction to this thread once enough events wait
//! in the log, so writing Parquet overlaps with taking in more events instead of stalling
//! it; past twice the threshold ingest compacts itself, which bounds the log's memory.

use omnitrail_store::{Store, StoreError};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) struct Compactor {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    threshold: usize,
}

impl Compactor {
    /// `after` runs on the compactor thread after each compaction it does (the app writes
    /// identity snapshots there, off the ingest path).
    pub fn start(
        store: Arc<Store>,
        threshold: usize,
        after: Box<dyn Fn(&Store) + Send>,
    ) -> Compactor {
        // One pending wake-up is enough: a compaction takes everything waiting.
        let (wake, rx) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || {
                for () in rx {
                    // A failed compaction poisons the store, so the next ingest reports it.
                    match store.compact() {
                        Ok(_) => after(&store),
                        Err(e) => tracing::error!("background compaction failed: {e}"),
                    }
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Compactor {
            wake: Some(wake),
            thread: Some(thread),
            threshold,
        }
    }

    /// A compactor that never runs: a reader's app does not write.
    pub fn idle() -> Compactor {
        Compactor {
            wake: None,
            thread: None,
            threshold: usize::MAX,
        }
    }

    pub fn after_ingest(&self, store: &Store) -> Result<(), StoreError> {
        let waiting = store.uncompacted_events();
        if waiting >= self.threshold.saturating_mul(2) {
            store.compact()?;
        } else if waiting >= self.threshold {
            if let Some(wake) = &self.wake {
                match wake.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    Err(TrySendError::Disconnected(())) => {
                        tracing::error!("the compactor thread has stopped; compacting inline");
                        store.compact()?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
