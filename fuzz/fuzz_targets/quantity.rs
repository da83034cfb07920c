//! Quantities and durations: never a panic, and what parses prints back to the same
//! value (a duration shown by `invok describe` reads back as itself).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = invok::api::parse_bytes(s);
    if let Ok(d) = invok::api::parse_duration(s) {
        let shown = invok::api::format_duration(d);
        let back = invok::api::parse_duration(&shown)
            .unwrap_or_else(|e| panic!("{s:?} -> {d:?} shown as {shown:?}: {e}"));
        assert_eq!(back, d, "{s:?} shown as {shown:?}");
    }
});
