//! Error-rate alarms over a sliding window, as the deployment guide asks
//! (4xx > 5 %, 5xx > 1 %).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ErrorKind;

/// How an operation ended, in the terms of S3's monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It worked.
    Success,
    /// The request was refused for its own sake (not found, precondition, permission,
    /// credentials, invalid key): the 4xx family.
    ClientError,
    /// The backend failed (I/O, timeout, 5xx): the 5xx family.
    ServerError,
}

impl Outcome {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
        }
    }

    /// The outcome of a failure of this kind: derived from the one classification of
    /// errors, [`crate::Error::kind`].
    pub fn of_kind(kind: ErrorKind) -> Outcome {
        if kind.is_client_error() {
            Outcome::ClientError
        } else {
            Outcome::ServerError
        }
    }
}

/// Operations by outcome over the monitor's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Operations that worked.
    pub success: u64,
    /// Operations refused for the request's own sake (4xx).
    pub client_error: u64,
    /// Operations the backend failed (5xx).
    pub server_error: u64,
}

impl OutcomeCounts {
    /// All operations.
    pub fn total(&self) -> u64 {
        self.success + self.client_error + self.server_error
    }
}

/// The alarm thresholds and the window they are measured over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmSettings {
    /// Alarm when client errors exceed this share of requests (0.05).
    pub client_error_rate: f64,
    /// Alarm when server errors exceed this share of requests (0.01).
    pub server_error_rate: f64,
    /// The sliding window.
    pub window: Duration,
    /// No alarm below this many requests in the window (one failure at start-up is not a rate).
    pub min_requests: u64,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            client_error_rate: 0.05,
            server_error_rate: 0.01,
            window: Duration::from_secs(300),
            min_requests: 20,
        }
    }
}

/// An alarm that is firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// `client_error_rate` or `server_error_rate`.
    pub name: &'static str,
    /// The measured share of requests.
    pub rate: f64,
    /// The threshold it exceeds.
    pub threshold: f64,
    /// Requests in the window.
    pub requests: u64,
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:.1}% > {:.1}% over the last {} requests",
            self.name,
            self.rate * 100.0,
            self.threshold * 100.0,
            self.requests
        )
    }
}

/// Counts of outcomes in one-second buckets over the window: memory stays bounded whatever
/// the request rate.
#[derive(Debug)]
pub struct Monitor {
    settings: AlarmSettings,
    started: Instant,
    buckets: Mutex<Vec<Bucket>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    counts: [u64; 3],
}

impl Monitor {
    /// A monitor with these settings.
    pub fn new(settings: AlarmSettings) -> Monitor {
        let slots = settings.window.as_secs().max(1) as usize;
        Monitor {
            settings,
            started: Instant::now(),
            buckets: Mutex::new(vec![Bucket::default(); slots]),
        }
    }

    /// The settings.
    pub fn settings(&self) -> AlarmSettings {
        self.settings
    }

    /// Records one operation's outcome now.
    pub fn record(&self, outcome: Outcome) {
        self.record_at(outcome, Instant::now());
    }

    /// Records one operation's outcome at `at`.
    pub fn record_at(&self, outcome: Outcome, at: Instant) {
        let second = at.saturating_duration_since(self.started).as_secs();
        let mut buckets = self.buckets.lock().expect("monitor lock");
        let slots = buckets.len();
        let bucket = &mut buckets[(second as usize) % slots];
        if bucket.second != second {
            *bucket = Bucket {
                second,
                counts: [0; 3],
            };
        }
        bucket.counts[outcome as usize] += 1;
    }

    /// Operations recorded over the window ending now, by outcome.
    pub fn counts(&self) -> OutcomeCounts {
        let totals = self.totals_at(Instant::now());
        OutcomeCounts {
            success: totals[Outcome::Success as usize],
            client_error: totals[Outcome::ClientError as usize],
            server_error: totals[Outcome::ServerError as usize],
        }
    }

    /// Totals per outcome over the window ending at `at`.
    fn totals_at(&self, at: Instant) -> [u64; 3] {
        let now = at.saturating_duration_since(self.started).as_secs();
        let buckets = self.buckets.lock().expect("monitor lock");
        let window = buckets.len() as u64;
        let mut totals = [0u64; 3];
        for bucket in buckets
            .iter()
            .filter(|b| b.second + window > now && b.second <= now)
        {
            for (total, count) in totals.iter_mut().zip(bucket.counts) {
                *total += count;
            }
        }
        totals
    }

    /// The alarms firing now.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.alarms_at(Instant::now())
    }

    /// The alarms firing at `at` (for tests).
    pub fn alarms_at(&self, at: Instant) -> Vec<Alarm> {
        let totals = self.totals_at(at);
        let requests: u64 = totals.iter().sum();
        if requests < self.settings.min_requests || requests == 0 {
            return Vec::new();
        }
        let mut alarms = Vec::new();
        for (name, index, threshold) in [
            (
                "client_error_rate",
                Outcome::ClientError as usize,
                self.settings.client_error_rate,
            ),
            (
                "server_error_rate",
                Outcome::ServerError as usize,
                self.settings.server_error_rate,
            ),
        ] {
            let rate = totals[index] as f64 / requests as f64;
            if rate > threshold {
                alarms.push(Alarm {
                    name,
                    rate,
                    threshold,
                    requests,
                });
            }
        }
        alarms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor() -> Monitor {
        Monitor::new(AlarmSettings {
            window: Duration::from_secs(60),
            min_requests: 10,
            ..AlarmSettings::default()
        })
    }

    #[test]
    fn few_requests_never_alarm() {
        let m = monitor();
        for _ in 0..9 {
            m.record(Outcome::ServerError);
        }
        assert!(m.alarms().is_empty());
    }

    #[test]
    fn rates_above_the_thresholds_alarm_and_name_themselves() {
        let m = monitor();
        let now = Instant::now();
        for _ in 0..90 {
            m.record_at(Outcome::Success, now);
        }
        for _ in 0..8 {
            m.record_at(Outcome::ClientError, now);
        }
        for _ in 0..2 {
            m.record_at(Outcome::ServerError, now);
        }
        let alarms = m.alarms_at(now);
        let names: Vec<_> = alarms.iter().map(|a| a.name).collect();
        assert_eq!(names, ["client_error_rate", "server_error_rate"]);
        assert!(
            alarms[0].to_string().contains("8.0% > 5.0%"),
            "{}",
            alarms[0]
        );
    }

    #[test]
    fn rates_at_the_thresholds_do_not_alarm() {
        let m = monitor();
        let now = Instant::now();
        for _ in 0..95 {
            m.record_at(Outcome::Success, now);
        }
        for _ in 0..5 {
            m.record_at(Outcome::ClientError, now);
        }
        assert!(m.alarms_at(now).is_empty());
    }

    #[test]
    fn errors_older_than_the_window_are_forgotten() {
        let m = monitor();
        let start = Instant::now();
        for _ in 0..50 {
            m.record_at(Outcome::ServerError, start);
        }
        assert_eq!(m.alarms_at(start).len(), 1);
        let later = start + Duration::from_secs(61);
        for _ in 0..50 {
            m.record_at(Outcome::Success, later);
        }
        assert!(m.alarms_at(later).is_empty());
    }
}
