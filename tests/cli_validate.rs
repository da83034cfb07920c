//! `invok validate` as CI runs it: exit codes and FILE:LINE:COL messages.

use std::path::Path;
use std::process::{Command, Output};

fn invok(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(args)
        .output()
        .unwrap()
}

const GOOD: &str = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: invok/demo-fn:latest\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn the_examples_validate_with_exit_0() {
    let out = invok(&[
        "validate",
        concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 pool(s) valid"));
}

#[test]
fn every_kind_of_bad_input_exits_1_with_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        (
            "unknown-field.yaml",
            GOOD.replace("  image:", "  imag: x\n  image:"),
            ":6:3: spec.imag: unknown field",
        ),
        (
            "bad-yaml.yaml",
            "apiVersion: [\n".to_string(),
            ":2:1: invalid YAML",
        ),
        (
            "bad-kind.yaml",
            GOOD.replace("kind: FunctionPool", "kind: Function"),
            ":2:1: kind: unknown kind",
        ),
        (
            "bad-version.yaml",
            GOOD.replace("v1alpha1", "v9"),
            ":1:1: apiVersion: unsupported version",
        ),
        (
            "no-kind.yaml",
            GOOD.replace("kind: FunctionPool\n", ""),
            ":1:1: document has no kind",
        ),
        (
            "min-max.yaml",
            format!("{GOOD}  scaling:\n    minContainers: 4\n    maxContainers: 2\n"),
            ":9:5: spec.scaling.maxContainers: minContainers (4)",
        ),
        (
            "threshold.yaml",
            format!("{GOOD}  scaling:\n    cpuOverloadThreshold: 1.5\n"),
            ":8:5: spec.scaling.cpuOverloadThreshold: must be in (0, 1]",
        ),
        (
            "name.yaml",
            GOOD.replace("name: web", "name: Web_1"),
            ":4:3: metadata.name: \"Web_1\" is not a DNS-1123 label",
        ),
        (
            "port.yaml",
            format!("{GOOD}  port: 0\n"),
            ":7:3: spec.port: must be between 1 and 65535",
        ),
        (
            "poll.yaml",
            format!("{GOOD}  scaling:\n    pollInterval: 0s\n"),
            ":8:5: spec.scaling.pollInterval: must be greater than 0",
        ),
        (
            "timeout.yaml",
            format!("{GOOD}  timeout: 0s\n"),
            ":7:3: spec.timeout: must be greater than 0",
        ),
        (
            "timeout-unit.yaml",
            format!("{GOOD}  timeout: 5 minutes\n"),
            ":7:3: spec.timeout: invalid",
        ),
        (
            "image.yaml",
            GOOD.replace("invok/demo-fn:latest", "''"),
            ":6:3: spec.image: must not be empty",
        ),
        (
            "memory.yaml",
            format!("{GOOD}  resources:\n    memory: 1XB\n"),
            ":8:5: spec.resources.memory: invalid unit",
        ),
    ];
    for (name, text, expected) in &cases {
        let path = write(d, name, text);
        let out = invok(&["validate", &path]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(
            stdout.starts_with(&format!("{path}{expected}")),
            "{name}: wanted {path}{expected}, got {stdout}"
        );
    }
    // A name declared in two files names both places.
    let a = write(d, "dup-a.yaml", GOOD);
    let b = write(d, "dup-b.yaml", GOOD);
    let out = invok(&["validate", &a, &b]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.starts_with(&format!(
            "{b}:4:3: metadata.name: pool \"web\" is declared twice; first at {a}:4:3"
        )),
        "{stdout}"
    );
}

#[test]
fn all_errors_of_all_files_are_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.yaml",
        &GOOD.replace("  image:", "  imag: x\n  image:"),
    );
    let b = write(
        dir.path(),
        "b.yaml",
        &format!(
            "{}---\n{}",
            GOOD.replace("web", "one")
                .replace("invok/demo-fn:latest", "''"),
            GOOD.replace("web", "two").replace("8080", "0")
        ),
    );
    let out = invok(&["validate", &a, &b]);
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, 2, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn json_output_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", &format!("{GOOD}  port: 0\n"));
    let out = invok(&["validate", "-o", "json", &a]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["file"], a.as_str());
    assert_eq!(v["errors"][0]["line"], 7);
    assert_eq!(v["errors"][0]["column"], 3);
    assert_eq!(v["errors"][0]["field"], "spec.port");
    let ok = write(dir.path(), "ok.yaml", GOOD);
    let out = invok(&["validate", "-o", "json", &ok]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["pools"][0]["name"], "web");
}

#[test]
fn usage_errors_exit_2_and_every_command_has_help_with_an_example() {
    assert_eq!(invok(&["validate"]).status.code(), Some(2));
    assert_eq!(
        invok(&["validate", "-o", "xml", "x"]).status.code(),
        Some(2)
    );
    assert_eq!(invok(&["frobnicate"]).status.code(), Some(2));
    for cmd in ["validate", "schema"] {
        let out = invok(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Example:"),
            "{cmd} --help lacks an example"
        );
    }
}

#[test]
fn a_bad_environment_default_stops_validation_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_invok"))
        .args([
            "validate",
            concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"),
        ])
        .env("CPU_OVERLOAD_THRESHOLD", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CPU_OVERLOAD_THRESHOLD"));
}
