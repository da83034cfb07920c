//! The gateway's handling of a client's path, query and headers: never a panic; a
//! target's path starts with `/` and keeps the query byte for byte; the headers sent on
//! carry no hop-by-hop header and name the client in `X-Forwarded-For`.
//!
//! Input: the path, a NUL, the query, a NUL, then `name: value` header lines.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let query = parts.next().map(String::from_utf8_lossy);
    let head = parts.next().unwrap_or_default();
    if let Some(t) = invok::gateway::target(&path, query.as_deref()) {
        assert!(!t.pool.is_empty());
        assert!(t.path_and_query.starts_with('/'), "{t:?}");
        if let Some(q) = &query {
            assert!(t.path_and_query.ends_with(&format!("?{q}")), "{t:?}");
        }
    }
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let client = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    let sent = invok::gateway::upstream_headers(headers, "fuzz", client);
    for hop in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(!sent.contains_key(hop), "{hop} was sent on: {sent:?}");
    }
    let xff = sent
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    assert!(xff.contains("127.0.0.1"), "X-Forwarded-For: {xff:?}");
});
