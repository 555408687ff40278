//! Step 1 of the pipeline: decide whether a delivery's `Stripe-Signature` header was made by
//! one of the configured signing secrets over these exact body bytes.
//!
//! Stripe signs `"{t}.{body}"` with HMAC-SHA256, keyed by the whole `whsec_...` string, and
//! sends `t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`. Only `v1` counts. Every `v1`
//! in the header is tried against every secret, so rolling a secret (Stripe sends one `v1`
//! per live secret) and several endpoints sharing one worker both work.
//!
//! Invariant: a [`Verified`] body can only be made here, so nothing downstream can look at
//! bytes that were not verified first.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::outcome::Rejection;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag, the decoded form of a `v1` value.
pub const TAG_BYTES: usize = 32;

/// Longest `t` accepted, in decimal digits; more cannot be a unix time in seconds and could
/// overflow the arithmetic that follows.
const MAX_TIMESTAMP_DIGITS: usize = 15;

/// One webhook signing secret. Its value never reaches `Debug`, a log line or a response.
#[derive(Clone)]
pub struct SigningSecret {
    value: String,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Why a configured secret value cannot be what the operator meant. The value itself is
/// never part of the problem, only its position in the list and what it looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// 1-based position in the comma-separated list.
    pub position: usize,
    /// What the value looks like instead, in words for a log line.
    pub looks_like: &'static str,
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret #{} looks like {}, not a webhook signing secret (whsec_...)",
            self.position, self.looks_like
        )
    }
}

impl SigningSecret {
    /// Builds one secret from an operator-supplied value, trimming the whitespace and line
    /// ends that copy and paste adds.
    pub fn new(raw: &str) -> Self {
        SigningSecret {
            value: raw.trim().to_owned(),
        }
    }

    /// Splits a comma-separated list of secrets, skipping empty entries, and reports each
    /// value that is plainly not a webhook signing secret. Such values are still kept: the
    /// operator may know better, and a wrong key only ever fails to match.
    pub fn parse_list(raw: &str) -> (Vec<SigningSecret>, Vec<SecretProblem>) {
        let mut secrets = Vec::new();
        let mut problems = Vec::new();
        for (index, part) in raw.split(',').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            if let Some(looks_like) = misnamed_secret(part) {
                problems.push(SecretProblem {
                    position: index + 1,
                    looks_like,
                });
            }
            secrets.push(SigningSecret::new(part));
        }
        (secrets, problems)
    }

    /// The HMAC key: the whole secret text, prefix included, as Stripe uses it.
    pub fn key(&self) -> &[u8] {
        self.value.as_bytes()
    }

    /// Signs `body` at `timestamp` the way Stripe does and returns the whole header value,
    /// `t=<timestamp>,v1=<hex>`. Used for the origin hop and by the offline sender.
    pub fn sign_header(&self, timestamp: i64, body: &[u8]) -> String {
        let t = timestamp.to_string();
        format!("t={t},v1={}", self.v1_hex(&t, body))
    }

    /// The lower-case hex `v1` value for `body` signed at `timestamp_text`, taken as the
    /// exact text that precedes the `.` in the signed message.
    pub fn v1_hex(&self, timestamp_text: &str, body: &[u8]) -> String {
        hex::encode(tag(self.key(), timestamp_text, body))
    }
}

fn misnamed_secret(value: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 6] = [
        ("whsec_", ""),
        ("sk_", "a secret API key (sk_...)"),
        ("rk_", "a restricted API key (rk_...)"),
        ("pk_", "a publishable key (pk_...)"),
        ("we_", "a webhook endpoint id (we_...)"),
        ("acct_", "an account id (acct_...)"),
    ];
    match KNOWN.iter().find(|(prefix, _)| value.starts_with(prefix)) {
        Some((_, "")) => None,
        Some((_, looks_like)) => Some(looks_like),
        None => Some("an unknown value without the whsec_ prefix"),
    }
}

/// The parts of a `Stripe-Signature` header that verification uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'h> {
    /// The `t` value exactly as sent: Stripe signs this text, not a re-formatted number.
    pub timestamp_text: &'h str,
    pub timestamp: i64,
    /// Every well-formed `v1` tag, in header order. Malformed ones can never match and are
    /// dropped here; `v1_seen` still counts them.
    pub v1: Vec<[u8; TAG_BYTES]>,
    pub v1_seen: usize,
}

/// Parses a `Stripe-Signature` header value.
///
/// Elements are separated by commas; spaces and tabs around an element are ignored, as is an
/// element without `=` and any scheme other than `t` and `v1`. A header sent twice reaches
/// the worker joined with `", "`, which this reads as one list.
///
/// Fails with [`Rejection::SignatureHeaderMalformed`] when there is no `t`, when a `t` is not
/// a plain decimal number, when two `t` values disagree, or when there is no `v1` at all.
pub fn parse_header(value: &str) -> Result<SignatureHeader<'_>, Rejection> {
    let mut timestamp_text: Option<&str> = None;
    let mut v1 = Vec::new();
    let mut v1_seen = 0;
    for element in value.split(',') {
        let Some((scheme, content)) = element.trim_matches([' ', '\t']).split_once('=') else {
            continue;
        };
        match scheme {
            "t" => match timestamp_text {
                Some(previous) if previous != content => {
                    return Err(Rejection::SignatureHeaderMalformed)
                }
                _ => timestamp_text = Some(content),
            },
            "v1" => {
                v1_seen += 1;
                let mut tag = [0u8; TAG_BYTES];
                if hex::decode_to_slice(content, &mut tag).is_ok() {
                    v1.push(tag);
                }
            }
            _ => {}
        }
    }

    let timestamp_text = timestamp_text.ok_or(Rejection::SignatureHeaderMalformed)?;
    let is_plain_number = !timestamp_text.is_empty()
        && timestamp_text.len() <= MAX_TIMESTAMP_DIGITS
        && timestamp_text.bytes().all(|b| b.is_ascii_digit());
    if !is_plain_number || v1_seen == 0 {
        return Err(Rejection::SignatureHeaderMalformed);
    }
    let timestamp = timestamp_text
        .parse()
        .map_err(|_| Rejection::SignatureHeaderMalformed)?;
    Ok(SignatureHeader {
        timestamp_text,
        timestamp,
        v1,
        v1_seen,
    })
}

/// A body whose signature matched one of the configured secrets, inside the tolerance.
/// Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified<'b> {
    body: &'b [u8],
    timestamp: i64,
}

impl<'b> Verified<'b> {
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    /// The signed `t`, in unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// Checks a delivery: the header, then the signature over the raw bytes, then the age.
///
/// The signature is checked before the timestamp so that an unsigned request learns nothing
/// about the clock, as in Stripe's own libraries. Fails with the [`Rejection`] that names the
/// first check that did not pass.
pub fn verify<'b>(
    header: Option<&str>,
    body: &'b [u8],
    secrets: &[SigningSecret],
    tolerance_seconds: i64,
    now: i64,
) -> Result<Verified<'b>, Rejection> {
    verify_with_tags(header, body, secrets, tolerance_seconds, now, None)
}

/// [`verify`], with the expected tags optionally computed elsewhere: `tags[i]` must be the
/// HMAC of `"{t}.{body}"` under `secrets[i]`, with `t` exactly as [`parse_header`] returns it.
/// The wasm shell uses this to hash large bodies with the runtime's native Web Crypto; a
/// list of the wrong length is ignored and the tags are computed here.
pub fn verify_with_tags<'b>(
    header: Option<&str>,
    body: &'b [u8],
    secrets: &[SigningSecret],
    tolerance_seconds: i64,
    now: i64,
    tags: Option<&[[u8; TAG_BYTES]]>,
) -> Result<Verified<'b>, Rejection> {
    if secrets.is_empty() {
        return Err(Rejection::SecretMissing);
    }
    let header = match header {
        Some(value) if !value.trim().is_empty() => value,
        _ => return Err(Rejection::SignatureHeaderMissing),
    };
    let parsed = parse_header(header)?;

    // One HMAC per secret, compared against every v1; any pair may match.
    let tags = tags.filter(|tags| tags.len() == secrets.len());
    let matched = secrets.iter().enumerate().any(|(index, secret)| {
        let expected = match tags {
            Some(tags) => tags[index],
            None => tag(secret.key(), parsed.timestamp_text, body),
        };
        parsed
            .v1
            .iter()
            .any(|candidate| constant_time_eq(&expected, candidate))
    });
    if !matched {
        return Err(Rejection::SignatureMismatch);
    }

    let age = now.saturating_sub(parsed.timestamp);
    if age > tolerance_seconds {
        return Err(Rejection::TimestampTooOld);
    }
    if age < -tolerance_seconds {
        return Err(Rejection::TimestampInFuture);
    }
    Ok(Verified {
        body,
        timestamp: parsed.timestamp,
    })
}

/// HMAC-SHA256 of `"{timestamp_text}.{body}"`, fed in pieces so the body is never copied.
fn tag(key: &[u8], timestamp_text: &str, body: &[u8]) -> [u8; TAG_BYTES] {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Compares two tags in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8; TAG_BYTES], b: &[u8; TAG_BYTES]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_for_vectors";
    const NOW: i64 = 1_796_042_096;

    fn secrets(values: &[&str]) -> Vec<SigningSecret> {
        values.iter().map(|v| SigningSecret::new(v)).collect()
    }

    fn header_for(secret: &str, t: i64, body: &[u8]) -> String {
        SigningSecret::new(secret).sign_header(t, body)
    }

    fn check(header: &str, body: &[u8], keys: &[&str]) -> Result<i64, Rejection> {
        verify(Some(header), body, &secrets(keys), 300, NOW).map(|v| v.timestamp())
    }

    /// A vector computed independently with Python's hmac module:
    /// hmac.new(b"whsec_test_secret_for_vectors", b"1796042096.{\"id\":\"evt_1\"}", sha256).
    #[test]
    fn fixed_vector_matches_an_independent_hmac() {
        let body = br#"{"id":"evt_1"}"#;
        let header = header_for(SECRET, NOW, body);
        assert_eq!(
            header,
            "t=1796042096,v1=d8efd17a57f85fafbd4ff55e8fd9c13cdbb865c9c16e7a2a597d8b43efbd079d"
        );
        assert_eq!(check(&header, body, &[SECRET]), Ok(NOW));
    }

    #[test]
    fn any_v1_may_match_any_secret() {
        let body = b"{}";
        let good = hex::encode(tag(b"whsec_new", "1796042096", body));
        let bad = "00".repeat(32);
        let header = format!("t={NOW},v1={bad},v1={good},v0={bad}");
        assert_eq!(check(&header, body, &["whsec_old", "whsec_new"]), Ok(NOW));
        assert_eq!(check(&header, body, &["whsec_new", "whsec_old"]), Ok(NOW));
        assert_eq!(
            check(&header, body, &["whsec_other"]),
            Err(Rejection::SignatureMismatch)
        );
    }

    #[test]
    fn precomputed_tags_are_used_only_when_there_is_one_per_secret() {
        let body = b"{}";
        let header = header_for(SECRET, NOW, body);
        let keys = secrets(&[SECRET]);
        let right = tag(SECRET.as_bytes(), &NOW.to_string(), body);
        let check = |tags: Option<&[[u8; TAG_BYTES]]>| {
            verify_with_tags(Some(&header), body, &keys, 300, NOW, tags).map(|v| v.timestamp())
        };
        assert_eq!(check(Some(&[right])), Ok(NOW));
        assert_eq!(
            check(Some(&[[0; TAG_BYTES]])),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(check(Some(&[])), Ok(NOW), "a wrong-length list is ignored");
    }

    #[test]
    fn missing_header_is_its_own_rejection() {
        let result = verify(None, b"{}", &secrets(&[SECRET]), 300, NOW);
        assert_eq!(result.err(), Some(Rejection::SignatureHeaderMissing));
        let blank = verify(Some("  "), b"{}", &secrets(&[SECRET]), 300, NOW);
        assert_eq!(blank.err(), Some(Rejection::SignatureHeaderMissing));
    }

    #[test]
    fn no_secret_is_a_server_problem_not_a_client_one() {
        let result = verify(Some("t=1,v1=00"), b"{}", &[], 300, NOW);
        assert_eq!(result.err(), Some(Rejection::SecretMissing));
    }

    #[test]
    fn malformed_headers() {
        let v1 = "ab".repeat(32);
        let cases = [
            format!("v1={v1}"),
            format!("t=,v1={v1}"),
            format!("t=12a,v1={v1}"),
            format!("t=-5,v1={v1}"),
            format!("t=1.5,v1={v1}"),
            format!("t=9999999999999999999999,v1={v1}"),
            format!("t=1,t=2,v1={v1}"),
            format!("t={NOW}"),
            format!("t={NOW},v0={v1}"),
            "garbage".to_owned(),
        ];
        for header in cases {
            assert_eq!(
                check(&header, b"{}", &[SECRET]),
                Err(Rejection::SignatureHeaderMalformed),
                "{header}"
            );
        }
    }

    #[test]
    fn tolerated_spacing_and_repeats() {
        let body = b"{\"a\":1}";
        let sig = hex::encode(tag(SECRET.as_bytes(), &NOW.to_string(), body));
        let cases = [
            format!(" t={NOW} , v1={sig} "),
            format!("t={NOW},t={NOW},v1={sig}"),
            format!("t={NOW},v1={sig}, t={NOW},v1={sig}"),
            format!("t={NOW},junk,v1=,v1=zz,v1={sig}"),
        ];
        for header in cases {
            assert_eq!(check(&header, body, &[SECRET]), Ok(NOW), "{header}");
        }
    }

    #[test]
    fn any_change_to_body_or_signature_is_a_mismatch() {
        let body = br#"{"id":"evt_1","object":"event"}"#.to_vec();
        let header = header_for(SECRET, NOW, &body);
        for i in 0..body.len() {
            let mut changed = body.clone();
            changed[i] ^= 0x01;
            assert_eq!(
                check(&header, &changed, &[SECRET]),
                Err(Rejection::SignatureMismatch)
            );
        }
        let mut truncated = body.clone();
        truncated.pop();
        assert_eq!(
            check(&header, &truncated, &[SECRET]),
            Err(Rejection::SignatureMismatch)
        );
        let mut sig_changed = header.clone().into_bytes();
        let last = sig_changed.len() - 1;
        sig_changed[last] = if sig_changed[last] == b'0' {
            b'1'
        } else {
            b'0'
        };
        let sig_changed = String::from_utf8(sig_changed).expect("ascii");
        assert_eq!(
            check(&sig_changed, &body, &[SECRET]),
            Err(Rejection::SignatureMismatch)
        );
    }

    #[test]
    fn the_signed_timestamp_text_is_used_as_sent() {
        // Stripe never sends a leading zero; one in the header changes the signed bytes.
        let body = b"{}";
        let sig = hex::encode(tag(SECRET.as_bytes(), &NOW.to_string(), body));
        let header = format!("t=0{NOW},v1={sig}");
        assert_eq!(
            check(&header, body, &[SECRET]),
            Err(Rejection::SignatureMismatch)
        );
    }

    #[test]
    fn timestamp_window_edges() {
        let body = b"{}";
        for (t, expected) in [
            (NOW - 300, Ok(NOW - 300)),
            (NOW - 301, Err(Rejection::TimestampTooOld)),
            (NOW + 300, Ok(NOW + 300)),
            (NOW + 301, Err(Rejection::TimestampInFuture)),
            (0, Err(Rejection::TimestampTooOld)),
        ] {
            let header = header_for(SECRET, t, body);
            assert_eq!(check(&header, body, &[SECRET]), expected, "t={t}");
        }
    }

    /// The cases the official libraries' own webhook tests check, in stripe-edge's terms.
    #[test]
    fn cases_from_the_official_libraries_suites() {
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        let good = header_for(SECRET, NOW, body);
        let v1 = good.split_once(",v1=").map(|(_, v)| v).unwrap_or_default();
        let at = |t: i64| header_for(SECRET, t, body);
        let tolerance = |header: &str, seconds| {
            verify(Some(header), body, &secrets(&[SECRET]), seconds, NOW).map(|v| v.timestamp())
        };
        assert_eq!(
            check("bad_header", body, &[SECRET]),
            Err(Rejection::SignatureHeaderMalformed)
        );
        assert_eq!(
            check(&format!("t={NOW},v0={v1}"), body, &[SECRET]),
            Err(Rejection::SignatureHeaderMalformed)
        );
        assert_eq!(
            check(&format!("t={NOW},v1=bad_signature"), body, &[SECRET]),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check(&format!("{good},v1=bad_signature"), body, &[SECRET]),
            Ok(NOW)
        );
        assert_eq!(
            check("v1,t=1", body, &[SECRET]),
            Err(Rejection::SignatureHeaderMalformed)
        );
        assert_eq!(
            check("t=", body, &[SECRET]),
            Err(Rejection::SignatureHeaderMalformed)
        );
        assert_eq!(
            tolerance(&at(NOW - 15), 10),
            Err(Rejection::TimestampTooOld)
        );
        assert_eq!(tolerance(&at(NOW - 15), 20), Ok(NOW - 15));
        assert_eq!(tolerance(&at(NOW), 10), Ok(NOW));
        // hex of the ASCII text "deadbeef" is not the signature.
        let ascii_hex = format!("t={NOW},v1={}", hex::encode("deadbeef"));
        assert_eq!(
            check(&ascii_hex, body, &[SECRET]),
            Err(Rejection::SignatureMismatch)
        );
    }

    #[test]
    fn secrets_are_trimmed_and_misnamed_ones_reported() {
        let (list, problems) =
            SigningSecret::parse_list(" whsec_a\n, ,sk_test_123,rk_live_9, we_1,plain");
        assert_eq!(list.len(), 5);
        assert_eq!(list[0].key(), b"whsec_a");
        let positions: Vec<usize> = problems.iter().map(|p| p.position).collect();
        assert_eq!(positions, vec![3, 4, 5, 6]);
        let text = problems[0].to_string();
        assert!(text.contains("secret API key") && !text.contains("sk_test_123"));
        assert_eq!(format!("{:?}", list[2]), "SigningSecret(<redacted>)");
    }
}
