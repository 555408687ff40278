//! One named test per case of the verification policy (docs/verification.md), run against
//! the native core. `tests/conformance.rs` sends the same cases to the worker in workerd.

mod support;

use std::collections::HashMap;

use stripe_edge::config::Config;
use stripe_edge::offline::trigger::now_seconds;
use stripe_edge::pipeline::decide;
use support::policy::{cases, Expected, SECRET};

/// What the native pipeline answers for one case: `None` for accepted, else the code.
pub fn native_answer(name: &str) -> (Expected, Expected) {
    let now = now_seconds();
    let case = cases(now)
        .into_iter()
        .find(|c| c.name == name)
        .expect("case exists");
    let mut vars = HashMap::from([("STRIPE_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())]);
    if let Some(tolerance) = case.tolerance_seconds {
        vars.insert("STRIPE_TOLERANCE_SECONDS".to_owned(), tolerance.to_string());
    }
    let config = Config::from_lookup(|n| vars.get(n).cloned()).expect("valid config");
    let answer = decide(&config, case.header.as_deref(), &case.body, now)
        .err()
        .map(|r| r.code());
    (answer, case.expected)
}

macro_rules! policy {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (answer, expected) = native_answer(stringify!($name));
                assert_eq!(answer, expected);
            }
        )*

        /// Every case in the table has a named test above.
        #[test]
        fn every_case_is_named() {
            let named = [$(stringify!($name)),*];
            for case in cases(now_seconds()) {
                assert!(named.contains(&case.name), "no named test for {}", case.name);
            }
        }
    };
}

policy!(
    valid,
    header_absent,
    header_empty,
    header_blank,
    header_free_text,
    duplicate_t_same_value,
    duplicate_t_conflicting,
    t_missing,
    t_empty,
    t_bare_without_equals,
    t_non_numeric,
    t_numeric_prefix,
    t_exponent,
    t_negative,
    t_plus_sign,
    t_space_inside_value,
    t_huge_16_digits,
    t_overflowing_int64,
    t_leading_zero_changes_signed_text,
    element_without_equals_is_ignored,
    trailing_comma_is_ignored,
    v1_empty_alone,
    v1_empty_then_valid,
    v1_bare_without_equals_then_valid,
    v1_non_hex,
    v1_non_ascii,
    v1_too_short,
    v1_too_long,
    v1_extra_equals,
    v1_upper_case_hex,
    spaces_around_elements,
    tabs_around_elements,
    v0_only,
    v0_and_unknown_schemes_beside_v1,
    first_v1_wrong_second_right,
    rolled_secret_both_v1,
    only_an_unconfigured_secret,
    header_sent_twice,
    header_sent_twice_different_t,
    many_v1_values,
    future_within_tolerance,
    future_beyond_tolerance,
    past_within_tolerance,
    past_beyond_tolerance,
    timestamp_zero,
    body_changed_after_signing,
    tolerance_zero_same_second,
    tolerance_zero_one_second_old,
    tolerance_zero_one_second_ahead,
    empty_body,
    non_utf8_body,
    utf8_bom_before_json,
    json_that_is_not_an_event,
    json_array,
    deeply_nested_json,
);
