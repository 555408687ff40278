//! Step 3 of the pipeline: choose destinations by event type. `ROUTES` is an ordered list
//! of rules; every rule whose patterns match the event contributes its destinations, and
//! the event is accepted only when all of them take it. A type no rule matches is ignored.
//! New Stripe event types need no code: they are matched by the same patterns.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The rule set used when `ROUTES` is not set: every event to every destination.
pub const DEFAULT_ROUTES: &str = r#"[{"name":"all","events":["*"],"to":["kv","origin"]}]"#;

/// One event-type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `invoice.paid`
    Exact(String),
    /// `invoice.*`, stored as `invoice.`
    Prefix(String),
    /// `*`
    Any,
}

impl Pattern {
    /// Reads one pattern. A `*` may only stand alone or as the whole last segment.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text == "*" {
            return Ok(Pattern::Any);
        }
        let valid_chars = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        match text.strip_suffix(".*") {
            Some(prefix) if valid_chars(prefix) => Ok(Pattern::Prefix(format!("{prefix}."))),
            None if valid_chars(text) => Ok(Pattern::Exact(text.to_owned())),
            _ => Err(format!(
                "pattern {text:?} is not an event type, a `prefix.*` or `*`"
            )),
        }
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == event_type,
            Pattern::Prefix(prefix) => event_type.starts_with(prefix.as_str()),
            Pattern::Any => true,
        }
    }
}

/// Where a matched event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The `EVENTS` KV namespace.
    Kv,
    /// An HTTP(S) endpoint: `ORIGIN_URL` (labelled `origin`) or a URL named in a rule
    /// (labelled `origin:<host>`).
    Origin { label: String, url: String },
}

impl Destination {
    /// The name used in responses and logs. It never includes a URL's path or query,
    /// which may carry a token.
    pub fn label(&self) -> &str {
        match self {
            Destination::Kv => "kv",
            Destination::Origin { label, .. } => label,
        }
    }
}

/// What a rule does with a stale event: one older (by `created`) than an event for the
/// same Stripe object that already arrived. Stripe does not promise order, so a
/// `customer.subscription.updated` from before a cancellation can arrive after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// No check: every event is delivered as it comes (the default).
    #[default]
    Deliver,
    /// Deliver it with `"stale": true` and a `Stripe-Edge-Stale: true` header.
    Flag,
    /// Do not deliver it to this rule's destinations; acknowledge it and log it as held.
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub destinations: Vec<Destination>,
    pub stale: StalePolicy,
}

/// The parsed `ROUTES` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    pub rules: Vec<Rule>,
}

/// The rules an event matched and the destinations they name, each destination once with
/// the strictest stale policy of the rules that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'r> {
    pub rule_names: Vec<String>,
    pub destinations: Vec<(&'r Destination, StalePolicy)>,
}

impl Matched<'_> {
    /// Whether any destination asks for the stale check.
    pub fn checks_staleness(&self) -> bool {
        self.destinations
            .iter()
            .any(|(_, policy)| *policy != StalePolicy::Deliver)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    events: Vec<String>,
    to: Vec<String>,
    #[serde(default)]
    stale: StalePolicy,
}

impl Routes {
    /// Parses `ROUTES` (a JSON array of `{name?, events, to, stale?}`) against the configured
    /// origin. A rule that names `origin` while `ORIGIN_URL` is unset keeps its other
    /// destinations and the omission is returned as a note; a rule left with no
    /// destination at all is an error, because its events would be acknowledged and lost.
    ///
    /// Fails with every problem found, each naming its rule.
    pub fn parse(
        json: &str,
        origin_url: Option<&str>,
    ) -> Result<(Routes, Vec<String>), Vec<String>> {
        let raw: Vec<RawRule> = serde_json::from_str(json).map_err(|error| {
            vec![format!(
                "ROUTES is not a list of {{name, events, to, stale}} rules: {error}"
            )]
        })?;
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut rules = Vec::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let name = raw.name.unwrap_or_else(|| format!("rule-{}", index + 1));
            let mut patterns = Vec::new();
            for text in &raw.events {
                match Pattern::parse(text) {
                    Ok(pattern) => patterns.push(pattern),
                    Err(problem) => problems.push(format!("route {name:?}: {problem}")),
                }
            }
            if raw.events.is_empty() {
                problems.push(format!("route {name:?}: `events` is empty"));
            }
            let mut destinations = Vec::new();
            for target in &raw.to {
                match target.as_str() {
                    "kv" => destinations.push(Destination::Kv),
                    "origin" => match origin_url {
                        Some(url) => destinations.push(Destination::Origin {
                            label: "origin".to_owned(),
                            url: url.to_owned(),
                        }),
                        None => notes.push(format!(
                            "route {name:?}: `origin` skipped because ORIGIN_URL is not set"
                        )),
                    },
                    url => match origin_label(url) {
                        Ok(label) => destinations.push(Destination::Origin {
                            label,
                            url: url.to_owned(),
                        }),
                        Err(problem) => problems.push(format!("route {name:?}: {problem}")),
                    },
                }
            }
            destinations.dedup();
            if destinations.is_empty() && problems.is_empty() {
                problems.push(format!(
                    "route {name:?} has no usable destination (set ORIGIN_URL or add \"kv\")"
                ));
            }
            rules.push(Rule {
                name,
                patterns,
                destinations,
                stale: raw.stale,
            });
        }
        if problems.is_empty() {
            Ok((Routes { rules }, notes))
        } else {
            Err(problems)
        }
    }

    /// Every rule that matches `event_type`, in order, and their destinations without
    /// repeats. Empty when the event should be ignored.
    pub fn matching(&self, event_type: &str) -> Matched<'_> {
        let mut matched = Matched {
            rule_names: Vec::new(),
            destinations: Vec::new(),
        };
        for rule in &self.rules {
            if !rule.patterns.iter().any(|p| p.matches(event_type)) {
                continue;
            }
            matched.rule_names.push(rule.name.clone());
            for destination in &rule.destinations {
                match matched
                    .destinations
                    .iter_mut()
                    .find(|(d, _)| *d == destination)
                {
                    Some((_, policy)) => *policy = (*policy).max(rule.stale),
                    None => matched.destinations.push((destination, rule.stale)),
                }
            }
        }
        matched
    }
}

/// Checks that `url` is an absolute http(s) URL with a valid host and no credentials, and
/// returns its label, `origin:<host[:port]>#<8 hex>`. The suffix is a digest of the whole URL,
/// so two URLs on one host stay two destinations (the dedupe ledger keys on labels) while
/// the label still shows nothing of the path or query, which may hold a token.
///
/// Fails with a message that quotes no part of the URL but its scheme.
pub fn origin_label(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            // A short word without URL punctuation is a typo like "KV", safe to quote.
            let quoted = url.len() <= 32 && !url.contains([':', '/', '@', '?']);
            let shown = if quoted {
                format!(" {url:?}")
            } else {
                String::new()
            };
            format!("destination{shown} is not kv, origin or an http(s) URL")
        })?;
    // Userinfo ends at the `@` before the first `/`; a `?` or `#` inside a password would
    // otherwise hide it, so the whole span up to the first `/` is checked.
    let before_path = rest.split('/').next().unwrap_or_default();
    if before_path.contains('@') {
        return Err(
            "a URL carries credentials (user:password@), which are never sent; put \
                    the token in the path or query instead"
                .to_owned(),
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !is_host_and_port(authority) {
        return Err("a URL has no valid host[:port]".to_owned());
    }
    let digest = Sha256::digest(url.as_bytes());
    Ok(format!("origin:{authority}#{}", hex::encode(&digest[..4])))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a DNS name or address as host.
fn is_host_and_port(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, after))
                if !v6.is_empty()
                    && v6
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                match after {
                    "" => (v6, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (v6, Some(port)),
                        None => return false,
                    },
                }
            }
            _ => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = authority.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Option<&str> = Some("http://127.0.0.1:9000/hooks");

    fn routes(json: &str) -> Routes {
        Routes::parse(json, ORIGIN).expect("valid routes").0
    }

    #[test]
    fn patterns() {
        let cases = [
            ("invoice.paid", "invoice.paid", true),
            ("invoice.paid", "invoice.paid.extra", false),
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice", false),
            ("invoice.*", "invoiceitem.created", false),
            ("customer.*", "customer.subscription.updated", true),
            ("*", "anything.at_all", true),
            (
                "v1.billing.meter.*",
                "v1.billing.meter.error_report_triggered",
                true,
            ),
        ];
        for (pattern, event_type, expected) in cases {
            let parsed = Pattern::parse(pattern).expect("valid pattern");
            assert_eq!(
                parsed.matches(event_type),
                expected,
                "{pattern} ~ {event_type}"
            );
        }
        for bad in ["", "invoice*", "*.paid", "in voice", "invoice.*.x", ".*"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn all_matching_rules_contribute_each_destination_once() {
        let routes = routes(
            r#"[{"name":"billing","events":["invoice.*"],"to":["kv","origin"]},
                {"name":"paid","events":["invoice.paid"],"to":["origin","https://audit.example.com/x?token=s"]},
                {"name":"other","events":["charge.*"],"to":["kv"]}]"#,
        );
        let matched = routes.matching("invoice.paid");
        assert_eq!(matched.rule_names, vec!["billing", "paid"]);
        let labels: Vec<&str> = matched
            .destinations
            .iter()
            .map(|(d, _)| d.label())
            .collect();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels[..2], ["kv", "origin"]);
        assert!(
            labels[2].starts_with("origin:audit.example.com#"),
            "{labels:?}"
        );
        assert!(routes.matching("customer.created").destinations.is_empty());
    }

    #[test]
    fn a_destination_takes_the_strictest_stale_policy_of_its_rules() {
        let routes = routes(
            r#"[{"name":"all","events":["*"],"to":["kv","origin"]},
                {"name":"subs","events":["customer.subscription.*"],"to":["origin"],"stale":"hold"},
                {"name":"flagged","events":["customer.*"],"to":["kv"],"stale":"flag"}]"#,
        );
        let policies = |event_type: &str| -> Vec<(String, StalePolicy)> {
            let matched = routes.matching(event_type);
            matched
                .destinations
                .iter()
                .map(|(d, p)| (d.label().to_owned(), *p))
                .collect()
        };
        assert_eq!(
            policies("customer.subscription.updated"),
            vec![
                ("kv".to_owned(), StalePolicy::Flag),
                ("origin".to_owned(), StalePolicy::Hold)
            ]
        );
        assert!(!routes.matching("invoice.paid").checks_staleness());
        assert!(routes.matching("customer.updated").checks_staleness());
        let problems = Routes::parse(r#"[{"events":["*"],"to":["kv"],"stale":"later"}]"#, None)
            .expect_err("unknown policy");
        assert!(
            problems[0].starts_with("ROUTES is not a list"),
            "{problems:?}"
        );
    }

    #[test]
    fn origin_without_origin_url_is_skipped_with_a_note() {
        let (routes, notes) = Routes::parse(
            r#"[{"name":"a","events":["*"],"to":["kv","origin"]}]"#,
            None,
        )
        .expect("valid");
        assert_eq!(routes.rules[0].destinations, vec![Destination::Kv]);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn a_rule_left_without_destinations_is_an_error() {
        let problems = Routes::parse(r#"[{"events":["*"],"to":["origin"]}]"#, None)
            .expect_err("would lose events");
        assert!(problems[0].contains("rule-1"), "{problems:?}");
    }

    #[test]
    fn every_problem_is_reported_by_rule_name() {
        let problems = Routes::parse(
            r#"[{"name":"a","events":["bad*"],"to":["ftp://x"]},
                {"name":"b","events":[],"to":["https://user:pw@/path"]}]"#,
            ORIGIN,
        )
        .expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().all(|p| !p.contains("pw")), "{problems:?}");
        for text in ["{}", "[1]", r#"[{"events":["*"],"to":["kv"],"extra":1}]"#] {
            assert!(Routes::parse(text, ORIGIN).is_err(), "{text}");
        }
    }

    #[test]
    fn default_routes_parse() {
        let (routes, _) = Routes::parse(DEFAULT_ROUTES, ORIGIN).expect("valid");
        assert_eq!(routes.matching("x.y").destinations.len(), 2);
    }

    #[test]
    fn origin_labels_leave_out_secrets_and_tell_urls_apart() {
        let label = origin_label("https://hooks.example.com:8443/a?k=v").expect("valid");
        assert!(
            label.starts_with("origin:hooks.example.com:8443#"),
            "{label}"
        );
        assert_eq!(label.len(), "origin:hooks.example.com:8443#".len() + 8);
        let other = origin_label("https://hooks.example.com:8443/b?k=v").expect("valid");
        assert_ne!(label, other, "two paths on one host are two destinations");
        assert!(origin_label("http://[::1]:9/x").is_ok());
        for bad in [
            "http://",
            "mailto:x",
            "http://usr:pa?ss@127.0.0.1:9201/ok",
            "http://usr:pa#ss@127.0.0.1:9202/ok",
            "https://u:p@hooks.example.com/a",
            "http://host:port/",
            "http://host:0/",
            "http://ho st/",
            "http://[zz]/",
        ] {
            let problem = origin_label(bad).expect_err(bad);
            assert!(
                !problem.contains("pa") || problem.contains("path"),
                "{problem}"
            );
            assert!(
                !problem.contains("usr") && !problem.contains("hooks"),
                "{problem}"
            );
        }
    }
}
