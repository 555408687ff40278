//! What a failed write means for the next attempt: whether to try again, and when. The
//! queue consumer asks this after every attempt; in direct mode it decides only whether a
//! destination is given up (Stripe's own retries set the pace there).

use crate::config::{Config, MAX_QUEUE_DELAY_SECONDS};
use crate::time::parse_http_date;

/// Why one write did not succeed, in words safe to log and to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// `http_500`, `timeout`, `network`, `kv_write`, ...
    pub reason: String,
    /// Trying again cannot help: only a replay (after fixing the origin) tries again.
    pub give_up: bool,
    /// The least wait the destination asked for, from its `Retry-After`.
    pub retry_after_seconds: Option<u32>,
}

impl WriteFailure {
    /// A failure worth retrying with the usual backoff.
    pub fn transient(reason: &str) -> Self {
        WriteFailure {
            reason: reason.to_owned(),
            give_up: false,
            retry_after_seconds: None,
        }
    }
}

/// Judges an origin's answer. 2xx is success. A 4xx other than 408 (timeout), 409
/// (conflict, often a lock) and 429 (slow down) says the request itself is wrong, so the
/// same request will be refused again: it is given up rather than retried for days. Every
/// other answer is retried, after the `Retry-After` wait when the origin gave one.
///
/// Fails with the [`WriteFailure`] describing a non-2xx answer.
pub fn judge_origin_answer(
    status: u16,
    retry_after: Option<&str>,
    now: i64,
) -> Result<(), WriteFailure> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let give_up = (400..500).contains(&status) && !matches!(status, 408 | 409 | 429);
    Err(WriteFailure {
        reason: format!("http_{status}"),
        give_up,
        retry_after_seconds: retry_after.and_then(|value| retry_after_seconds(value, now)),
    })
}

/// Reads `Retry-After`: whole seconds, or an HTTP date. A date in the past means no wait.
pub fn retry_after_seconds(value: &str, now: i64) -> Option<u32> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(u32::try_from(seconds).unwrap_or(u32::MAX));
    }
    let at = parse_http_date(value)?;
    Some(u32::try_from((at - now).max(0)).unwrap_or(u32::MAX))
}

/// How long the queue waits before the next attempt, after `failed_attempts` failures in a
/// row: `RETRY_BASE_SECONDS` doubled per failure up to `RETRY_MAX_SECONDS`, but never
/// less than the destination's `Retry-After` and never more than Queues allows.
///
/// `spread_permille` (0-999, drawn at random by the caller) takes up to a fifth off the
/// doubled wait, so events that failed together (an origin outage) do not all come back in
/// the same second; `RETRY_MAX_SECONDS` stays the longest wait and `Retry-After` the shortest.
pub fn backoff_seconds(
    config: &Config,
    failed_attempts: u32,
    retry_after: Option<u32>,
    spread_permille: u32,
) -> u32 {
    let doublings = failed_attempts.saturating_sub(1).min(31);
    let backoff = config
        .retry_base_seconds
        .saturating_mul(1u32 << doublings)
        .min(config.retry_max_seconds);
    let spread = u64::from(backoff) * u64::from(spread_permille.min(999)) / 5000;
    let backoff = backoff - u32::try_from(spread).unwrap_or(0);
    backoff
        .max(retry_after.unwrap_or(0))
        .min(MAX_QUEUE_DELAY_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-04T12:00:00Z
    const NOW: i64 = 1_796_385_600;

    #[test]
    fn which_answers_are_given_up() {
        assert_eq!(judge_origin_answer(200, None, NOW), Ok(()));
        assert_eq!(judge_origin_answer(204, Some("9"), NOW), Ok(()));
        for (status, give_up) in [
            (400, true),
            (401, true),
            (404, true),
            (410, true),
            (422, true),
            (408, false),
            (409, false),
            (429, false),
            (500, false),
            (503, false),
            (301, false),
            (302, false),
        ] {
            let failure = judge_origin_answer(status, None, NOW).expect_err("a failure");
            assert_eq!(failure.give_up, give_up, "{status}");
            assert_eq!(failure.reason, format!("http_{status}"));
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after_seconds("120", NOW), Some(120));
        assert_eq!(retry_after_seconds(" 0 ", NOW), Some(0));
        assert_eq!(crate::time::format_rfc3339(NOW), "2026-12-04T12:00:00.000Z");
        assert_eq!(
            retry_after_seconds("Fri, 04 Dec 2026 12:01:00 GMT", NOW),
            Some(60)
        );
        assert_eq!(
            retry_after_seconds("Thu, 03 Dec 2026 12:00:00 GMT", NOW),
            Some(0)
        );
        assert_eq!(retry_after_seconds("-5", NOW), None);
        assert_eq!(retry_after_seconds("soon", NOW), None);
        let failure = judge_origin_answer(429, Some("30"), NOW).expect_err("429");
        assert_eq!(failure.retry_after_seconds, Some(30));
    }

    /// A configuration with the given retry base and cap, in seconds.
    fn retry_config(base: &str, max: &str) -> Config {
        Config::from_lookup(|name| match name {
            "RETRY_BASE_SECONDS" => Some(base.into()),
            "RETRY_MAX_SECONDS" => Some(max.into()),
            _ => None,
        })
        .expect("valid")
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_respects_retry_after() {
        let config = retry_config("10", "100");
        let waits: Vec<u32> = (1..=6)
            .map(|n| backoff_seconds(&config, n, None, 0))
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 100, 100]);
        assert_eq!(backoff_seconds(&config, 1, Some(55), 0), 55);
        assert_eq!(backoff_seconds(&config, 4, Some(55), 0), 80);
        assert_eq!(
            backoff_seconds(&config, 1, Some(u32::MAX), 0),
            MAX_QUEUE_DELAY_SECONDS
        );
        assert_eq!(backoff_seconds(&config, u32::MAX, None, 0), 100);
    }

    #[test]
    fn backoff_spreads_by_up_to_a_fifth_below_the_doubled_wait() {
        let config = retry_config("10", "1000");
        // Fourth failure: 80 s doubled, spread over 65..=80 (a fifth, less a rounding).
        let waits: Vec<u32> = [0, 250, 500, 999, 5000]
            .iter()
            .map(|&spread| backoff_seconds(&config, 4, None, spread))
            .collect();
        assert_eq!(waits, [80, 76, 72, 65, 65]);
        // At the cap the spread still applies; Retry-After stays the floor.
        assert_eq!(backoff_seconds(&config, 20, None, 999), 801);
        assert_eq!(backoff_seconds(&config, 4, Some(79), 999), 79);
        // A one-second base cannot go lower.
        let quick = retry_config("1", "21600");
        assert_eq!(backoff_seconds(&quick, 1, None, 999), 1);
    }
}
