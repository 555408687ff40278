//! A structured generator of `Stripe-Signature` headers and bodies, and an oracle that
//! states the verification policy a second time, in the plainest string-based way. The
//! fuzz test runs many generated cases through the core and checks it never panics and
//! always agrees with the oracle; the end-to-end tests send a sample to the worker.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// xorshift64*: small, deterministic, good enough to explore input shapes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

pub fn hmac_hex(secret: &str, timestamp_text: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp_text}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One generated delivery.
pub struct Generated {
    pub header: Option<String>,
    pub body: Vec<u8>,
}

/// Generates a delivery around `now`, signed (or nearly) with one of `secrets` or a stranger.
pub fn generate(rng: &mut Rng, now: i64, base_body: &[u8], secrets: &[&str]) -> Generated {
    let mut body = match rng.below(10) {
        0 => Vec::new(),
        1 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => base_body.to_vec(),
    };
    if rng.chance(10) && !body.is_empty() {
        let at = rng.below(body.len());
        body[at] ^= 1 << rng.below(8);
    }
    if rng.chance(3) {
        return Generated { header: None, body };
    }
    let signer = if rng.chance(85) {
        secrets[rng.below(secrets.len())]
    } else {
        "whsec_stranger"
    };
    let good_t =
        (now + [0, 0, 0, -1, 1, -299, 301, -301, 299, -100_000][rng.below(10)]).to_string();
    let mut elements: Vec<String> = Vec::new();
    for _ in 0..rng.below(7) + 1 {
        let element = match rng.below(16) {
            0..=3 => format!("t={good_t}"),
            4..=7 => format!("v1={}", hmac_hex(signer, &good_t, &body)),
            8 => {
                let t = rng.pick(&[
                    "",
                    "abc",
                    "-5",
                    "+1",
                    "1e9",
                    "0",
                    "99999999999999999999",
                    " 1",
                    "1.5",
                    "٣",
                ]);
                format!("t={t}")
            }
            9 => {
                let len = [0, 1, 63, 64, 65, 128][rng.below(6)];
                let hex: String = (0..len)
                    .map(|_| b"0123456789abcdefABCDEFxz"[rng.below(24)] as char)
                    .collect();
                format!("v1={hex}")
            }
            10 => format!("v1={}", hmac_hex(signer, &good_t, &body).to_uppercase()),
            11 => rng
                .pick(&[
                    "v0=abc", "v2=00", "foo=bar", "=", "", "t", "v1", "==", "t==1",
                ])
                .to_owned(),
            12 => format!("t={}", now + rng.below(1000) as i64 - 500),
            13 => {
                // Arbitrary bytes, made into text the way a header value would be.
                let raw: Vec<u8> = (0..rng.below(12)).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&raw).into_owned()
            }
            _ => format!("v1={}", hmac_hex(signer, &format!("0{good_t}"), &body)),
        };
        elements.push(element);
    }
    let mut header = String::new();
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            header.push_str(rng.pick(&[",", ",", ", ", " ,", ",\t", ",,"]));
        }
        if rng.chance(5) {
            header.push(' ');
        }
        header.push_str(element);
    }
    Generated {
        header: Some(header),
        body,
    }
}

/// The policy, restated: `Ok` when the header verifies, else the rejection code.
pub fn oracle(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&str],
    tolerance: i64,
    now: i64,
) -> Result<(), &'static str> {
    let header = header
        .filter(|h| !h.trim().is_empty())
        .ok_or("signature_header_missing")?;
    let mut timestamps = Vec::new();
    let mut v1s = Vec::new();
    for element in header.split(',') {
        let element = element.trim_matches(|c| c == ' ' || c == '\t');
        if let Some(at) = element.find('=') {
            let (key, value) = (&element[..at], &element[at + 1..]);
            match key {
                "t" => timestamps.push(value),
                "v1" => v1s.push(value),
                _ => {}
            }
        }
    }
    let first = *timestamps.first().ok_or("signature_header_malformed")?;
    let plain_digits =
        !first.is_empty() && first.len() <= 15 && first.chars().all(|c| c.is_ascii_digit());
    if timestamps.iter().any(|t| *t != first) || !plain_digits || v1s.is_empty() {
        return Err("signature_header_malformed");
    }
    let matched = secrets.iter().any(|secret| {
        let expected = hmac_hex(secret, first, body);
        v1s.iter().any(|v| v.to_ascii_lowercase() == expected)
    });
    if !matched {
        return Err("signature_mismatch");
    }
    let age = now
        - first
            .parse::<i64>()
            .map_err(|_| "signature_header_malformed")?;
    if age > tolerance {
        Err("timestamp_too_old")
    } else if age < -tolerance {
        Err("timestamp_in_future")
    } else {
        Ok(())
    }
}
