//! maskstore's own tests only: runs each parser that reads input from the network, a
//! store or an operator under random and mutated input (`proptest` on the stable
//! toolchain), and checks three things on every case: no panic, no hang, and a peak
//! allocation bounded in proportion to the input's size.
//!
//! A crate's parser test builds a [`Parsers`] run, calls [`Parsers::check`] once per
//! parser and ends with [`Parsers::finish`], which prints one summary line
//! (`parsers[backends]: 14 parsers, 28,000 cases, 0 failures (seed 0x…)`) and fails the
//! test naming each parser that failed with its shrunk input.
//!
//! - Seed: `MASKSTORE_FUZZ_SEED` (decimal or `0x` hex); else [`CI_SEED`] under `CI=true`,
//!   else a new one, always printed before the first case so a failure can be replayed,
//!   even one that aborts the process (a stack overflow, an allocation past memory).
//! - Cases per parser: `MASKSTORE_FUZZ_CASES`, else [`CI_CASES`] (`scripts/soak` raises it).
//!
//! This crate's global allocator (from `allocation-counter`) counts per thread, so a test
//! binary that links it measures each case alone even while other tests run beside it.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

pub use proptest;

/// The seed every CI run uses, so CI is reproducible; override with `MASKSTORE_FUZZ_SEED`.
pub const CI_SEED: u64 = 0x6d61_736b_7374_6f72;
/// Cases per parser when `MASKSTORE_FUZZ_CASES` is unset.
pub const CI_CASES: u32 = 2_000;
/// The allocation every case may make whatever its input: a parser's fixed tables,
/// an error's message, a small `HeaderMap`.
pub const FIXED_ALLOWANCE: u64 = 256 * 1024;
/// Bytes a parser may hold at its peak per byte of input, above [`FIXED_ALLOWANCE`]:
/// a parsed copy, its decoded form and an error quoting it fit; an allocation sized by a
/// number inside the input (a length, a count) does not.
pub const PER_INPUT_BYTE: u64 = 64;
/// A case that takes this long is a hang (every parser here runs in microseconds).
const HANG: Duration = Duration::from_secs(60);

/// One crate's run over its parsers.
pub struct Parsers {
    crate_name: &'static str,
    seed: u64,
    cases: u32,
    checked: usize,
    total_cases: u64,
    failures: Vec<String>,
    /// How long one case may run before it counts as a hang ([`HANG`]).
    hang: Duration,
}

impl Parsers {
    /// A run with the seed and case count the environment asks for.
    pub fn new(crate_name: &'static str) -> Parsers {
        Parsers {
            crate_name,
            seed: seed(),
            cases: cases(),
            checked: 0,
            total_cases: 0,
            failures: Vec::new(),
            hang: HANG,
        }
    }

    /// Runs `property` on `cases` values of `strategy`. A panic, a case running past the
    /// hang limit, or an `Err` fails the parser; proptest shrinks the input first.
    pub fn check<S>(&mut self, name: &str, strategy: S, property: fn(S::Value) -> Verdict)
    where
        S: Strategy + Send + 'static,
        S::Value: Send,
    {
        if self.checked == 0 {
            // Before the first case: a parser that overflows its stack or asks for more
            // memory than there is aborts the process, and the summary never comes.
            let _ = writeln!(
                std::io::stderr(),
                "parsers[{}]: seed {:#x}, {} cases per parser (MASKSTORE_FUZZ_SEED replays it)",
                self.crate_name,
                self.seed,
                self.cases
            );
        }
        let (seed, cases, hang) = (self.seed, self.cases, self.hang);
        let (beat, beats) = mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let mut runner = runner(seed, cases);
            runner.run(&strategy, |value| {
                let _ = beat.send(());
                property(value)
            })
        });
        self.checked += 1;
        self.total_cases += u64::from(cases);
        loop {
            match beats.recv_timeout(hang) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.failures
                        .push(format!("{name}: one case ran past {hang:?} (a hang)"));
                    return;
                }
            }
        }
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => self.failures.push(format!("{name}: {failure}")),
            Err(_) => self
                .failures
                .push(format!("{name}: the runner itself panicked")),
        }
    }

    /// Prints the summary line and fails naming every parser that failed.
    pub fn finish(self) {
        let line = format!(
            "parsers[{}]: {} parsers, {} cases, {} failures (seed {:#x}; MASKSTORE_FUZZ_SEED replays it)",
            self.crate_name,
            self.checked,
            thousands(self.total_cases),
            self.failures.len(),
            self.seed,
        );
        // Straight to the process's stderr, past libtest's capture, so CI's log shows the
        // line beside the contract lines without --nocapture.
        let _ = writeln!(std::io::stderr(), "{line}");
        assert!(
            self.failures.is_empty(),
            "{line}\n{}",
            self.failures.join("\n")
        );
    }
}

/// What a property returns for one case.
pub type Verdict = Result<(), TestCaseError>;

/// Runs `parse` on an input of `input_len` bytes and fails the case if its peak
/// allocation passed `FIXED_ALLOWANCE + PER_INPUT_BYTE × input_len`.
pub fn bounded<R>(input_len: usize, parse: impl FnOnce() -> R) -> Result<R, TestCaseError> {
    let mut out = None;
    // The panic is caught inside the measurement and raised again after it: a panic
    // unwinding through `measure` would leave its per-thread counters mid-measurement.
    let info = allocation_counter::measure(|| {
        out = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            parse,
        )));
    });
    let out = match out.expect("measure runs its closure") {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let limit = FIXED_ALLOWANCE + PER_INPUT_BYTE * input_len as u64;
    if info.bytes_max > limit {
        return Err(TestCaseError::fail(format!(
            "peak allocation {} bytes for {input_len} bytes of input (limit {limit})",
            info.bytes_max
        )));
    }
    Ok(out)
}

/// Fails the case with `message` unless `holds`.
pub fn ensure(holds: bool, message: impl FnOnce() -> String) -> Verdict {
    if holds {
        Ok(())
    } else {
        Err(TestCaseError::fail(message()))
    }
}

/// Byte strings made from `samples` (real answers, real files) by 1 to 8 mutations each:
/// a byte flipped, bytes inserted or deleted, a span duplicated, or a token that parsers
/// find hard (`<`, `&#0;`, `%zz`, `=?utf-8?`, a 20-digit number, a quote, NUL) inserted.
pub fn mutated(samples: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> + Send {
    let edits = prop::collection::vec((0u8..6, any::<prop::sample::Index>(), any::<u8>()), 1..8);
    (prop::sample::select(samples), edits).prop_map(|(sample, edits)| {
        let mut bytes = sample.to_vec();
        for (kind, at, byte) in edits {
            edit(&mut bytes, kind, at, byte);
        }
        bytes
    })
}

/// [`mutated`] as text (invalid UTF-8 replaced), for parsers that take `&str`.
pub fn mutated_text(samples: &'static [&'static [u8]]) -> impl Strategy<Value = String> + Send {
    mutated(samples).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

const TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"</",
    b"&#0;",
    b"&amp;",
    b"&#x110000;",
    b"%",
    b"%zz",
    b"%00",
    b"=?utf-8?q?",
    b"=?UTF-8?B?",
    b"?=",
    b"99999999999999999999",
    b"-",
    b"\"",
    b",",
    b"\0",
    b"\r\n",
    b"\\",
    b"\xef\xbb\xbf",
    b"\xe2\x80\xae",
    b"W/",
    b"*",
    b"bytes=",
    b"[",
    b"]",
    b"{",
    b"}",
];

fn edit(bytes: &mut Vec<u8>, kind: u8, at: prop::sample::Index, byte: u8) {
    let pos = at.index(bytes.len() + 1);
    match kind {
        0 if pos < bytes.len() => bytes[pos] ^= byte | 1,
        1 => bytes.insert(pos, byte),
        2 if pos < bytes.len() => {
            let end = (pos + 1 + usize::from(byte % 32)).min(bytes.len());
            bytes.drain(pos..end);
        }
        3 if pos < bytes.len() => {
            let end = (pos + 1 + usize::from(byte)).min(bytes.len());
            let span = bytes[pos..end].to_vec();
            bytes.splice(pos..pos, span);
        }
        _ => {
            let token = TOKENS[usize::from(byte) % TOKENS.len()];
            bytes.splice(pos..pos, token.iter().copied());
        }
    }
}

/// A proptest runner of `cases` cases whose values follow from `seed` alone.
pub fn runner(seed: u64, cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// The seed of this run: `MASKSTORE_FUZZ_SEED`, else [`CI_SEED`] under `CI=true`, else a new one.
pub fn seed() -> u64 {
    if let Ok(text) = std::env::var("MASKSTORE_FUZZ_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|_| {
            panic!("MASKSTORE_FUZZ_SEED={text:?} is no number; give decimal or 0x-hex")
        });
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return CI_SEED;
    }
    rand_seed()
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn cases() -> u32 {
    match std::env::var("MASKSTORE_FUZZ_CASES") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("MASKSTORE_FUZZ_CASES={text:?} is no count; give a whole number")
        }),
        Err(_) => CI_CASES,
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_sized_by_the_input_is_within_bounds_and_one_sized_by_a_number_is_not() {
        assert!(bounded(1000, || vec![0u8; 1000].len()).is_ok());
        let greedy = bounded(10, || vec![0u8; 10 << 20].len());
        assert!(greedy.unwrap_err().to_string().contains("peak allocation"));
    }

    #[test]
    fn a_panicking_parser_fails_the_run_naming_it() {
        let mut run = Parsers::new("self");
        run.cases = 50;
        run.check("never-empty", mutated(&[b"abc"]), |bytes| {
            assert!(bytes.len() < 4, "grew");
            Ok(())
        });
        assert_eq!(run.failures.len(), 1, "{:?}", run.failures);
        assert!(run.failures[0].starts_with("never-empty:"));
    }

    #[test]
    fn a_parser_that_never_returns_fails_the_run_as_a_hang() {
        let mut run = Parsers::new("self");
        run.cases = 50;
        // The limit only decides how soon an endless case is reported, never whether.
        run.hang = Duration::from_millis(300);
        run.check("endless", mutated(&[b"abc"]), |bytes| {
            if bytes.len() > 3 {
                loop {
                    std::thread::park();
                }
            }
            Ok(())
        });
        run.check("quick", mutated(&[b"abc"]), |_| Ok(()));
        assert_eq!(run.failures.len(), 1, "{:?}", run.failures);
        assert!(
            run.failures[0].starts_with("endless:") && run.failures[0].contains("a hang"),
            "{:?}",
            run.failures
        );
    }

    /// Set in the environment of this test binary started again to abort mid-run.
    const ABORTING: &str = "MASKSTORE_FUZZKIT_ABORTING";

    #[test]
    fn a_run_that_aborts_has_printed_its_seed_first() {
        // A parser that overflows its stack or asks for more memory than there is aborts
        // the process: no panic to catch, no summary line; only what was printed before.
        if std::env::var_os(ABORTING).is_some() {
            let mut run = Parsers::new("aborting");
            run.seed = 0x2929;
            run.check("aborting", mutated(&[b"abc"]), |_| std::process::abort());
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "tests::a_run_that_aborts_has_printed_its_seed_first",
                "--exact",
            ])
            .env(ABORTING, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("parsers[aborting]: seed 0x2929"),
            "{stderr}"
        );
    }

    #[test]
    fn counts_are_printed_with_thousands_separators() {
        assert_eq!(thousands(28_000), "28,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
