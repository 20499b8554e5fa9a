//! This process's side of the click journal: the segment it appends to,
//! and what it has answered but not yet applied, under one
//! `std::sync::Mutex`.
//!
//! [`Journal::append`] is the redirect's whole cost of counting: in one
//! critical section it writes the click's record to the segment
//! (`write(2)` of 20 bytes into the page cache: a few microseconds, so it
//! runs on the async worker, and a `std` mutex is right, as in mini-redis's
//! `db.rs`: it is never held across an `.await`), adds the click to the
//! aggregate `(link_id, day) → clicks` and moves the segment's end. Only
//! then is the `302` answered. The record survives a `kill -9` of the
//! process (the page cache is the kernel's); the aggregate is only this
//! process's shortcut to the counts, recounted from the file whenever it
//! cannot be trusted (`applier.rs`).
//!
//! [`Journal::take_batch`] hands the applier the aggregate and the end it
//! reaches, and starts a fresh aggregate; when the segment has grown past
//! [`ROTATE_BYTES`] it also opens the next segment, so the batch taken is
//! the old segment's last.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::NaiveDate;

use super::record::{self, ClickRecord, RECORD_BYTES};
use super::segment::LockedSegment;
use crate::db::clicks::DayCount;

/// Past this size a segment takes no more clicks: the next one is opened,
/// and the old one is removed once its last batch is applied. A few MiB, so
/// an adopter reads little and a rotation is rare (200,000 clicks). Waiting
/// for a moment when everything is applied instead would never come under
/// steady clicks.
pub const ROTATE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a click could not be journaled; it is not counted, and its redirect
/// is answered `503`.
#[derive(Debug)]
pub enum AppendError {
    /// `CLICKS_JOURNAL_MAX_BYTES` are journaled and not applied yet.
    Full,
    /// The write failed (`ENOSPC` …); the file was cut back to its last
    /// whole record.
    Write(io::Error),
}

/// Clicks answered and not yet applied, as the applier takes them.
#[derive(Debug)]
pub struct Batch {
    pub segment: Arc<LockedSegment>,
    /// The offset the batch starts at: the end of the batch before it.
    pub start: u64,
    /// The segment's end when the batch was taken: its clicks are those
    /// between `start` and here.
    pub end: u64,
    pub counts: Vec<DayCount>,
    /// The segment's last batch: once applied, the segment is removed.
    pub last: bool,
}

/// The live part, under the mutex.
#[derive(Debug, Default)]
struct Live {
    /// `None` once the last batch was taken for a stop.
    segment: Option<Arc<LockedSegment>>,
    /// Where the last whole record ends.
    end: u64,
    /// Where the aggregate starts: the end when the last batch was taken.
    taken: u64,
    aggregate: HashMap<(i64, NaiveDate), i64>,
    /// Bytes journaled and not yet applied, across segments.
    unapplied: u64,
    /// The number of the next segment this process opens.
    next_number: u64,
}

/// This process's journal.
#[derive(Debug)]
pub struct Journal {
    pub dir: PathBuf,
    /// The database this process counts into, as headers name it.
    pub identity: String,
    /// `<host>-<pid>-<random>`: its segments are `<process>-<n>.clicks`.
    process: String,
    max_unapplied: u64,
    live: Mutex<Live>,
}

impl Journal {
    /// Opens this process's first segment in `dir`.
    pub fn open(
        dir: PathBuf,
        identity: String,
        process: String,
        max_unapplied: u64,
    ) -> io::Result<Self> {
        let journal = Self {
            dir,
            identity,
            process,
            max_unapplied,
            live: Mutex::new(Live::default()),
        };
        {
            let mut live = journal.lock();
            journal.open_next(&mut live)?;
        }
        Ok(journal)
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next segment the one appended to.
    fn open_next(&self, live: &mut Live) -> io::Result<()> {
        let name = format!("{}-{}", self.process, live.next_number);
        let segment = LockedSegment::create(&self.dir, &name, &record::header(&self.identity))?;
        live.next_number += 1;
        live.end = segment.records_start;
        live.taken = segment.records_start;
        live.segment = Some(Arc::new(segment));
        Ok(())
    }

    /// Journals one click: only once this returned `Ok` may its redirect
    /// be answered.
    pub fn append(&self, click: &ClickRecord) -> Result<(), AppendError> {
        let bytes = click.encode();
        let mut live = self.lock();
        if live.unapplied + RECORD_BYTES as u64 > self.max_unapplied {
            return Err(AppendError::Full);
        }
        let Some(segment) = &live.segment else {
            return Err(AppendError::Write(io::Error::other(
                "the journal is closed",
            )));
        };
        segment
            .append(&bytes, live.end)
            .map_err(AppendError::Write)?;
        live.end += RECORD_BYTES as u64;
        live.unapplied += RECORD_BYTES as u64;
        *live
            .aggregate
            .entry((click.link_id, click.day))
            .or_default() += 1;
        Ok(())
    }

    /// The clicks answered since the last batch, with the end they reach;
    /// `None` when there are none and the segment need not rotate.
    /// `closing`: the last batch before a stop (the segment is removed once
    /// it is applied, and nothing is journaled after it).
    pub fn take_batch(&self, closing: bool) -> Option<Batch> {
        let mut live = self.lock();
        let segment = Arc::clone(live.segment.as_ref()?);
        let rotate = !closing && live.end >= ROTATE_BYTES;
        if live.aggregate.is_empty() && !rotate && !closing {
            return None;
        }
        let counts = record::day_counts(
            std::mem::take(&mut live.aggregate)
                .into_iter()
                .map(|((link_id, day), n)| (link_id, day, n)),
        );
        let batch = Batch {
            segment,
            start: live.taken,
            end: live.end,
            counts,
            last: closing,
        };
        live.taken = live.end;
        if closing {
            live.segment = None;
            return Some(batch);
        }
        if rotate {
            match self.open_next(&mut live) {
                Ok(()) => {
                    return Some(Batch {
                        last: true,
                        ..batch
                    });
                }
                Err(e) => tracing::warn!(
                    "cannot open the next click journal segment in {}, appending to {} still: {e}",
                    self.dir.display(),
                    batch.segment.path.display()
                ),
            }
        }
        Some(batch)
    }

    /// A batch was applied: its bytes no longer count against the bound.
    pub fn applied(&self, batch: &Batch) {
        let mut live = self.lock();
        live.unapplied = live.unapplied.saturating_sub(batch.end - batch.start);
    }

    /// Whether `name` is one of this process's segments (adoption skips
    /// them without trying their lock).
    pub fn is_own(&self, name: &str) -> bool {
        name.strip_prefix(&self.process)
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    fn journal(max_unapplied: u64) -> Journal {
        let dir = std::env::temp_dir().join(format!(
            "linkhub-journal-test-{}",
            hex::encode(rand::rng().random::<[u8; 8]>())
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Journal::open(
            dir,
            "db port 5432".into(),
            "host-1-ab".into(),
            max_unapplied,
        )
        .expect("opened")
    }

    fn click(link_id: i64) -> ClickRecord {
        ClickRecord {
            link_id,
            day: NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date"),
            seen: None,
        }
    }

    #[test]
    fn a_batch_holds_the_clicks_since_the_one_before() {
        let journal = journal(1 << 20);
        for link_id in [1, 2, 1] {
            journal.append(&click(link_id)).expect("appended");
        }
        let batch = journal.take_batch(false).expect("a batch");
        let start = batch.segment.records_start;
        assert_eq!((batch.start, batch.end), (start, start + 60));
        assert_eq!(
            batch.counts.iter().map(|c| c.clicks).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!(!batch.last);
        assert!(journal.take_batch(false).is_none(), "nothing since");
        journal.append(&click(3)).expect("appended");
        let next = journal.take_batch(false).expect("a batch");
        assert_eq!((next.start, next.end), (start + 60, start + 80));
        let _ = std::fs::remove_dir_all(&journal.dir);
    }

    #[test]
    fn past_its_bound_the_journal_refuses_until_a_batch_is_applied() {
        let journal = journal(2 * RECORD_BYTES as u64);
        journal.append(&click(1)).expect("appended");
        journal.append(&click(1)).expect("appended");
        assert!(matches!(journal.append(&click(1)), Err(AppendError::Full)));
        let batch = journal.take_batch(false).expect("a batch");
        assert!(
            matches!(journal.append(&click(1)), Err(AppendError::Full)),
            "taken is not applied"
        );
        journal.applied(&batch);
        journal.append(&click(1)).expect("room again");
        let _ = std::fs::remove_dir_all(&journal.dir);
    }

    #[test]
    fn a_segment_past_its_size_takes_its_last_batch_and_the_next_one_goes_on() {
        let journal = journal(u64::MAX);
        while journal.lock().end < ROTATE_BYTES {
            journal.append(&click(1)).expect("appended");
        }
        let batch = journal.take_batch(false).expect("a batch");
        assert!(batch.last, "the old segment's last batch");
        let appended = (batch.end - batch.start) / RECORD_BYTES as u64;
        assert_eq!(batch.counts[0].clicks as u64, appended);
        journal
            .append(&click(2))
            .expect("appended to the next segment");
        let next = journal.take_batch(false).expect("a batch");
        assert_ne!(next.segment.name, batch.segment.name);
        assert_eq!(next.counts[0].link_id, 2);
        let _ = std::fs::remove_dir_all(&journal.dir);
    }

    #[test]
    fn the_closing_batch_is_the_last_and_nothing_is_journaled_after_it() {
        let journal = journal(1 << 20);
        journal.append(&click(1)).expect("appended");
        let batch = journal.take_batch(true).expect("the closing batch");
        assert!(batch.last);
        assert!(matches!(
            journal.append(&click(1)),
            Err(AppendError::Write(_))
        ));
        assert!(journal.take_batch(true).is_none());
        let _ = std::fs::remove_dir_all(&journal.dir);
    }
}
