//! What the gateway changes in a request on its way to a function, and in the answer on
//! its way back: pure functions over URIs and headers, so every rule is unit-tested.
//!
//! - The function gets the path after `/function/{name}` and the query exactly as the
//!   client sent them: percent-escapes such as `%2F`, `%3F` and `%20` are not decoded.
//! - Headers that belong to one connection (RFC 9110 7.6.1) are dropped both ways.
//! - `X-Forwarded-For` gets the client's address appended; `X-Forwarded-Proto` and
//!   `X-Forwarded-Host` say what the client asked for (kept when a proxy in front of the
//!   gateway already set them, since it knows the original scheme and host);
//!   `X-Forwarded-Prefix` is `/function/{name}`.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

/// The prefix every gateway route starts with.
pub const PREFIX: &str = "/function/";

/// A gateway URL split into the pool it names and what goes on to the function.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The pool (the path segment after `/function/`, as sent).
    pub pool: &'a str,
    /// The path and query for the function, as sent: always starts with `/`.
    pub path_and_query: String,
}

/// Splits `/function/{name}[/{rest}][?query]` (raw, still percent-encoded); `None` for
/// any other path or an empty name.
pub fn target<'a>(path: &'a str, query: Option<&str>) -> Option<Target<'a>> {
    let after = path.strip_prefix(PREFIX)?;
    let (pool, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if pool.is_empty() {
        return None;
    }
    let path_and_query = match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    Some(Target {
        pool,
        path_and_query,
    })
}

/// Headers that belong to one connection, not to the message (RFC 9110 7.6.1).
/// `HeaderName`s rather than strings: a string is parsed into a name at each use, which
/// showed in the gateway's profile (issue 15).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Drops the hop-by-hop headers, and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Turns a client's request headers into the function's: hop-by-hop headers dropped,
/// `Host` replaced by the container's (the client's moves to `X-Forwarded-Host`), the
/// client appended to `X-Forwarded-For`, and `X-Forwarded-Proto`/`-Prefix` set.
pub fn upstream_headers(mut headers: HeaderMap, pool: &str, client: Option<IpAddr>) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    let host = headers.remove(header::HOST);
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(ip) = client {
        append_forwarded_for(&mut headers, ip);
    }
    let prefix = HeaderValue::from_str(&format!("{PREFIX}{pool}"))
        .unwrap_or(HeaderValue::from_static("/function"));
    headers.insert(X_FORWARDED_PREFIX, prefix);
    headers
}

/// `X-Forwarded-For: <earlier hops>, <client>`: one header whatever the client sent,
/// as proxies append (a client may send several lines; they are one list).
fn append_forwarded_for(headers: &mut HeaderMap, ip: IpAddr) {
    let earlier: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let mut list = earlier.join(", ");
    if !list.is_empty() {
        list.push_str(", ");
    }
    list.push_str(&ip.to_string());
    if let Ok(v) = HeaderValue::from_str(&list) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn t(path: &str, query: Option<&str>) -> Option<(String, String)> {
        target(path, query).map(|t| (t.pool.to_string(), t.path_and_query))
    }

    #[test]
    fn the_path_and_query_go_on_byte_for_byte() {
        let cases = [
            ("/function/web", None, ("web", "/")),
            ("/function/web/", None, ("web", "/")),
            ("/function/web/a/b", Some("x=1"), ("web", "/a/b?x=1")),
            ("/function/web/a%2Fb", None, ("web", "/a%2Fb")),
            (
                "/function/web/a%3Fb%20c",
                Some("q=%3F&r=%2F&s=%20"),
                ("web", "/a%3Fb%20c?q=%3F&r=%2F&s=%20"),
            ),
            ("/function/web//double//", None, ("web", "//double//")),
            ("/function/web", Some(""), ("web", "/?")),
            (
                "/function/web/%E2%82%AC",
                Some("a=b=c&&"),
                ("web", "/%E2%82%AC?a=b=c&&"),
            ),
        ];
        for (path, query, (pool, rest)) in cases {
            assert_eq!(
                t(path, query),
                Some((pool.to_string(), rest.to_string())),
                "{path} {query:?}"
            );
        }
    }

    #[test]
    fn other_paths_name_no_pool() {
        for path in [
            "/",
            "/function",
            "/function/",
            "/function//x",
            "/functions/web",
            "/x/function/web",
        ] {
            assert_eq!(t(path, None), None, "{path}");
        }
    }

    /// A header map of `pairs` (names may repeat), for tests.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn all(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)));

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let h = upstream_headers(
            headers(&[
                ("connection", "keep-alive, x-secret-hop"),
                ("x-secret-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic x"),
                ("trailer", "x-sum"),
                ("x-kept", "yes"),
                ("authorization", "Bearer kept"),
            ]),
            "web",
            CLIENT,
        );
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "te",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "trailer",
        ] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(all(&h, "x-kept"), ["yes"]);
        assert_eq!(
            all(&h, "authorization"),
            ["Bearer kept"],
            "end-to-end headers stay"
        );
    }

    #[test]
    fn forwarded_headers_say_who_asked_for_what() {
        let h = upstream_headers(headers(&[("host", "api.example:8080")]), "web", CLIENT);
        assert!(
            !h.contains_key("host"),
            "the client's Host is not the container's"
        );
        assert_eq!(all(&h, "x-forwarded-host"), ["api.example:8080"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(all(&h, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(all(&h, "x-forwarded-prefix"), ["/function/web"]);
    }

    #[test]
    fn x_forwarded_for_is_appended_to_not_replaced() {
        let h = upstream_headers(
            headers(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "198.51.100.2 , "),
            ]),
            "web",
            CLIENT,
        );
        assert_eq!(
            all(&h, "x-forwarded-for"),
            ["203.0.113.9, 198.51.100.2, 10.0.0.7"]
        );
        let v6 = upstream_headers(HeaderMap::new(), "web", Some("::1".parse().unwrap()));
        assert_eq!(all(&v6, "x-forwarded-for"), ["::1"]);
        let unknown = upstream_headers(HeaderMap::new(), "web", None);
        assert!(!unknown.contains_key("x-forwarded-for"));
    }

    #[test]
    fn a_proxy_in_front_keeps_its_proto_and_host() {
        let h = upstream_headers(
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.example"),
            ]),
            "web",
            CLIENT,
        );
        assert_eq!(all(&h, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["api.example"]);
    }
}
