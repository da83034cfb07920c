//! The dashboard (`GET /` on the admin API) in a real browser, and the history behind it.
//!
//! The browser test runs `tests/browser/dashboard.mjs` with node: Debian's `chromium`
//! driven by `playwright-core` (`bash scripts/browser-setup.sh` installs them; `.ci/run`
//! does). Without them it fails and says so: it never skips.
#![allow(
    clippy::disallowed_types,
    reason = "blocking tests against a real operator, on the wall clock"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Runs the browser script: (exit code, stdout, stderr); killed, and the test failed,
/// after `limit`.
fn run_browser(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and playwright-core: run `bash scripts/browser-setup.sh` (.ci/run does)"
    );
    run_capturing(
        Command::new("node")
            .arg(dir.join("dashboard.mjs"))
            .args(args)
            .current_dir(&dir),
        limit,
    )
}

#[test]
fn the_dashboard_shows_each_pool_with_charts_and_a_scale_up_without_a_reload() {
    let op = Operator::start(
        "dash",
        &[
            ("web.yaml", pool_yaml("web", 1, 3, "")),
            ("api.yaml", pool_yaml("api", 1, 2, "")),
        ],
    );
    op.wait_converged("web", 1, T);
    op.wait_converged("api", 1, T);
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target-screenshots");
    std::fs::create_dir_all(&shot).unwrap();
    let shot = std::env::var_os("INVOK_DASHBOARD_SCREENSHOT")
        .map_or_else(|| shot.join("dashboard.png"), PathBuf::from);
    let url = format!("http://127.0.0.1:{}/", op.admin_port);
    let manifest = op.dir.join("web.yaml");
    let (code, out, err) = run_browser(
        &[
            &url,
            "web",
            manifest.to_str().unwrap(),
            shot.to_str().unwrap(),
        ],
        Duration::from_secs(180),
    );
    assert_eq!(code, Some(0), "browser test: {err}\n{out}");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(seen["outside"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert!(
        seen["before"].as_str().unwrap().starts_with("1 ready"),
        "{seen}"
    );
    assert!(
        seen["after"].as_str().unwrap().starts_with("2 ready"),
        "{seen}"
    );
    assert_eq!(
        seen["pools"],
        serde_json::json!(["api", "web"]),
        "every pool on the page"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot at {shot:?}"
    );
    let history = op.get_json("/api/v1/history");
    for pool in ["web", "api"] {
        let samples = history["pools"][pool].as_array().expect("samples");
        assert!(!samples.is_empty(), "{pool}: {history}");
    }
    eprintln!("dashboard: {seen} (screenshot {shot:?})");
}

#[test]
fn the_history_follows_a_pool_and_the_page_is_served_whole_without_a_token() {
    let op = Operator::start_with(
        "dash-hist",
        &[("web.yaml", pool_yaml("web", 2, 3, ""))],
        &["--admin-token", "t0ken"],
    );
    // The page is open (it holds no data); the data behind it wants the token.
    let (status, head, body) = http_get_with(op.admin_port, "/", &[]).unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(
        body.contains("/api/v1/history") && !body.contains("http://") && !body.contains("https://")
    );
    let (status, _, _) = http_get_with(op.admin_port, "/api/v1/history", &[]).unwrap();
    assert_eq!(status, 401);
    let auth = ["Authorization: Bearer t0ken"];
    eventually(T, "2 ready in the history", || {
        let (_, _, body) = http_get_with(op.admin_port, "/api/v1/history", &auth).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["pools"]["web"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["ready"] == 2 && s["desired"] == 2)
    });
    // Requests through the gateway show as requests per second in the next sample.
    for _ in 0..20 {
        assert_eq!(http_get(op.gateway_port, "/function/web/").unwrap().0, 200);
    }
    eventually(T, "requests per second in the history", || {
        let (_, _, body) = http_get_with(op.admin_port, "/api/v1/history", &auth).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["pools"]["web"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["rps"].as_f64() > Some(0.0)))
    });
    let (_, _, body) = http_get_with(op.admin_port, "/api/v1/history", &auth).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Each rate times its sample's interval (t is in ms) counts the requests back.
    let samples = v["pools"]["web"].as_array().unwrap();
    let routed: f64 = samples
        .windows(2)
        .map(|w| {
            let dt = (w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap()) / 1000.0;
            w[1]["rps"].as_f64().unwrap() * dt
        })
        .sum();
    assert!(
        (19.0..=21.0).contains(&routed),
        "20 requests over the samples: {v}"
    );
    assert_eq!(v["windowSeconds"], 900);
    assert_eq!(v["sampleEverySeconds"], 2);
    let samples = v["pools"]["web"].as_array().unwrap();
    let times: Vec<u64> = samples.iter().map(|s| s["t"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );
}
