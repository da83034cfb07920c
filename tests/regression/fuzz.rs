//! Regression tests: inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found.

/// Found by the `quantity` fuzz target: a duration of 20 digits of seconds parsed
/// through a float came back another value (and a longer sum panicked on overflow).
#[test]
fn huge_durations_are_exact_or_out_of_range_never_rounded_nor_a_panic() {
    let e = invok::api::parse_duration("15510155510155055105s").unwrap_err();
    assert!(e.contains("out of range") && e.contains("2562047h"), "{e}");
    assert!(invok::api::parse_duration("18446744073709551615s1s").is_err());
    assert!(invok::api::parse_duration("99999999999999999999999999999999999999999h").is_err());
    assert_eq!(
        invok::api::parse_duration("2562047h47m16.854775807s"),
        Ok(invok::api::MAX_DURATION)
    );
    assert!(invok::api::parse_duration("2562047h47m16.854775808s").is_err());
    assert_eq!(
        invok::api::parse_duration("0.1s"),
        Ok(std::time::Duration::from_millis(100)),
        "decimals are exact"
    );
    assert_eq!(
        invok::api::parse_duration("1.0005s"),
        Ok(std::time::Duration::new(1, 500_000))
    );
}
