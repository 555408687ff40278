//! Signing and sending: what `stripe-edge trigger` and `stripe-edge send` do.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::fixtures::{fresh_event, new_event_id, Fixture};
use super::http::{post, HttpResponse};
use crate::signature::SigningSecret;

/// Where `wrangler dev` serves the worker by default.
pub const DEFAULT_FORWARD_TO: &str = "http://127.0.0.1:8787/webhook";

/// How long one delivery may take before the sender gives up, like Stripe's own timeout.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds the signing secret: the explicit value, else `STRIPE_WEBHOOK_SECRET` in the
/// environment, else the first value of `STRIPE_WEBHOOK_SECRET` in `dev_vars` (the
/// `.dev.vars` file that `wrangler dev` reads). When several comma-separated secrets are
/// configured, the first signs.
///
/// Fails with a message that names where it looked, never a value.
pub fn resolve_secret(explicit: Option<String>, dev_vars: &Path) -> Result<SigningSecret, String> {
    let from_file = || {
        let text = fs::read_to_string(dev_vars).ok()?;
        text.lines().find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("STRIPE_WEBHOOK_SECRET")?
                .trim_start();
            let value = value.strip_prefix('=')?.trim();
            Some(value.trim_matches(['"', '\'']).to_owned())
        })
    };
    let raw = explicit
        .or_else(|| std::env::var("STRIPE_WEBHOOK_SECRET").ok())
        .filter(|v| !v.trim().is_empty())
        .or_else(from_file)
        .ok_or_else(|| {
            format!(
                "no signing secret: pass --secret, set STRIPE_WEBHOOK_SECRET, or add it to {}",
                dev_vars.display()
            )
        })?;
    let first = raw.split(',').map(str::trim).find(|v| !v.is_empty());
    first
        .map(SigningSecret::new)
        .ok_or_else(|| "the signing secret is empty".to_owned())
}

/// The current unix time in seconds.
pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// One delivery made by the sender.
#[derive(Debug)]
pub struct Sent {
    pub event_id: String,
    pub body: Vec<u8>,
    pub response: HttpResponse,
}

/// Signs `body` at `timestamp` with `secret` and POSTs it unchanged, as Stripe would.
pub fn send_signed(
    url: &str,
    secret: &SigningSecret,
    timestamp: i64,
    body: &[u8],
) -> io::Result<HttpResponse> {
    let signature = secret.sign_header(timestamp, body);
    post(
        url,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            (
                "User-Agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            ),
            ("Stripe-Signature", &signature),
        ],
        body,
        DELIVERY_TIMEOUT,
    )
}

/// Makes a new event from `fixture` and delivers it, signed now.
pub fn trigger(url: &str, secret: &SigningSecret, fixture: &Fixture) -> io::Result<Sent> {
    let now = now_seconds();
    let event_id = new_event_id();
    let body = fresh_event(fixture, &event_id, now);
    let response = send_signed(url, secret, now, &body)?;
    Ok(Sent {
        event_id,
        body,
        response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_from_dev_vars_takes_the_first_value() {
        let dir = std::env::temp_dir().join(format!("stripe-edge-secret-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join(".dev.vars");
        fs::write(
            &file,
            "# comment\nOTHER=1\nSTRIPE_WEBHOOK_SECRET = 'whsec_one, whsec_two'\n",
        )
        .expect("write");
        let explicit = resolve_secret(Some("whsec_explicit".into()), &file).expect("explicit");
        let header = explicit.sign_header(1, b"x");
        assert_eq!(
            header,
            SigningSecret::new("whsec_explicit").sign_header(1, b"x")
        );

        if std::env::var_os("STRIPE_WEBHOOK_SECRET").is_none() {
            let from_file = resolve_secret(None, &file).expect("from file");
            assert_eq!(
                from_file.sign_header(1, b"x"),
                SigningSecret::new("whsec_one").sign_header(1, b"x")
            );
            let missing = resolve_secret(None, &dir.join("absent")).expect_err("nothing");
            assert!(missing.contains("--secret"));
        }
        fs::remove_dir_all(&dir).ok();
    }
}
