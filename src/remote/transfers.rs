//! What the remote is moving right now, for a progress display: bytes and files done out of
//! those started, over the current burst of transfers. Only counters live here; the CLI
//! decides whether and how to draw them (a bar, once a burst has lasted 2 s).
//!
//! A burst starts when the first transfer starts while none is in flight and ends when the
//! last one finishes; each burst counts from zero, so a bar shows one fetch or upload, not
//! the whole command.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The counters a [`super::Remote`] updates as it downloads and uploads.
#[derive(Debug, Default)]
pub struct Transfers {
    state: Mutex<Burst>,
}

#[derive(Debug, Default, Clone)]
struct Burst {
    since: Option<Instant>,
    in_flight: usize,
    files_started: u64,
    files_done: u64,
    bytes_expected: u64,
    bytes_done: u64,
    uploading: bool,
}

/// The state of the current burst, for a display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// How long the current burst has lasted; `None` when nothing is in flight.
    pub busy_for: Option<Duration>,
    pub files_started: u64,
    pub files_done: u64,
    /// The sizes of the files started (what the record or manifest says they are).
    pub bytes_expected: u64,
    pub bytes_done: u64,
    /// Whether the burst sends (push, `--remote-upload`) rather than fetches.
    pub uploading: bool,
}

/// One transfer in flight; it counts as finished when dropped, whether it succeeded or not.
pub struct InFlight<'a> {
    transfers: &'a Transfers,
}

impl Transfers {
    fn burst(&self) -> std::sync::MutexGuard<'_, Burst> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a transfer of `size` bytes (as far as is known beforehand).
    pub fn start(&self, size: u64, uploading: bool) -> InFlight<'_> {
        let mut b = self.burst();
        if b.in_flight == 0 {
            *b = Burst { since: Some(Instant::now()), uploading, ..Burst::default() };
        }
        b.in_flight += 1;
        b.files_started += 1;
        b.bytes_expected += size;
        InFlight { transfers: self }
    }

    pub fn snapshot(&self) -> Snapshot {
        let b = self.burst();
        Snapshot {
            busy_for: b.since.filter(|_| b.in_flight > 0).map(|s| s.elapsed()),
            files_started: b.files_started,
            files_done: b.files_done,
            bytes_expected: b.bytes_expected,
            bytes_done: b.bytes_done,
            uploading: b.uploading,
        }
    }
}

impl InFlight<'_> {
    /// `n` more bytes went over the wire.
    pub fn advance(&self, n: u64) {
        self.transfers.burst().bytes_done += n;
    }

    /// `n` bytes counted before must be fetched again (a resumed download that restarts).
    pub fn advance_back(&self, n: u64) {
        let mut b = self.transfers.burst();
        b.bytes_done = b.bytes_done.saturating_sub(n);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut b = self.transfers.burst();
        b.in_flight -= 1;
        b.files_done += 1;
        if b.in_flight == 0 {
            b.since = None;
        }
    }
}

/// A reader that reports what passes through it (an upload's body).
pub struct Counting<'a, R> {
    pub inner: R,
    pub transfer: &'a InFlight<'a>,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_counts_its_transfers_and_ends_with_the_last() {
        let t = Transfers::default();
        assert_eq!(t.snapshot().busy_for, None);
        let a = t.start(100, false);
        let b = t.start(50, false);
        a.advance(100);
        drop(a);
        let s = t.snapshot();
        assert!(s.busy_for.is_some(), "one transfer is still in flight");
        assert_eq!((s.files_started, s.files_done, s.bytes_expected, s.bytes_done), (2, 1, 150, 100));
        b.advance(20);
        drop(b);
        let s = t.snapshot();
        assert_eq!(s.busy_for, None, "the burst ended with its last transfer");
        assert_eq!((s.files_done, s.bytes_done), (2, 120), "a failed transfer still finishes");
        // The next burst counts from zero.
        let c = t.start(7, true);
        let s = t.snapshot();
        assert_eq!((s.files_started, s.files_done, s.bytes_expected, s.bytes_done, s.uploading), (1, 0, 7, 0, true));
        drop(c);
    }

    #[test]
    fn an_upload_body_is_counted_as_it_is_read() {
        let t = Transfers::default();
        let f = t.start(11, true);
        let mut body = Counting { inner: &b"hello world"[..], transfer: &f };
        let mut out = Vec::new();
        std::io::copy(&mut body, &mut out).unwrap();
        assert_eq!(t.snapshot().bytes_done, 11);
    }
}
