//! `scan --sort time`: rendered alerts in input order → the same alerts in event-time order,
//! in bounded memory.
//!
//! Alerts are held as rendered bytes with their time and input position until a run reaches
//! its bound; the run is then sorted and written to a temporary file. At the end the runs are
//! merged, one alert of each at a time, through a min-heap (a k-way merge), so memory holds
//! one run's worth plus a read buffer per spilled run, whatever the number of alerts. Alerts
//! of the same time keep their input order; an alert without an event time (a damaged file's)
//! comes after every timed one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// The default bound of one run: 64 MiB of rendered alerts and their keys.
pub const RUN_BYTES: usize = 64 << 20;

/// What one held alert costs beyond its bytes: its key and the vector's own fields.
const ENTRY_OVERHEAD: usize = 40;

/// Where an alert sorts: its event time (Unix nanoseconds; none sorts last), then its place
/// in the input.
type Key = (i64, u64);

/// Rendered alerts, sorted by event time when [`Sorter::finish`] writes them.
pub struct Sorter {
    /// Held bytes at which a run is sorted and spilled.
    bound: usize,
    /// Alerts of the run being gathered.
    run: Vec<(Key, Vec<u8>)>,
    /// Their bytes, as counted against `bound`.
    held: usize,
    /// Spilled runs, each sorted, rewound when merged.
    spilled: Vec<File>,
    /// The next input position.
    next: u64,
    /// Why a run could not be spilled; alerts after it are dropped, and [`Sorter::finish`]
    /// fails with it.
    failed: Option<io::Error>,
}

impl Sorter {
    /// A sorter that spills a run once it holds `bound` bytes.
    pub fn new(bound: usize) -> Sorter {
        Sorter {
            bound: bound.max(1),
            run: Vec::new(),
            held: 0,
            spilled: Vec::new(),
            next: 0,
            failed: None,
        }
    }

    /// Adds one alert rendered as `bytes`, of event time `time` (RFC 3339, as CloudTrail
    /// writes it), after every alert added before it.
    pub fn push(&mut self, time: Option<&str>, bytes: Vec<u8>) {
        if self.failed.is_some() {
            return;
        }
        let key = (nanos(time), self.next);
        self.next += 1;
        self.held += bytes.len() + ENTRY_OVERHEAD;
        self.run.push((key, bytes));
        if self.held >= self.bound
            && let Err(e) = self.spill()
        {
            // Memory stays bounded: what cannot be spilled is not kept either.
            self.run = Vec::new();
            self.failed = Some(e);
        }
    }

    /// Runs written to temporary files so far.
    pub fn runs_spilled(&self) -> usize {
        self.spilled.len()
    }

    /// Sorts the run being gathered and writes it to an anonymous temporary file (deleted
    /// when closed, whatever happens).
    fn spill(&mut self) -> io::Result<()> {
        self.run.sort_unstable_by_key(|(key, _)| *key);
        let mut file = BufWriter::new(tempfile::tempfile()?);
        for ((time, seq), bytes) in self.run.drain(..) {
            file.write_all(&time.to_le_bytes())?;
            file.write_all(&seq.to_le_bytes())?;
            file.write_all(&(bytes.len() as u64).to_le_bytes())?;
            file.write_all(&bytes)?;
        }
        let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        self.spilled.push(file);
        self.held = 0;
        Ok(())
    }

    /// Writes every alert to `out` in event-time order, merging the spilled runs with the
    /// one in memory. Fails when a run could not be spilled or read back; a closed `out`
    /// (piped into `head`) ends the merge quietly.
    pub fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.run.sort_unstable_by_key(|(key, _)| *key);
        let mut sources: Vec<Run> = self
            .spilled
            .into_iter()
            .map(|f| Run::File(BufReader::with_capacity(64 * 1024, f)))
            .collect();
        sources.push(Run::Memory(self.run.into_iter()));
        // The heap holds the next alert of each run: the smallest key comes out first, and
        // keys are unique, so the order is the same however the runs were cut.
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some((key, bytes)) = source.next()? {
                heap.push(Reverse((key, i, bytes)));
            }
        }
        while let Some(Reverse((_, i, bytes))) = heap.pop() {
            if out.write_all(&bytes).is_err() {
                return Ok(());
            }
            if let Some((key, bytes)) = sources[i].next()? {
                heap.push(Reverse((key, i, bytes)));
            }
        }
        let _ = out.flush();
        Ok(())
    }
}

/// One sorted run being merged.
enum Run {
    File(BufReader<File>),
    Memory(std::vec::IntoIter<(Key, Vec<u8>)>),
}

impl Run {
    fn next(&mut self) -> io::Result<Option<(Key, Vec<u8>)>> {
        match self {
            Run::Memory(entries) => Ok(entries.next()),
            Run::File(file) => {
                let mut head = [0u8; 24];
                match file.read_exact(&mut head) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e),
                }
                let word =
                    |i: usize| <[u8; 8]>::try_from(&head[i * 8..i * 8 + 8]).expect("8 bytes of 24");
                let (time, seq) = (i64::from_le_bytes(word(0)), u64::from_le_bytes(word(1)));
                let len = usize::try_from(u64::from_le_bytes(word(2)))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let mut bytes = vec![0; len];
                file.read_exact(&mut bytes)?;
                Ok(Some(((time, seq), bytes)))
            }
        }
    }
}

/// An event time as Unix nanoseconds; a missing or unreadable one sorts after every other.
fn nanos(time: Option<&str>) -> i64 {
    time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alerts as (time, text): some out of order, some tied, one without a time.
    fn alerts() -> Vec<(Option<String>, String)> {
        let mut alerts = Vec::new();
        for i in 0..200u32 {
            // Minutes run backwards and repeat every 7 alerts: many ties, each in its
            // input order.
            let minute = 59 - (i % 7) * 8;
            let time = format!("2026-11-20T10:{minute:02}:00Z");
            alerts.push((Some(time), format!("alert {i} at minute {minute}\n")));
        }
        alerts.insert(50, (None, "damaged file\n".to_owned()));
        // An offset time sorts by its instant: 11:30+01:00 is 10:30Z.
        alerts.push((
            Some("2026-11-20T11:30:00+01:00".to_owned()),
            "offset\n".to_owned(),
        ));
        alerts
    }

    fn sorted(bound: usize) -> (String, usize) {
        let mut sorter = Sorter::new(bound);
        for (time, text) in alerts() {
            sorter.push(time.as_deref(), text.into_bytes());
        }
        let runs = sorter.runs_spilled();
        let mut out = Vec::new();
        sorter.finish(&mut out).expect("finish");
        (String::from_utf8(out).expect("utf8"), runs)
    }

    #[test]
    fn alerts_come_out_in_time_order_ties_in_input_order() {
        let (text, runs) = sorted(RUN_BYTES);
        assert_eq!(runs, 0, "all in memory");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 202);
        assert_eq!(lines.last(), Some(&"damaged file"), "no time: last");
        // The earliest minute (11) first, its alerts in input order: 6, 13, 20, ...
        assert!(lines[0].starts_with("alert 6 at minute 11"), "{lines:?}");
        assert!(lines[1].starts_with("alert 13 at minute 11"), "{lines:?}");
        let minute = |l: &str| -> u32 {
            if l == "offset" {
                return 30;
            }
            l.rsplit(' ')
                .next()
                .and_then(|m| m.parse().ok())
                .expect("a minute")
        };
        let timed = &lines[..201];
        assert!(timed.windows(2).all(|w| minute(w[0]) <= minute(w[1])));
        for w in timed.windows(2) {
            let index = |l: &str| -> u32 {
                l.split(' ')
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            if minute(w[0]) == minute(w[1]) && w[0] != "offset" && w[1] != "offset" {
                assert!(index(w[0]) < index(w[1]), "ties in input order: {w:?}");
            }
        }
    }

    #[test]
    fn spilled_runs_merge_to_the_same_output() {
        let (in_memory, _) = sorted(RUN_BYTES);
        // About 60 bytes an alert: a run every few alerts, dozens of runs.
        for bound in [1, 100, 1_000, 4_000] {
            let (merged, runs) = sorted(bound);
            assert!(runs >= 2, "bound {bound}: {runs} runs");
            assert_eq!(merged, in_memory, "bound {bound}");
        }
    }
}
