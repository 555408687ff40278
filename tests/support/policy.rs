//! The verification policy as data: every edge case where Stripe's official libraries
//! disagree (see docs/verification.md), with stripe-edge's answer. The native tests check
//! each case against the core; the end-to-end tests send the same cases to the worker in
//! workerd, so the wasm build must answer exactly as the native one.

use stripe_edge::offline::fixtures::{find, fresh_event, new_event_id};
use stripe_edge::signature::SigningSecret;

pub const SECRET: &str = "whsec_policy_primary_0123456789";
pub const OTHER_SECRET: &str = "whsec_policy_other_9876543210";

/// What stripe-edge must answer: `None` accepts, `Some(code)` is a 400 with that code.
pub type Expected = Option<&'static str>;

pub struct Case {
    pub name: &'static str,
    pub header: Option<String>,
    pub body: Vec<u8>,
    pub expected: Expected,
    /// The tolerance the case needs; `None` runs with the default (300), which is what
    /// the worker in the end-to-end tests uses.
    pub tolerance_seconds: Option<i64>,
}

const MISSING: Expected = Some("signature_header_missing");
const MALFORMED: Expected = Some("signature_header_malformed");
const MISMATCH: Expected = Some("signature_mismatch");
const TOO_OLD: Expected = Some("timestamp_too_old");
const IN_FUTURE: Expected = Some("timestamp_in_future");
const NOT_EVENT: Expected = Some("not_a_stripe_event");
const ACCEPT: Expected = None;

fn sig(secret: &str, timestamp_text: &str, body: &[u8]) -> String {
    SigningSecret::new(secret).v1_hex(timestamp_text, body)
}

/// Every case, signed around `now` (unix seconds).
pub fn cases(now: i64) -> Vec<Case> {
    let body = fresh_event(find("invoice.paid").expect("fixture"), &new_event_id(), now);
    let t = now.to_string();
    let good = sig(SECRET, &t, &body);
    let other = sig(OTHER_SECRET, &t, &body);
    let at = |offset: i64| {
        let t = (now + offset).to_string();
        format!("t={t},v1={}", sig(SECRET, &t, &body))
    };
    let signed_body = |bytes: &[u8]| {
        let header = format!("t={t},v1={}", sig(SECRET, &t, bytes));
        (Some(header), bytes.to_vec())
    };
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&body);

    let case = |name, header: String, expected| Case {
        name,
        header: Some(header),
        body: body.clone(),
        expected,
        tolerance_seconds: None,
    };
    let with_body = |name, (header, body): (Option<String>, Vec<u8>), expected| Case {
        name,
        header,
        body,
        expected,
        tolerance_seconds: None,
    };
    let mut cases = vec![
        case("valid", format!("t={t},v1={good}"), ACCEPT),
        Case {
            header: None,
            ..case("header_absent", String::new(), MISSING)
        },
        case("header_empty", String::new(), MISSING),
        case("header_blank", "  \t ".into(), MISSING),
        case("header_free_text", "bad_header".into(), MALFORMED),
        case(
            "duplicate_t_same_value",
            format!("t={t},t={t},v1={good}"),
            ACCEPT,
        ),
        case(
            "duplicate_t_conflicting",
            format!("t={t},t={},v1={good}", now - 1),
            MALFORMED,
        ),
        case("t_missing", format!("v1={good}"), MALFORMED),
        case("t_empty", format!("t=,v1={good}"), MALFORMED),
        case("t_bare_without_equals", format!("t,v1={good}"), MALFORMED),
        case(
            "t_non_numeric",
            format!("t=abc,v1={}", sig(SECRET, "abc", &body)),
            MALFORMED,
        ),
        case("t_numeric_prefix", format!("t={t}abc,v1={good}"), MALFORMED),
        case(
            "t_exponent",
            format!("t=1e9,v1={}", sig(SECRET, "1e9", &body)),
            MALFORMED,
        ),
        case(
            "t_negative",
            format!("t=-{t},v1={}", sig(SECRET, &format!("-{t}"), &body)),
            MALFORMED,
        ),
        case(
            "t_plus_sign",
            format!("t=+{t},v1={}", sig(SECRET, &format!("+{t}"), &body)),
            MALFORMED,
        ),
        case(
            "t_space_inside_value",
            format!("t= {t},v1={good}"),
            MALFORMED,
        ),
        case(
            "t_huge_16_digits",
            format!("t=1{t:0>15},v1={good}"),
            MALFORMED,
        ),
        case(
            "t_overflowing_int64",
            format!("t=99999999999999999999999,v1={good}"),
            MALFORMED,
        ),
        case(
            "t_leading_zero_changes_signed_text",
            format!("t=0{t},v1={good}"),
            MISMATCH,
        ),
        case(
            "element_without_equals_is_ignored",
            format!("t={t},garbage,v1={good}"),
            ACCEPT,
        ),
        case(
            "trailing_comma_is_ignored",
            format!("t={t},v1={good},"),
            ACCEPT,
        ),
        case("v1_empty_alone", format!("t={t},v1="), MISMATCH),
        case(
            "v1_empty_then_valid",
            format!("t={t},v1=,v1={good}"),
            ACCEPT,
        ),
        case(
            "v1_bare_without_equals_then_valid",
            format!("t={t},v1,v1={good}"),
            ACCEPT,
        ),
        case(
            "v1_non_hex",
            format!("t={t},v1={}", "zz".repeat(32)),
            MISMATCH,
        ),
        case(
            "v1_non_ascii",
            format!("t={t},v1={}", "é".repeat(32)),
            MISMATCH,
        ),
        case(
            "v1_too_short",
            format!("t={t},v1={}", &good[..62]),
            MISMATCH,
        ),
        case("v1_too_long", format!("t={t},v1={good}00"), MISMATCH),
        case("v1_extra_equals", format!("t={t},v1={good}=x"), MISMATCH),
        case(
            "v1_upper_case_hex",
            format!("t={t},v1={}", good.to_uppercase()),
            ACCEPT,
        ),
        case(
            "spaces_around_elements",
            format!(" t={t} , v1={good} "),
            ACCEPT,
        ),
        case(
            "tabs_around_elements",
            format!("\tt={t},\tv1={good}\t"),
            ACCEPT,
        ),
        case("v0_only", format!("t={t},v0={good}"), MALFORMED),
        case(
            "v0_and_unknown_schemes_beside_v1",
            format!("t={t},v0=00,v2=ab,foo=bar,v1={good}"),
            ACCEPT,
        ),
        case(
            "first_v1_wrong_second_right",
            format!("t={t},v1={other},v1={good}"),
            ACCEPT,
        ),
        case(
            "rolled_secret_both_v1",
            format!("t={t},v1={good},v1={other}"),
            ACCEPT,
        ),
        case(
            "only_an_unconfigured_secret",
            format!("t={t},v1={other}"),
            MISMATCH,
        ),
        case(
            "header_sent_twice",
            format!("t={t},v1={other}, t={t},v1={good}"),
            ACCEPT,
        ),
        case(
            "header_sent_twice_different_t",
            format!("{}, {}", at(0), at(-5)),
            MALFORMED,
        ),
        case(
            "many_v1_values",
            format!("t={t},{}v1={good}", "v1=00,".repeat(500)),
            ACCEPT,
        ),
        case("future_within_tolerance", at(200), ACCEPT),
        case("future_beyond_tolerance", at(400), IN_FUTURE),
        case("past_within_tolerance", at(-200), ACCEPT),
        case("past_beyond_tolerance", at(-400), TOO_OLD),
        case("timestamp_zero", at(-now), TOO_OLD),
        with_body("empty_body", signed_body(b""), NOT_EVENT),
        with_body(
            "non_utf8_body",
            signed_body(b"{\"id\":\"evt_\xff\xfe\"}"),
            NOT_EVENT,
        ),
        with_body("utf8_bom_before_json", signed_body(&bom), NOT_EVENT),
        with_body(
            "json_that_is_not_an_event",
            signed_body(br#"{"hello":"world"}"#),
            NOT_EVENT,
        ),
        with_body("json_array", signed_body(b"[1,2,3]"), NOT_EVENT),
        with_body(
            "deeply_nested_json",
            signed_body(&deep_nesting()),
            NOT_EVENT,
        ),
    ];
    let mut changed = body.clone();
    changed[body.len() / 2] ^= 0x20;
    cases.push(Case {
        body: changed,
        ..case(
            "body_changed_after_signing",
            format!("t={t},v1={good}"),
            MISMATCH,
        )
    });
    cases.push(Case {
        tolerance_seconds: Some(0),
        ..case(
            "tolerance_zero_same_second",
            format!("t={t},v1={good}"),
            ACCEPT,
        )
    });
    cases.push(Case {
        tolerance_seconds: Some(0),
        ..case("tolerance_zero_one_second_old", at(-1), TOO_OLD)
    });
    cases.push(Case {
        tolerance_seconds: Some(0),
        ..case("tolerance_zero_one_second_ahead", at(1), IN_FUTURE)
    });
    cases
}

/// 100,000 nested arrays: serde_json's recursion limit must turn this into an error, not a
/// stack overflow.
fn deep_nesting() -> Vec<u8> {
    let mut text = "[".repeat(100_000);
    text.push_str(&"]".repeat(100_000));
    text.into_bytes()
}
