//! Any bytes as a manifest file: validated pools or errors with a position, never a
//! panic, and every error names the file.
#![no_main]

use std::path::Path;

use invok::api::ScalingDefaults;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("fuzz.yaml");
    let set = invok::manifest::load_str(file, &text, &ScalingDefaults::default());
    for e in &set.errors {
        assert_eq!(e.location.file, file);
        assert!(e.location.line >= 1 && e.location.column >= 1, "{e}");
    }
    for (name, pool) in &set.pools {
        assert_eq!(name, &pool.spec.name);
        let s = &pool.spec.scaling;
        assert!(s.min <= s.max, "{name}: min {} > max {}", s.min, s.max);
    }
});
