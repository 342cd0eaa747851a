//! The deployment guide's alarms over a sliding window: 4xx rate > 5 %, 5xx rate > 1 %,
//! and a surge in request count (the rate over the last `surge_window` against the rate
//! over the rest of the window).
//!
//! Time comes from a [`Clock`], so tests drive hours of traffic in milliseconds with a
//! [`ManualClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

    /// The outcome of an HTTP answer with this status, for requests the gateway answers
    /// without an operation (a refused signature, a size or concurrency limit).
    pub fn of_status(status: u16) -> Outcome {
        match status {
            500.. => Outcome::ServerError,
            400.. => Outcome::ClientError,
            _ => Outcome::Success,
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

/// Where a [`Monitor`] reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told (for tests).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the moment it is made.
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.elapsed_nanos
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
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
    /// Surge alarm when the recent request rate exceeds this many times the baseline (3).
    pub surge_factor: f64,
    /// No surge alarm below this many requests per second (1).
    pub surge_min_rate: f64,
    /// The recent part of the window compared with the rest, the baseline (60 s); at most
    /// half of `window`.
    pub surge_window: Duration,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            client_error_rate: 0.05,
            server_error_rate: 0.01,
            window: Duration::from_secs(300),
            min_requests: 20,
            surge_factor: 3.0,
            surge_min_rate: 1.0,
            surge_window: Duration::from_secs(60),
        }
    }
}

impl AlarmSettings {
    /// The settings of `[monitoring]`.
    pub fn from_config(monitoring: &maskstore_core::config::MonitoringConfig) -> AlarmSettings {
        AlarmSettings {
            client_error_rate: monitoring.client_error_rate_alarm,
            server_error_rate: monitoring.server_error_rate_alarm,
            window: Duration::from_secs(monitoring.alarm_window_secs),
            min_requests: monitoring.alarm_min_requests,
            surge_factor: monitoring.surge_factor,
            surge_min_rate: monitoring.surge_min_rate,
            surge_window: Duration::from_secs(monitoring.surge_window_secs),
        }
    }
}

/// The request rates the surge alarm compares, in requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRates {
    /// Over the last `surge_window`.
    pub recent: f64,
    /// Over the rest of the window before it; `None` until the monitor has seen a baseline
    /// at least as long as `surge_window` (a start-up is not a surge).
    pub baseline: Option<f64>,
    /// Requests in the last `surge_window`.
    pub recent_requests: u64,
}

/// An alarm that is firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// `client_error_rate`, `server_error_rate` or `request_surge`.
    pub name: &'static str,
    /// The measured share of requests; for `request_surge`, requests per second.
    pub rate: f64,
    /// The threshold it exceeds (for `request_surge`, `surge_factor` × the baseline).
    pub threshold: f64,
    /// Requests in the window (for `request_surge`, in the recent part).
    pub requests: u64,
    /// For `request_surge`: the baseline rate, requests per second.
    pub baseline: Option<f64>,
}

/// The name of the request-surge alarm.
pub const REQUEST_SURGE: &str = "request_surge";

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(baseline) = self.baseline {
            return write!(
                f,
                "{} {:.2}/s > {:.2}/s ({} requests recently; baseline {:.2}/s)",
                self.name, self.rate, self.threshold, self.requests, baseline
            );
        }
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
    /// `None`: the system clock, whose reading a caller may share ([`Monitor::record_observed`]).
    clock: Option<Arc<dyn Clock>>,
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
        Monitor::build(settings, None)
    }

    /// A monitor reading the time from `clock`.
    pub fn with_clock(settings: AlarmSettings, clock: Arc<dyn Clock>) -> Monitor {
        Monitor::build(settings, Some(clock))
    }

    fn build(settings: AlarmSettings, clock: Option<Arc<dyn Clock>>) -> Monitor {
        // Fixed at construction: one bucket per second of the window, whatever the rate.
        let slots = settings.window.as_secs().max(2) as usize;
        Monitor {
            settings,
            started: clock.as_ref().map_or_else(Instant::now, |c| c.now()),
            clock,
            buckets: Mutex::new(vec![Bucket::default(); slots]),
        }
    }

    fn now(&self) -> Instant {
        self.clock.as_ref().map_or_else(Instant::now, |c| c.now())
    }

    /// Records one operation's outcome, `observed` being the system clock's reading the
    /// caller already took (a monitor with its own [`Clock`] reads that instead).
    pub fn record_observed(&self, outcome: Outcome, observed: Instant) {
        let at = match &self.clock {
            None => observed,
            Some(clock) => clock.now(),
        };
        self.record_at(outcome, at);
    }

    /// The settings.
    pub fn settings(&self) -> AlarmSettings {
        self.settings
    }

    /// Records one operation's outcome now.
    pub fn record(&self, outcome: Outcome) {
        self.record_at(outcome, self.now());
    }

    /// Records one operation's outcome at `at`.
    pub fn record_at(&self, outcome: Outcome, at: Instant) {
        let second = at.saturating_duration_since(self.started).as_secs();
        let mut buckets = self.buckets.lock().expect("monitor lock");
        let slots = buckets.len();
        let bucket = &mut buckets[(second as usize) % slots];
        if bucket.second > second {
            // Older than the window (an observation delayed past it): counting it would
            // wipe the newer second this slot holds.
            return;
        }
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
        let totals = self.totals_at(self.now());
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

    /// The request rates the surge alarm compares, now.
    pub fn request_rates(&self) -> RequestRates {
        self.request_rates_at(self.now())
    }

    /// The request rates the surge alarm compares, at `at`.
    pub fn request_rates_at(&self, at: Instant) -> RequestRates {
        let now = at.saturating_duration_since(self.started).as_secs();
        let buckets = self.buckets.lock().expect("monitor lock");
        let window = buckets.len() as u64;
        let recent_secs = self.settings.surge_window.as_secs().clamp(1, window / 2);
        // Whole seconds of history before the recent part, at most the rest of the window.
        let baseline_secs = (window - recent_secs).min((now + 1).saturating_sub(recent_secs));
        let (mut recent, mut baseline) = (0u64, 0u64);
        for bucket in buckets.iter().filter(|b| b.second <= now) {
            let age = now - bucket.second;
            let count: u64 = bucket.counts.iter().sum();
            if age < recent_secs {
                recent += count;
            } else if age < recent_secs + baseline_secs {
                baseline += count;
            }
        }
        RequestRates {
            recent: recent as f64 / recent_secs as f64,
            baseline: (baseline_secs >= recent_secs)
                .then(|| baseline as f64 / baseline_secs as f64),
            recent_requests: recent,
        }
    }

    /// The alarms firing now.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.alarms_at(self.now())
    }

    /// The alarms firing at `at` (for tests).
    pub fn alarms_at(&self, at: Instant) -> Vec<Alarm> {
        let mut alarms = self.error_alarms_at(at);
        let rates = self.request_rates_at(at);
        if let Some(baseline) = rates.baseline {
            let threshold = self.settings.surge_factor * baseline;
            if rates.recent >= self.settings.surge_min_rate && rates.recent > threshold {
                alarms.push(Alarm {
                    name: REQUEST_SURGE,
                    rate: rates.recent,
                    threshold,
                    requests: rates.recent_requests,
                    baseline: Some(baseline),
                });
            }
        }
        alarms
    }

    /// The alarm rules, one line each, as `check` and `config show` list them.
    pub fn rules(&self) -> Vec<String> {
        let s = &self.settings;
        let window = s.window.as_secs();
        vec![
            format!(
                "client_error_rate: 4xx share > {:.1}% over {window} s (from {} requests)",
                s.client_error_rate * 100.0,
                s.min_requests
            ),
            format!(
                "server_error_rate: 5xx share > {:.1}% over {window} s (from {} requests)",
                s.server_error_rate * 100.0,
                s.min_requests
            ),
            format!(
                "{REQUEST_SURGE}: requests/s over {} s > {} × the rate over the {} s before (from {}/s)",
                s.surge_window.as_secs(),
                s.surge_factor,
                window.saturating_sub(s.surge_window.as_secs()),
                s.surge_min_rate
            ),
        ]
    }

    fn error_alarms_at(&self, at: Instant) -> Vec<Alarm> {
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
                    baseline: None,
                });
            }
        }
        alarms
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn statuses_map_to_their_family() {
        assert_eq!(Outcome::of_status(200), Outcome::Success);
        assert_eq!(Outcome::of_status(304), Outcome::Success);
        assert_eq!(Outcome::of_status(403), Outcome::ClientError);
        assert_eq!(Outcome::of_status(414), Outcome::ClientError);
        assert_eq!(Outcome::of_status(503), Outcome::ServerError);
    }

    use super::*;

    fn monitor() -> Monitor {
        Monitor::new(AlarmSettings {
            window: Duration::from_secs(60),
            min_requests: 10,
            // These tests are about error rates; the surge rule has its own.
            surge_min_rate: 1e12,
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

    #[test]
    fn an_observation_older_than_the_window_does_not_wipe_a_newer_second() {
        let m = monitor();
        let start = Instant::now();
        for _ in 0..30 {
            m.record_at(Outcome::ServerError, at(start, 65));
        }
        // Taken 60 s earlier and recorded late: it maps to the same slot.
        m.record_at(Outcome::Success, at(start, 5));
        assert_eq!(m.totals_at(at(start, 65)), [0, 0, 30]);
        assert_eq!(m.alarms_at(at(start, 65))[0].name, "server_error_rate");
    }

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    /// `per_sec` successes in each second from `from` to `to` (exclusive).
    fn steady(m: &Monitor, start: Instant, from: u64, to: u64, per_sec: u64) {
        for s in from..to {
            for _ in 0..per_sec {
                m.record_at(Outcome::Success, at(start, s));
            }
        }
    }

    #[test]
    fn a_surge_above_the_factor_alarms_and_names_the_rates() {
        let m = Monitor::new(AlarmSettings::default());
        let start = m.started;
        steady(&m, start, 0, 240, 2);
        steady(&m, start, 240, 300, 7);
        let alarms = m.alarms_at(at(start, 299));
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].name, REQUEST_SURGE);
        assert!((alarms[0].rate - 7.0).abs() < 1e-9);
        assert_eq!(alarms[0].baseline, Some(2.0));
        assert!(
            alarms[0].to_string().contains("7.00/s > 6.00/s"),
            "{}",
            alarms[0]
        );
    }

    #[test]
    fn a_rise_at_the_factor_or_below_the_minimum_rate_does_not_alarm() {
        let m = Monitor::new(AlarmSettings::default());
        let start = m.started;
        steady(&m, start, 0, 240, 2);
        steady(&m, start, 240, 300, 6);
        assert!(m.alarms_at(at(start, 299)).is_empty());

        // From 1 request per 10 s to 1 per 2 s: five-fold, but below 1/s.
        let quiet = Monitor::new(AlarmSettings::default());
        for s in (0..240).step_by(10) {
            quiet.record_at(Outcome::Success, at(start, s));
        }
        for s in (240..300).step_by(2) {
            quiet.record_at(Outcome::Success, at(start, s));
        }
        let rates = quiet.request_rates_at(at(start, 299));
        assert!(rates.recent < 1.0 && rates.recent > 0.4, "{rates:?}");
        assert!(quiet.alarms_at(at(start, 299)).is_empty());
    }

    #[test]
    fn no_surge_without_a_baseline_as_long_as_the_recent_window() {
        let m = Monitor::new(AlarmSettings::default());
        let start = m.started;
        steady(&m, start, 0, 100, 50);
        // 100 s of history: 60 recent, 40 before; not yet a baseline.
        assert_eq!(m.request_rates_at(at(start, 99)).baseline, None);
        assert!(m.alarms_at(at(start, 99)).is_empty());
        steady(&m, start, 100, 120, 50);
        assert_eq!(m.request_rates_at(at(start, 119)).baseline, Some(50.0));
    }

    #[test]
    fn memory_is_one_bucket_per_second_of_the_window_at_any_rate() {
        let m = monitor();
        let start = m.started;
        steady(&m, start, 0, 3, 200_000);
        assert_eq!(m.buckets.lock().unwrap().len(), 60);
        assert_eq!(m.request_rates_at(at(start, 2)).recent_requests, 600_000);
    }

    #[test]
    fn a_manual_clock_drives_record_and_alarms() {
        let clock = Arc::new(ManualClock::new());
        let m = Monitor::with_clock(AlarmSettings::default(), clock.clone());
        for _ in 0..240 {
            m.record(Outcome::Success);
            clock.advance(Duration::from_secs(1));
        }
        for _ in 0..60 {
            for _ in 0..5 {
                m.record(Outcome::Success);
            }
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(m.alarms()[0].name, REQUEST_SURGE);
        assert_eq!(m.rules().len(), 3);
        assert!(m.rules()[2].starts_with("request_surge"), "{:?}", m.rules());
    }
}
