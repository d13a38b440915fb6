//! The transfer bar on stderr (the remote cache's, or the hub's weights download): drawn once a burst of downloads or uploads has
//! lasted [`SHOW_AFTER`], so quick fetches (a record, a metrics file) stay silent, and only
//! when stderr is a terminal (indicatif hides it otherwise, so logs and tests see nothing).

use crate::remote::Remote;
use crate::remote::transfers::{Snapshot, Transfers};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a burst runs before it gets a bar.
pub(super) const SHOW_AFTER: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(100);

/// Watches the remote's counters from a thread for as long as it lives.
pub(super) struct TransferBar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TransferBar {
    /// Starts watching `remote`'s transfers (nothing to watch without a remote).
    pub(super) fn watch(remote: Option<&Remote>) -> TransferBar {
        Self::start(remote.map(|r| (r.transfers(), "remote")))
    }

    /// Starts watching the downloads of pretrained weights from the hub.
    pub(super) fn watch_hub() -> TransferBar {
        Self::start(Some((crate::hub::transfers(), "hub")))
    }

    fn start(source: Option<(Arc<Transfers>, &'static str)>) -> TransferBar {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = source.map(|(transfers, name)| {
            let stop = stop.clone();
            std::thread::spawn(move || draw_until(&transfers, name, &stop))
        });
        TransferBar { stop, thread }
    }
}

impl Drop for TransferBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw_until(transfers: &Transfers, name: &str, stop: &AtomicBool) {
    let mut bar: Option<indicatif::ProgressBar> = None;
    while !stop.load(Ordering::Relaxed) {
        let s = transfers.snapshot();
        if shown(&s) {
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {msg} {bytes_per_sec}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_prefix(format!("{name}: {}", if s.uploading { "uploading" } else { "fetching" }));
                b
            });
            b.set_length(s.bytes_expected.max(s.bytes_done));
            b.set_position(s.bytes_done);
            b.set_message(message(&s));
        } else if s.busy_for.is_none()
            && let Some(b) = bar.take()
        {
            b.finish_and_clear();
        }
        std::thread::sleep(TICK);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// Whether the burst has lasted long enough to be drawn.
fn shown(s: &Snapshot) -> bool {
    s.busy_for.is_some_and(|d| d >= SHOW_AFTER)
}

/// The words after the bar: files done out of those started.
fn message(s: &Snapshot) -> String {
    format!("{}/{} files", s.files_done, s.files_started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(busy_ms: Option<u64>) -> Snapshot {
        Snapshot {
            busy_for: busy_ms.map(Duration::from_millis),
            files_started: 12,
            files_done: 5,
            bytes_expected: 1000,
            bytes_done: 400,
            uploading: false,
        }
    }

    #[test]
    fn a_bar_shows_only_once_a_burst_has_lasted_two_seconds() {
        assert!(!shown(&snapshot(None)));
        assert!(!shown(&snapshot(Some(1999))));
        assert!(shown(&snapshot(Some(2000))));
        assert_eq!(message(&snapshot(Some(2500))), "5/12 files");
    }
}
