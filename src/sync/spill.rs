//! Records too many to hold: kept in temporary files and read back, sorted by key where
//! asked (an external sort: sorted runs of a bounded length on disk, merged on reading),
//! so memory holds at most one run whatever the number of records.
//!
//! Runs on disk are merged as they accumulate ([`FAN_IN`] of a size into one larger), so
//! the files open and the buffers held stay bounded too: a few hundred whatever the
//! number of records, where one per run would reach the open-file limit (often 1,024) near
//! 16 million objects per side and hold 16 KiB of buffers per run.
//!
//! `sync` sorts both listings this way before comparing them, because a listing's order
//! is the provider's: S3, Azure and GCS list in byte order, SeaweedFS and the local
//! provider do not, and whether a listing was in order is known only at its end — too
//! late for a comparison that acted on its first half (a `--delete` of a key listed last).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The records one run holds in memory before it is sorted and written to disk: about
/// 8 MiB of listing entries.
pub const RUN_LEN: usize = 32_768;

/// Runs of one size merged into one once this many are on disk: a merge holds one file and
/// one record per run it reads, and a record is read and written once more for each level
/// (none below `FAN_IN` runs: 2 million records at [`RUN_LEN`]).
pub const FAN_IN: usize = 64;

/// A record sorted by a key, compared as bytes (S3's order).
pub trait Keyed {
    /// The key records are sorted by.
    fn sort_key(&self) -> &str;
}

/// Records written to a temporary file in the order pushed (one JSON line each), read
/// back any number of times.
///
/// The file has no name (it is unlinked as it is made, `O_TMPFILE` on Linux) and is
/// readable by its owner only: the keys of a bucket never outlive the run in the folder,
/// even when Ctrl-C or a kill stops it. One descriptor serves the writes and every read
/// (each reads at its own offset), so a merge of many runs holds one per run.
pub struct Spill<T> {
    file: Arc<File>,
    writer: BufWriter<Appender>,
    len: u64,
    records: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Spill<T> {
    /// An empty spill in the temporary folder (`TMPDIR`).
    pub fn new() -> io::Result<Spill<T>> {
        Spill::new_in(&std::env::temp_dir())
    }

    /// An empty spill in the folder `dir`.
    pub fn new_in(dir: &std::path::Path) -> io::Result<Spill<T>> {
        let file = tempfile::tempfile_in(dir)?;
        // O_TMPFILE makes it 0666 less the umask: nameless, but said plainly.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let file = Arc::new(file);
        let writer = BufWriter::new(Appender(Arc::clone(&file)));
        Ok(Spill {
            file,
            writer,
            len: 0,
            records: PhantomData,
        })
    }

    /// Appends one record.
    pub fn push(&mut self, record: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.writer, record)?;
        self.writer.write_all(b"\n")?;
        self.len += 1;
        Ok(())
    }

    /// The records pushed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records pushed so far, in that order, read from the file (which stays readable
    /// after the spill is dropped).
    pub fn read(&mut self) -> io::Result<Records<T>> {
        self.writer.flush()?;
        let at = ReadAt {
            file: Arc::clone(&self.file),
            offset: 0,
        };
        Ok(Records {
            lines: BufReader::new(at),
            line: String::new(),
            records: PhantomData,
        })
    }
}

/// Writes at the end of a spill's file (the descriptor's own offset, which readers leave
/// alone).
struct Appender(Arc<File>);

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// Reads a spill's file from an offset of its own.
struct ReadAt {
    file: Arc<File>,
    offset: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// A spill's records, read back.
pub struct Records<T> {
    lines: BufReader<ReadAt>,
    line: String,
    records: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Iterator for Records<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        self.line.clear();
        match self.lines.read_line(&mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&self.line).map_err(io::Error::other)),
            Err(e) => Some(Err(e)),
        }
    }
}

/// Sorts records pushed in any order, holding at most `run_len` of them in memory.
pub struct Sorter<T> {
    run: Vec<T>,
    run_len: usize,
    fan_in: usize,
    /// The sorted runs on disk in the order their records were pushed, each with its level
    /// (how many merges made it); levels never rise along the list.
    runs: Vec<(u32, Spill<T>)>,
    pushed: u64,
}

impl<T: Keyed + Serialize + DeserializeOwned> Sorter<T> {
    /// A sorter that writes a sorted run to disk every `run_len` records (at least 1) and
    /// merges [`FAN_IN`] runs of a level into one.
    pub fn new(run_len: usize) -> Sorter<T> {
        Sorter::with_fan_in(run_len, FAN_IN)
    }

    /// A sorter that merges `fan_in` runs of a level into one (at least 2).
    pub fn with_fan_in(run_len: usize, fan_in: usize) -> Sorter<T> {
        Sorter {
            run: Vec::new(),
            run_len: run_len.max(1),
            fan_in: fan_in.max(2),
            runs: Vec::new(),
            pushed: 0,
        }
    }

    /// Adds one record.
    pub fn push(&mut self, record: T) -> io::Result<()> {
        self.run.push(record);
        self.pushed += 1;
        if self.run.len() >= self.run_len {
            self.write_run()?;
        }
        Ok(())
    }

    /// The records pushed.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    fn write_run(&mut self) -> io::Result<()> {
        // Stable: records of one key keep the order they were pushed in.
        self.run.sort_by(|a, b| a.sort_key().cmp(b.sort_key()));
        let mut spill = Spill::new()?;
        for record in self.run.drain(..) {
            spill.push(&record)?;
        }
        self.runs.push((0, spill));
        self.merge_full_levels()
    }

    /// While the last `fan_in` runs are of one level, merges them into one of the next (as
    /// a counter carries), so at most `fan_in - 1` runs of each level stay on disk.
    fn merge_full_levels(&mut self) -> io::Result<()> {
        while self.runs.len() >= self.fan_in {
            let first = self.runs.len() - self.fan_in;
            let level = self.runs[first].0;
            if self.runs[first..].iter().any(|run| run.0 != level) {
                break;
            }
            let mut spills: Vec<Spill<T>> = self.runs.drain(first..).map(|run| run.1).collect();
            let mut merged = Spill::new()?;
            // Adjacent runs in push order, ties to the earlier: records of one key keep
            // the order they were pushed in.
            for record in merge(&mut spills)? {
                merged.push(&record?)?;
            }
            self.runs.push((level + 1, merged));
        }
        Ok(())
    }

    /// The sorted runs on disk now (each an open file until the sorter is read).
    pub fn runs_on_disk(&self) -> usize {
        self.runs.len()
    }

    /// Every record pushed, in key order (records of one key in the order pushed). Memory
    /// holds one run when nothing went to disk, else one record per run.
    pub fn sorted(mut self) -> io::Result<Sorted<T>> {
        if self.runs.is_empty() {
            self.run.sort_by(|a, b| a.sort_key().cmp(b.sort_key()));
            let held = self.run.len();
            return Ok(Sorted {
                memory: self.run.into_iter(),
                runs: Vec::new(),
                heads: BinaryHeap::new(),
                held,
            });
        }
        if !self.run.is_empty() {
            self.write_run()?;
        }
        let mut spills: Vec<Spill<T>> = self.runs.drain(..).map(|run| run.1).collect();
        merge(&mut spills)
    }

    /// The most records this sorter held in memory so far (one run at most).
    pub fn held(&self) -> usize {
        self.run.len()
    }
}

/// The records of `spills` (each sorted) in key order, ties to the earlier spill.
fn merge<T: Keyed + Serialize + DeserializeOwned>(
    spills: &mut [Spill<T>],
) -> io::Result<Sorted<T>> {
    let mut runs = Vec::with_capacity(spills.len());
    let mut heads = BinaryHeap::with_capacity(spills.len());
    for (index, spill) in spills.iter_mut().enumerate() {
        let mut records = spill.read()?;
        if let Some(record) = records.next().transpose()? {
            heads.push(Head { record, run: index });
        }
        runs.push(records);
    }
    let held = runs.len();
    Ok(Sorted {
        memory: Vec::new().into_iter(),
        runs,
        heads,
        held,
    })
}

/// A sorter's records in key order.
pub struct Sorted<T> {
    memory: std::vec::IntoIter<T>,
    runs: Vec<Records<T>>,
    heads: BinaryHeap<Head<T>>,
    held: usize,
}

impl<T> Sorted<T> {
    /// The records this merge holds in memory: the whole run when it never went to disk,
    /// else one per run on disk.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl<T: Keyed + DeserializeOwned> Iterator for Sorted<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        if self.runs.is_empty() {
            return self.memory.next().map(Ok);
        }
        let Head { record, run } = self.heads.pop()?;
        match self.runs[run].next() {
            Some(Ok(next)) => self.heads.push(Head { record: next, run }),
            Some(Err(e)) => return Some(Err(e)),
            None => {}
        }
        Some(Ok(record))
    }
}

/// The next record of one run on disk, ordered so the heap pops the smallest key first
/// (ties: the earlier run, so records of one key keep the order they were pushed in).
struct Head<T> {
    record: T,
    run: usize,
}

impl<T: Keyed> Ord for Head<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.record.sort_key(), other.run).cmp(&(self.record.sort_key(), self.run))
    }
}

impl<T: Keyed> PartialOrd for Head<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Keyed> PartialEq for Head<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Keyed> Eq for Head<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Entry(String, u32);

    impl Keyed for Entry {
        fn sort_key(&self) -> &str {
            &self.0
        }
    }

    /// 1,000 keys pushed out of order, 7 per run: read back in byte order, every one,
    /// ties in the order pushed, never more than a run (then one per run on disk) in
    /// memory. The 143 runs are merged 64 at a time: two merged runs and 15 left.
    #[test]
    fn records_come_back_in_byte_order_holding_one_run() {
        let mut sorter = Sorter::new(7);
        let mut most_held = 0;
        for i in 0..1000u32 {
            // A multiplicative shuffle, and "a.b" against "a/b" (byte order: '.' < '/').
            let n = (i * 7919) % 1000;
            let key = if n % 2 == 0 {
                format!("a/{n:04}")
            } else {
                format!("a.{n:04}")
            };
            sorter.push(Entry(key, i)).unwrap();
            most_held = most_held.max(sorter.held());
        }
        sorter.push(Entry("a/0000".into(), 1000)).unwrap();
        assert_eq!(sorter.len(), 1001);
        let runs = 1001usize.div_ceil(7);
        let sorted = sorter.sorted().unwrap();
        assert!(
            most_held <= 7 && sorted.held() == runs / FAN_IN + runs % FAN_IN,
            "{most_held}, {}",
            sorted.held()
        );
        let entries: Vec<Entry> = sorted.map(Result::unwrap).collect();
        assert_eq!(entries.len(), 1001);
        assert!(entries.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(entries[500].0, "a/0000");
        assert_eq!(
            (entries[500].1, entries[501].1),
            (0, 1000),
            "ties keep their order"
        );
    }

    /// 1,000 records (each key twice) in runs of 2 merged 3 at a time: at most 2 runs of
    /// each level on disk, 12 in all for 500 runs (one file per run before merges, 500),
    /// and the records still come back in byte order, ties in the order pushed.
    #[test]
    fn merged_runs_keep_the_files_on_disk_few_and_the_order_whole() {
        let mut sorter = Sorter::with_fan_in(2, 3);
        let mut most_runs = 0;
        for i in 0..1000u32 {
            let n = (i * 7919) % 1000;
            sorter.push(Entry(format!("k/{:03}", n / 2), i)).unwrap();
            most_runs = most_runs.max(sorter.runs_on_disk());
        }
        // 500 runs in base 3: levels 0 to 5 (3^5 = 243 ≤ 500), two of each at most.
        assert!(most_runs <= 12, "{most_runs} runs on disk at once");
        let sorted = sorter.sorted().unwrap();
        assert!(
            sorted.held() <= 12,
            "{} runs merged at the end",
            sorted.held()
        );
        let entries: Vec<Entry> = sorted.map(Result::unwrap).collect();
        assert_eq!(entries.len(), 1000);
        let in_order = |w: &[Entry]| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1);
        assert!(
            entries.windows(2).all(in_order),
            "out of order or ties swapped"
        );
        assert_eq!(
            (entries[0].0.as_str(), entries[999].0.as_str()),
            ("k/000", "k/499")
        );
    }

    #[test]
    fn a_sorter_that_never_filled_a_run_stays_in_memory() {
        let mut sorter = Sorter::new(10);
        for key in ["b", "c", "a"] {
            sorter.push(Entry(key.into(), 0)).unwrap();
        }
        let sorted = sorter.sorted().unwrap();
        let keys: Vec<String> = sorted.map(|e| e.unwrap().0).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    /// A spill is a file without a name, readable by its owner only: a run stopped by
    /// Ctrl-C or a kill leaves no listing of a bucket's keys behind in the folder.
    #[test]
    fn a_spill_leaves_no_name_behind_in_its_folder() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new_in(dir.path()).unwrap();
        spill.push(&Entry("mask/patient-7".into(), 1)).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(names.is_empty(), "{names:?}");
        spill.push(&Entry("mask/patient-8".into(), 2)).unwrap();
        let back: Vec<Entry> = spill.read().unwrap().map(Result::unwrap).collect();
        assert_eq!(
            back,
            [
                Entry("mask/patient-7".into(), 1),
                Entry("mask/patient-8".into(), 2)
            ]
        );
        let mode = spill.file.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_spill_reads_back_what_was_pushed_with_newlines_and_all() {
        let mut spill = Spill::new().unwrap();
        spill.push(&Entry("a\nb".into(), 1)).unwrap();
        spill.push(&Entry("é\\".into(), 2)).unwrap();
        let first: Vec<Entry> = spill.read().unwrap().map(Result::unwrap).collect();
        assert_eq!(first, [Entry("a\nb".into(), 1), Entry("é\\".into(), 2)]);
        assert_eq!(spill.read().unwrap().count(), 2);
    }
}
