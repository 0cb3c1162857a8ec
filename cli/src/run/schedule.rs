//! When `run` does what. Each job (backup, forget, verify) is due `every` after its previous
//! start, on the monotonic clock: a wall clock that jumps moves nothing. A job that failed is
//! due again after a backoff that doubles from [`RETRY_FIRST`] up to its interval, with equal
//! jitter (so that many sidecars behind one failed store do not retry in step).
//!
//! With `--cron`, backups are due at the expression's next time (UTC) instead, worked out
//! again after each run; a failure is retried with the same backoff, never later than the
//! next time. Waits are still on the monotonic clock: a wall clock that jumps while `run`
//! waits moves the run by the jump, and the time after it is worked out anew.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff};
use chrono::Utc;
use croner::Cron;
use esbackup_engine::equal_jitter;
use tokio::time::Instant;

/// The first retry of a failed job waits about this long.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);

/// One job's timetable.
#[derive(Debug)]
pub struct Timetable {
    /// `None`: the job is off (an interval of 0).
    every: Option<Duration>,
    next: Instant,
    /// The delays after consecutive failures (reset by a success).
    backoff: Option<ExponentialBackoff>,
    /// `--cron`: due at its times rather than `every` after the last start.
    cron: Option<Cron>,
}

/// The time from now until `cron`'s next time (`None`: it never matches).
fn until_next(cron: &Cron) -> Option<Duration> {
    let now = Utc::now();
    let next = cron.find_next_occurrence(&now, false).ok()?;
    Some((next - now).to_std().unwrap_or(Duration::ZERO))
}

/// The time between `cron`'s next two times (`None`: it never matches): its interval for the
/// backoff's cap and `--healthy-within`'s default.
pub fn cron_interval(cron: &Cron) -> Option<Duration> {
    let first = cron.find_next_occurrence(&Utc::now(), false).ok()?;
    let second = cron.find_next_occurrence(&first, false).ok()?;
    (second - first).to_std().ok()
}

impl Timetable {
    /// A job every `every` (0: never), first due at `first`.
    pub fn new(every: Duration, first: Instant) -> Timetable {
        Timetable {
            every: (!every.is_zero()).then_some(every),
            next: first,
            backoff: None,
            cron: None,
        }
    }

    /// A job at `cron`'s times (never, when it never matches).
    pub fn on_cron(cron: Cron) -> Timetable {
        let every = cron_interval(&cron).unwrap_or(Duration::ZERO);
        let next = Instant::now() + until_next(&cron).unwrap_or(Duration::ZERO);
        Timetable {
            every: (!every.is_zero()).then_some(every),
            next,
            backoff: None,
            cron: Some(cron),
        }
    }

    /// When the job is due after a run that started at `started`: `every` after it, or the
    /// cron's next time.
    fn after(&self, started: Instant, every: Duration) -> Instant {
        match self.cron.as_ref().and_then(until_next) {
            Some(wait) => Instant::now() + wait,
            None => started + every,
        }
    }

    /// When the job is due next (`None`: never).
    pub fn next(&self) -> Option<Instant> {
        self.every.map(|_| self.next)
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next().is_some_and(|next| next <= now)
    }

    /// The run that started at `started` succeeded: the next is due an interval after it.
    pub fn succeeded(&mut self, started: Instant) {
        self.backoff = None;
        if let Some(every) = self.every {
            self.next = self.after(started, every);
        }
    }

    /// The run failed now: the next is due after the backoff, never later than an interval
    /// after `started`. Returns the wait.
    pub fn failed(&mut self, started: Instant) -> Duration {
        let Some(every) = self.every else {
            return Duration::ZERO;
        };
        let backoff = self.backoff.get_or_insert_with(|| {
            equal_jitter(RETRY_FIRST.min(every), every)
                .without_max_times()
                .build()
        });
        let now = Instant::now();
        let wait = backoff.next().unwrap_or(every);
        self.next = (now + wait).min(self.after(started, every)).max(now);
        self.next - now
    }

    /// Changes the interval (a reloaded config); the next run is due an interval after `last`
    /// start, or at once when that is past.
    pub fn set_every(&mut self, every: Duration, last: Option<Instant>) {
        let was = self.every;
        self.every = (!every.is_zero()).then_some(every);
        if was != self.every {
            self.next = last.map_or_else(Instant::now, |l| l + every);
        }
    }
}

/// The share of the objects a scheduled verify reads back: `n/m`, cycling through all `m`
/// over `read_data_over` (`None`: no read-back).
pub fn read_share(
    read_data_over: Duration,
    verify_every: Duration,
    round: u64,
) -> Option<(u32, u32)> {
    if read_data_over.is_zero() || verify_every.is_zero() {
        return None;
    }
    let shares = read_data_over.as_secs_f64() / verify_every.as_secs_f64();
    let m = (shares.ceil() as u64).clamp(1, u32::MAX as u64);
    Some(((round % m) as u32 + 1, m as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_job_is_due_an_interval_after_its_start_and_a_failure_retries_sooner() {
        let start = Instant::now();
        let every = Duration::from_secs(300);
        let mut job = Timetable::new(every, start);
        assert!(job.is_due(start));
        job.succeeded(start);
        assert_eq!(job.next(), Some(start + every));
        let waits: Vec<Duration> = (0..8).map(|_| job.failed(start + every)).collect();
        assert!(
            waits[0] >= RETRY_FIRST / 2 && waits[0] <= RETRY_FIRST,
            "{waits:?}"
        );
        assert!(
            waits.iter().all(|w| *w <= every),
            "never more than an interval: {waits:?}"
        );
        assert!(waits[7] > waits[0], "the backoff grows: {waits:?}");
        job.succeeded(start + every);
        assert_eq!(
            job.next(),
            Some(start + 2 * every),
            "a success resets the backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_of_zero_turns_a_job_off() {
        let job = Timetable::new(Duration::ZERO, Instant::now());
        assert_eq!(job.next(), None);
        assert!(!job.is_due(Instant::now() + Duration::from_secs(1 << 30)));
    }

    #[tokio::test]
    async fn a_cron_job_is_due_at_its_next_time_and_its_interval_is_the_gap_between_times() {
        let every_minute = crate::args::parse_cron_for_tests("* * * * *");
        assert_eq!(cron_interval(&every_minute), Some(Duration::from_secs(60)));
        let job = Timetable::on_cron(every_minute);
        let wait = job.next().unwrap() - Instant::now();
        assert!(wait <= Duration::from_secs(60), "the next minute: {wait:?}");
        let six_hourly = crate::args::parse_cron_for_tests("0 */6 * * *");
        assert_eq!(
            cron_interval(&six_hourly),
            Some(Duration::from_secs(6 * 3600))
        );
    }

    #[test]
    fn verifies_read_back_every_share_once_over_the_period() {
        let day = Duration::from_secs(86_400);
        let shares: Vec<_> = (0..8)
            .map(|r| read_share(30 * day, day, r).unwrap())
            .collect();
        assert_eq!(shares[0], (1, 30));
        assert_eq!(shares[7], (8, 30));
        assert_eq!(
            read_share(30 * day, day, 30),
            Some((1, 30)),
            "then again from the first"
        );
        assert_eq!(read_share(Duration::ZERO, day, 3), None);
        assert_eq!(
            read_share(day / 2, day, 0),
            Some((1, 1)),
            "a period shorter than the interval reads all"
        );
    }
}
