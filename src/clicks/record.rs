//! The bytes of a click journal segment: a header that names the database
//! the segment's clicks belong to, then one fixed-size record per answered
//! click. Owns the encoding and the one way a segment is read back, so the
//! writer (`journal.rs`) and the readers (`applier.rs` when it recounts,
//! `adopt.rs`) cannot disagree on where a record starts.
//!
//! A record is 20 bytes, little-endian: the link id (8), the UTC day as days
//! from the common era (4), the visitor's HyperLogLog register (2) and rank
//! (1; 0 when the click had no visitor observation), a zero byte, and the
//! CRC32 of those 16 bytes (4). A fixed size lets a reader find every
//! record's start from the header alone; the CRC tells a record written
//! whole from a torn tail (a process killed inside `write(2)` leaves at most
//! a short record, a power loss can leave garbage) and reading stops at the
//! first one that fails.
//!
//! The header is the magic `LHCLICK1`, the length of its text (2), the text
//! (the database's identity, `db::clicks::database_identity`), and the CRC32
//! of all of it (4).

use chrono::{Datelike, NaiveDate};

use super::hll::Observation;
use crate::db::clicks::DayCount;

/// The bytes of one record.
pub const RECORD_BYTES: usize = 20;

const MAGIC: &[u8; 8] = b"LHCLICK1";

/// One answered click, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickRecord {
    pub link_id: i64,
    pub day: NaiveDate,
    /// Where its visitor landed in the link-day's sketch, when known.
    pub seen: Option<Observation>,
}

impl ClickRecord {
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut bytes = [0u8; RECORD_BYTES];
        bytes[0..8].copy_from_slice(&self.link_id.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.day.num_days_from_ce().to_le_bytes());
        if let Some(seen) = self.seen {
            bytes[12..14].copy_from_slice(&seen.register.to_le_bytes());
            bytes[14] = seen.rank;
        }
        let crc = crc32fast::hash(&bytes[..16]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// The record in `bytes`, unless its CRC fails or its day is no date.
    fn decode(bytes: &[u8; RECORD_BYTES]) -> Option<Self> {
        let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
        if crc32fast::hash(&bytes[..16]) != crc {
            return None;
        }
        let link_id = i64::from_le_bytes(bytes[0..8].try_into().ok()?);
        let days = i32::from_le_bytes(bytes[8..12].try_into().ok()?);
        let day = NaiveDate::from_num_days_from_ce_opt(days)?;
        let register = u16::from_le_bytes(bytes[12..14].try_into().ok()?);
        let rank = bytes[14];
        Some(Self {
            link_id,
            day,
            seen: (rank > 0).then_some(Observation { register, rank }),
        })
    }
}

/// A segment's header for the database `identity`.
pub fn header(identity: &str) -> Vec<u8> {
    let text = identity.as_bytes();
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    let mut bytes = Vec::with_capacity(MAGIC.len() + 2 + usize::from(len) + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&text[..usize::from(len)]);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// A segment as read back.
#[derive(Debug)]
pub struct ReadSegment {
    /// The database its header names.
    pub identity: String,
    /// Every whole record, with the offset it starts at.
    pub records: Vec<(u64, ClickRecord)>,
    /// Where the last whole record ends: the segment's valid end.
    pub valid_end: u64,
    /// Bytes past the valid end (a torn or corrupt tail), left out.
    pub ignored: u64,
}

impl ReadSegment {
    /// Reads `bytes`, a whole segment file; `None` when its header is not
    /// whole (a segment is renamed into place only after its header is
    /// written, so that is a file that is no segment).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text_len = usize::from(u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?));
        let header_len = 10 + text_len + 4;
        let head = bytes.get(..header_len)?;
        if &head[..8] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(head[header_len - 4..].try_into().ok()?);
        if crc32fast::hash(&head[..header_len - 4]) != crc {
            return None;
        }
        let identity = String::from_utf8_lossy(&head[10..10 + text_len]).into_owned();
        let mut records = Vec::new();
        let mut offset = header_len;
        while let Some(chunk) = bytes.get(offset..offset + RECORD_BYTES) {
            let Some(record) = chunk.try_into().ok().and_then(ClickRecord::decode) else {
                break;
            };
            records.push((offset as u64, record));
            offset += RECORD_BYTES;
        }
        Some(Self {
            identity,
            records,
            valid_end: offset as u64,
            ignored: (bytes.len() - offset) as u64,
        })
    }

    /// The counts of the records that start at or after `from` (a byte
    /// offset; `-1` or the header's end: every record) and end by `to`.
    pub fn counts_between(&self, from: i64, to: u64) -> Vec<DayCount> {
        day_counts(
            self.records
                .iter()
                .filter(|(offset, _)| {
                    i64::try_from(*offset).is_ok_and(|o| o >= from)
                        && *offset + RECORD_BYTES as u64 <= to
                })
                .map(|(_, record)| (record.link_id, record.day, 1)),
        )
    }
}

/// Clicks per link and day, each link-day once, in key order.
pub fn day_counts(clicks: impl Iterator<Item = (i64, NaiveDate, i64)>) -> Vec<DayCount> {
    let mut counts = std::collections::BTreeMap::<(i64, NaiveDate), i64>::new();
    for (link_id, day, n) in clicks {
        *counts.entry((link_id, day)).or_default() += n;
    }
    counts
        .into_iter()
        .map(|((link_id, day), clicks)| DayCount {
            link_id,
            day,
            clicks,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date")
    }

    fn segment_of(records: &[ClickRecord]) -> Vec<u8> {
        let mut bytes = header("linkhub port 5432");
        for record in records {
            bytes.extend_from_slice(&record.encode());
        }
        bytes
    }

    fn click(link_id: i64) -> ClickRecord {
        ClickRecord {
            link_id,
            day: day(),
            seen: Some(Observation {
                register: 513,
                rank: 3,
            }),
        }
    }

    #[test]
    fn a_segment_reads_back_as_written() {
        let plain = ClickRecord {
            seen: None,
            ..click(2)
        };
        let bytes = segment_of(&[click(1), plain, click(1)]);
        let read = ReadSegment::parse(&bytes).expect("a segment");
        assert_eq!(read.identity, "linkhub port 5432");
        let records: Vec<ClickRecord> = read.records.iter().map(|(_, r)| *r).collect();
        assert_eq!(records, vec![click(1), plain, click(1)]);
        assert_eq!(read.valid_end, bytes.len() as u64);
        assert_eq!(read.ignored, 0);
    }

    #[test]
    fn a_torn_tail_is_left_out() {
        let mut bytes = segment_of(&[click(1), click(2)]);
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&click(3).encode()[..11]);
        let read = ReadSegment::parse(&bytes).expect("a segment");
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.valid_end, whole);
        assert_eq!(read.ignored, 11);
    }

    #[test]
    fn reading_stops_at_the_first_record_whose_crc_fails() {
        let mut bytes = segment_of(&[click(1), click(2), click(3)]);
        let second = bytes.len() - 2 * RECORD_BYTES;
        bytes[second] ^= 0xff;
        let read = ReadSegment::parse(&bytes).expect("a segment");
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.valid_end, second as u64);
    }

    #[test]
    fn a_file_without_a_whole_header_is_no_segment() {
        let bytes = header("linkhub port 5432");
        assert!(ReadSegment::parse(&bytes[..bytes.len() - 1]).is_none());
        assert!(ReadSegment::parse(b"LHCLICK1").is_none());
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(ReadSegment::parse(&other).is_none());
        assert!(ReadSegment::parse(&bytes).is_some());
    }

    #[test]
    fn counts_between_offsets_take_the_records_within_them() {
        let bytes = segment_of(&[click(1), click(2), click(1)]);
        let read = ReadSegment::parse(&bytes).expect("a segment");
        let all = read.counts_between(-1, read.valid_end);
        assert_eq!(
            all,
            vec![
                DayCount {
                    link_id: 1,
                    day: day(),
                    clicks: 2
                },
                DayCount {
                    link_id: 2,
                    day: day(),
                    clicks: 1
                },
            ]
        );
        let (second, third) = (read.records[1].0, read.records[2].0);
        assert_eq!(read.counts_between(second as i64, read.valid_end).len(), 2);
        assert_eq!(
            read.counts_between(second as i64, third),
            vec![DayCount {
                link_id: 2,
                day: day(),
                clicks: 1
            }]
        );
        assert_eq!(
            read.counts_between(read.valid_end as i64, read.valid_end),
            vec![]
        );
    }
}
