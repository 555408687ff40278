//! The worker's settings, read once per request from a lookup function: the shell passes
//! the Worker's env, tests pass a map. Every problem is collected and reported together,
//! by setting name; no value of a secret is ever part of a message.

use crate::route::{origin_label, Routes, DEFAULT_ROUTES};
use crate::signature::{SecretProblem, SigningSecret};

pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_KV_TTL_SECONDS: u64 = 30 * 24 * 60 * 60;
/// Per attempt; Stripe itself waits only a short while for the worker's answer.
pub const DEFAULT_ORIGIN_TIMEOUT_SECONDS: u64 = 10;
/// The dedupe lease (`ledger::LEASE_MS`, 45 s) must outlast a whole attempt, whose
/// destinations are written concurrently, so one origin request may take at most this long.
pub const MAX_ORIGIN_TIMEOUT_SECONDS: u64 = 30;
/// The queue consumer's first retry waits this long; each later one twice the one before.
pub const DEFAULT_RETRY_BASE_SECONDS: u32 = 30;
/// No retry waits longer than this (6 hours) unless the origin's `Retry-After` asks for more.
pub const DEFAULT_RETRY_MAX_SECONDS: u32 = 6 * 60 * 60;
/// Cloudflare Queues delays a message by at most 12 hours.
pub const MAX_QUEUE_DELAY_SECONDS: u32 = 12 * 60 * 60;
/// The dead-letter queue named in `wrangler.toml`.
pub const DEFAULT_DEAD_LETTER_QUEUE: &str = "stripe-edge-dead-letters";
/// Shorter admin tokens are refused: they guard replaying payment events.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
/// Cloudflare KV refuses an `expirationTtl` below 60 seconds.
const MIN_KV_TTL_SECONDS: u64 = 60;

/// Names of the settings, as they appear in `wrangler.toml`, `.dev.vars` and the docs.
pub mod names {
    pub const WEBHOOK_SECRET: &str = "STRIPE_WEBHOOK_SECRET";
    pub const TOLERANCE_SECONDS: &str = "STRIPE_TOLERANCE_SECONDS";
    pub const ROUTES: &str = "ROUTES";
    pub const ORIGIN_URL: &str = "ORIGIN_URL";
    pub const FORWARD_SIGNING_SECRET: &str = "FORWARD_SIGNING_SECRET";
    pub const KV_TTL_SECONDS: &str = "KV_TTL_SECONDS";
    pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
    pub const ORIGIN_TIMEOUT_SECONDS: &str = "ORIGIN_TIMEOUT_SECONDS";
    pub const DELIVERY: &str = "DELIVERY";
    pub const RETRY_BASE_SECONDS: &str = "RETRY_BASE_SECONDS";
    pub const RETRY_MAX_SECONDS: &str = "RETRY_MAX_SECONDS";
    pub const DEAD_LETTER_QUEUE: &str = "DEAD_LETTER_QUEUE";
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    /// Every setting the worker reads, for the shell to look up.
    pub const ALL: [&str; 13] = [
        WEBHOOK_SECRET,
        TOLERANCE_SECONDS,
        ROUTES,
        ORIGIN_URL,
        FORWARD_SIGNING_SECRET,
        KV_TTL_SECONDS,
        MAX_BODY_BYTES,
        ORIGIN_TIMEOUT_SECONDS,
        DELIVERY,
        RETRY_BASE_SECONDS,
        RETRY_MAX_SECONDS,
        DEAD_LETTER_QUEUE,
        ADMIN_TOKEN,
    ];
}

/// How events reach their destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Written while Stripe waits; any failure answers 503 and Stripe retries.
    Direct,
    /// Kept and enqueued while Stripe waits; the queue consumer writes, retries and
    /// dead-letters.
    Queue,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Direct => "direct",
            DeliveryMode::Queue => "queue",
        }
    }
}

/// The bearer token of the `/admin` endpoints. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether `authorization` (the whole header value) is `Bearer <this token>`. Both
    /// sides are hashed first, so the comparison takes the same time wherever they differ.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        use sha2::{Digest, Sha256};
        // The scheme is case-insensitive (RFC 9110); the token is not.
        let presented = authorization.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        });
        let Some(presented) = presented else {
            return false;
        };
        let expected = Sha256::digest(self.0.as_bytes());
        let presented = Sha256::digest(presented.trim().as_bytes());
        expected
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Empty when `STRIPE_WEBHOOK_SECRET` is unset: deliveries then get a 500.
    pub secrets: Vec<SigningSecret>,
    pub secret_problems: Vec<SecretProblem>,
    pub tolerance_seconds: i64,
    pub max_body_bytes: usize,
    pub kv_ttl_seconds: u64,
    pub origin_timeout_seconds: u64,
    pub origin_url: Option<String>,
    pub forward_secret: Option<SigningSecret>,
    pub routes: Routes,
    pub delivery: DeliveryMode,
    pub retry_base_seconds: u32,
    pub retry_max_seconds: u32,
    pub dead_letter_queue: String,
    /// `None` turns the `/admin` endpoints off (they answer 404).
    pub admin_token: Option<AdminToken>,
    /// Things worth knowing that do not stop the worker, e.g. a skipped `origin`.
    pub notes: Vec<String>,
}

impl Config {
    /// Builds the configuration from `lookup`, which returns a setting's value or `None`.
    /// Empty values count as unset.
    ///
    /// Fails with every problem found, each naming its setting.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<String>> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();

        let (secrets, secret_problems) = match get(names::WEBHOOK_SECRET) {
            Some(raw) => SigningSecret::parse_list(&raw),
            None => (Vec::new(), Vec::new()),
        };
        let tolerance_seconds = number(
            &get,
            names::TOLERANCE_SECONDS,
            DEFAULT_TOLERANCE_SECONDS,
            0,
            &mut problems,
        );
        let max_body_bytes = number(
            &get,
            names::MAX_BODY_BYTES,
            DEFAULT_MAX_BODY_BYTES,
            1,
            &mut problems,
        );
        let origin_timeout_seconds = number(
            &get,
            names::ORIGIN_TIMEOUT_SECONDS,
            DEFAULT_ORIGIN_TIMEOUT_SECONDS,
            1,
            &mut problems,
        );
        if origin_timeout_seconds > MAX_ORIGIN_TIMEOUT_SECONDS {
            problems.push(format!(
                "{}: at most {MAX_ORIGIN_TIMEOUT_SECONDS}, so an attempt ends before its dedupe lease",
                names::ORIGIN_TIMEOUT_SECONDS
            ));
        }
        let kv_ttl_seconds = number(
            &get,
            names::KV_TTL_SECONDS,
            DEFAULT_KV_TTL_SECONDS,
            MIN_KV_TTL_SECONDS,
            &mut problems,
        );

        let delivery = match get(names::DELIVERY).as_deref().map(str::trim) {
            None | Some("direct") => DeliveryMode::Direct,
            Some("queue") => DeliveryMode::Queue,
            Some(_) => {
                problems.push(format!(
                    "{}: expected \"direct\" or \"queue\"",
                    names::DELIVERY
                ));
                DeliveryMode::Direct
            }
        };
        let retry_base_seconds = number(
            &get,
            names::RETRY_BASE_SECONDS,
            DEFAULT_RETRY_BASE_SECONDS,
            1,
            &mut problems,
        );
        let retry_max_seconds = number(
            &get,
            names::RETRY_MAX_SECONDS,
            DEFAULT_RETRY_MAX_SECONDS,
            1,
            &mut problems,
        );
        if retry_max_seconds > MAX_QUEUE_DELAY_SECONDS || retry_max_seconds < retry_base_seconds {
            problems.push(format!(
                "{}: between {} and {MAX_QUEUE_DELAY_SECONDS} (the longest delay Queues allows)",
                names::RETRY_MAX_SECONDS,
                names::RETRY_BASE_SECONDS
            ));
        }
        let dead_letter_queue = get(names::DEAD_LETTER_QUEUE)
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_DEAD_LETTER_QUEUE.to_owned());
        let admin_token = match get(names::ADMIN_TOKEN).map(|t| t.trim().to_owned()) {
            Some(token) if token.chars().count() < MIN_ADMIN_TOKEN_CHARS => {
                problems.push(format!(
                    "{}: at least {MIN_ADMIN_TOKEN_CHARS} characters",
                    names::ADMIN_TOKEN
                ));
                None
            }
            token => token.map(AdminToken),
        };

        let origin_url = get(names::ORIGIN_URL).map(|url| url.trim().to_owned());
        if let Some(url) = &origin_url {
            if let Err(problem) = origin_label(url) {
                problems.push(format!("{}: {problem}", names::ORIGIN_URL));
            }
        }
        let forward_secret = get(names::FORWARD_SIGNING_SECRET).map(|raw| SigningSecret::new(&raw));

        let routes_json = get(names::ROUTES).unwrap_or_else(|| DEFAULT_ROUTES.to_owned());
        let (routes, notes) = match Routes::parse(&routes_json, origin_url.as_deref()) {
            Ok(parsed) => parsed,
            Err(route_problems) => {
                problems.extend(
                    route_problems
                        .into_iter()
                        .map(|p| format!("{}: {p}", names::ROUTES)),
                );
                (Routes::default(), Vec::new())
            }
        };

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            secrets,
            secret_problems,
            tolerance_seconds,
            max_body_bytes,
            kv_ttl_seconds,
            origin_timeout_seconds,
            origin_url,
            forward_secret,
            routes,
            delivery,
            retry_base_seconds,
            retry_max_seconds,
            dead_letter_queue,
            admin_token,
            notes,
        })
    }
}

/// Reads a whole-number setting, falling back to `default` when unset and recording a
/// problem when it is not a number of at least `min`.
fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    min: T,
    problems: &mut Vec<String>,
) -> T
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = get(name) else {
        return default;
    };
    match raw.trim().parse::<T>() {
        Ok(value) if value >= min => value,
        _ => {
            problems.push(format!("{name}: expected a whole number of at least {min}"));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let config = config(&[]).expect("defaults are valid");
        assert!(config.secrets.is_empty());
        assert_eq!(config.tolerance_seconds, 300);
        assert_eq!(config.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(config.kv_ttl_seconds, 2_592_000);
        assert_eq!(config.routes.rules.len(), 1);
        assert_eq!(config.notes.len(), 1, "origin skipped without ORIGIN_URL");
    }

    #[test]
    fn every_problem_is_reported_by_name_without_values() {
        let problems = config(&[
            ("STRIPE_TOLERANCE_SECONDS", "-1"),
            ("MAX_BODY_BYTES", "lots"),
            ("KV_TTL_SECONDS", "10"),
            ("ORIGIN_TIMEOUT_SECONDS", "31"),
            ("ORIGIN_URL", "ftp://secret-host/"),
            ("ROUTES", "not json"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_do_not_print"),
            ("DELIVERY", "later"),
            ("RETRY_MAX_SECONDS", "86400"),
            ("ADMIN_TOKEN", "short-secret"),
        ])
        .expect_err("invalid");
        assert_eq!(problems.len(), 9, "{problems:?}");
        for (problem, name) in problems.iter().zip([
            "STRIPE_TOLERANCE_SECONDS",
            "MAX_BODY_BYTES",
            "ORIGIN_TIMEOUT_SECONDS",
            "KV_TTL_SECONDS",
            "DELIVERY",
            "RETRY_MAX_SECONDS",
            "ADMIN_TOKEN",
            "ORIGIN_URL",
            "ROUTES",
        ]) {
            assert!(problem.starts_with(name), "{problem}");
        }
        let all = problems.join(" ");
        assert!(!all.contains("whsec_do_not_print") && !all.contains("short-secret"));
    }

    #[test]
    fn values_are_read() {
        let config = config(&[
            ("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b\n"),
            ("STRIPE_TOLERANCE_SECONDS", "60"),
            ("ORIGIN_URL", " http://127.0.0.1:9/x "),
            ("FORWARD_SIGNING_SECRET", "fwd"),
            ("ROUTES", r#"[{"events":["invoice.*"],"to":["origin"]}]"#),
            ("KV_TTL_SECONDS", ""),
        ])
        .expect("valid");
        assert_eq!(config.secrets.len(), 2);
        assert_eq!(config.tolerance_seconds, 60);
        assert_eq!(config.origin_url.as_deref(), Some("http://127.0.0.1:9/x"));
        assert!(config.forward_secret.is_some());
        assert_eq!(config.kv_ttl_seconds, DEFAULT_KV_TTL_SECONDS);
        assert!(config.notes.is_empty());
        assert_eq!(config.delivery, DeliveryMode::Direct);
        assert!(config.admin_token.is_none());
    }

    #[test]
    fn queue_mode_and_the_admin_token() {
        let config = config(&[
            ("DELIVERY", "queue"),
            ("RETRY_BASE_SECONDS", "1"),
            ("RETRY_MAX_SECONDS", "4"),
            ("ADMIN_TOKEN", " a-long-enough-admin-token \n"),
        ])
        .expect("valid");
        assert_eq!(config.delivery, DeliveryMode::Queue);
        assert_eq!(
            (config.retry_base_seconds, config.retry_max_seconds),
            (1, 4)
        );
        assert_eq!(config.dead_letter_queue, DEFAULT_DEAD_LETTER_QUEUE);
        let token = config.admin_token.expect("set");
        assert!(token.accepts(Some("Bearer a-long-enough-admin-token")));
        assert!(token.accepts(Some("bearer  a-long-enough-admin-token")));
        for wrong in [
            None,
            Some(""),
            Some("a-long-enough-admin-token"),
            Some("Bearer a-long-enough-admin-tokeN"),
            Some("Basic a-long-enough-admin-token"),
            Some("Bearer "),
        ] {
            assert!(!token.accepts(wrong), "{wrong:?}");
        }
        assert!(!format!("{token:?}").contains("admin-token"));
    }
}
