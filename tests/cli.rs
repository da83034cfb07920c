//! The kubectl-like command line end to end: `apply`, `diff` and `delete` on manifest
//! directories, `get` and `describe` against a running operator on real Docker, and the
//! failures people meet (invalid input, an unreachable server).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(60);

/// Runs `invok ARGS` with stdin `input`, without the caller's INVOK_* settings.
fn invok_in(args: &[&str], input: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_invok"));
    cmd.args(args)
        .env_remove("INVOK_SERVER")
        .env_remove("INVOK_MANIFESTS")
        .env_remove("INVOK_ADMIN_TOKEN")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running invok");
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn invok(args: &[&str]) -> Output {
    invok_in(args, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both outputs when it differs.
#[track_caller]
fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Every file under `dir` with its bytes: equal snapshots mean nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A scratch directory with a `manifests/` directory and room for input files.
struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    manifests: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let manifests = root.join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        Scratch {
            _tmp: tmp,
            root,
            manifests,
        }
    }

    fn input(&self, name: &str, text: &str) -> String {
        let p = self.root.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn dir(&self) -> &str {
        self.manifests.to_str().unwrap()
    }
}

const MULTI: &str = "# two pools and a ConfigMap\napiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: a\nspec:\n  image: invok/demo-fn:latest\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\n# pool b\napiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: b\nspec:\n  image: invok/demo-fn:latest\n";

#[test]
fn apply_get_describe_and_delete_drive_a_running_operator() {
    let op = Operator::start("cli-e2e", &[]);
    let server = format!("http://127.0.0.1:{}", op.admin_port);
    let dir = op.dir.to_str().unwrap().to_string();
    let scratch = Scratch::new();
    let web = scratch.input(
        "web.yaml",
        &format!("# the web pool\n{}", pool_yaml("web", 1, 3, "")),
    );

    // created, and followed until ready.
    let o = invok(&[
        "apply",
        "-f",
        &web,
        "--manifests",
        &dir,
        "--server",
        &server,
        "--wait=60s",
    ]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).starts_with("functionpool/web created\n"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).ends_with("functionpool/web ready 1/1\n"),
        "{}",
        stdout(&o)
    );
    let written = std::fs::read_to_string(op.dir.join("web.yaml")).unwrap();
    assert!(
        written.starts_with("# the web pool\n"),
        "comments are kept: {written}"
    );
    op.wait_converged("web", 1, T);

    // unchanged: the same content (formatting aside) writes nothing.
    let before = snapshot(&op.dir);
    let reformatted = scratch.input(
        "web2.yaml",
        &pool_yaml("web", 1, 3, "").replace("  image:", "  # same image\n  image:"),
    );
    let o = invok(&["apply", "-f", &reformatted, "--manifests", &dir]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "functionpool/web unchanged\n");
    assert_eq!(snapshot(&op.dir), before);

    // configured, from stdin.
    let o = invok_in(
        &[
            "apply",
            "-f",
            "-",
            "--manifests",
            &dir,
            "--server",
            &server,
            "--wait=60s",
        ],
        Some(&pool_yaml("web", 2, 3, "")),
    );
    expect_code(&o, 0);
    assert!(
        stdout(&o).starts_with("functionpool/web configured\n"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).ends_with("functionpool/web ready 2/2\n"),
        "{}",
        stdout(&o)
    );
    op.wait_converged("web", 2, T);
    let names: Vec<String> = running(&op.instance, "web")
        .into_iter()
        .map(|c| c.name)
        .collect();

    // get, in every format.
    let o = invok(&["get", "--server", &server]);
    expect_code(&o, 0);
    let table = stdout(&o);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "DESIRED", "MIN", "MAX", "STATUS", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..6], ["web", "2/2", "2", "2", "3", "Ready"], "{table}");

    let o = invok(&["get", "web", "-o", "wide", "--server", &server]);
    expect_code(&o, 0);
    let wide = stdout(&o);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header[7..], ["IMAGE", "CPU", "MEMORY", "REASON"], "{wide}");
    assert!(wide.contains(IMAGE), "{wide}");

    let o = invok(&["get", "web", "-o", "json", "--server", &server]);
    expect_code(&o, 0);
    let one: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(one["name"], "web");
    assert_eq!(one["summary"]["ready_containers"], 2);
    assert_eq!(one["containers"].as_array().unwrap().len(), 2);

    let o = invok(&["get", "-o", "json", "--server", &server]);
    expect_code(&o, 0);
    let all: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(all["items"][0]["name"], "web");

    let o = invok(&["get", "-o", "yaml", "--server", &server]);
    expect_code(&o, 0);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&stdout(&o)).unwrap();
    assert_eq!(yaml["items"][0]["name"].as_str(), Some("web"));

    let o = invok(&["get", "web", "-o", "yaml", "--server", &server]);
    expect_code(&o, 0);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&stdout(&o)).unwrap();
    assert_eq!(yaml["spec"]["scaling"]["min"].as_u64(), Some(2));

    let o = invok(&["get", "-o", "name", "--server", &server]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "functionpool/web\n");

    // describe lists the containers.
    let o = invok(&["describe", "web", "--server", &server]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.starts_with("Name:"), "{text}");
    for section in ["Conditions:", "Containers:", "Events:"] {
        assert!(text.contains(section), "{section} in {text}");
    }
    for n in &names {
        assert!(text.contains(n.as_str()), "{n} in {text}");
    }

    // get -w sees the pool go away after delete.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(["get", "-w", "--server", &server])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let mut out = watch.stdout.take().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    eventually(T, "get -w prints the table", || {
        seen.lock().unwrap().contains("web")
    });

    // delete prunes the containers.
    let o = invok(&[
        "delete",
        "web",
        "--manifests",
        &dir,
        "--server",
        &server,
        "--wait=60s",
    ]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).starts_with("functionpool/web deleted\n"),
        "{}",
        stdout(&o)
    );
    assert!(!op.dir.join("web.yaml").exists());
    assert!(running(&op.instance, "web").is_empty());
    eventually(T, "the operator forgets the pool", || {
        http_get(op.admin_port, "/api/v1/pools/web").map(|r| r.0) == Ok(404)
    });
    eventually(T, "get -w prints the pool as Deleted", || {
        seen.lock()
            .unwrap()
            .lines()
            .any(|l| l.starts_with("web") && l.contains("Deleted"))
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let watched = seen.lock().unwrap().clone();
    assert_eq!(watched.matches("NAME").count(), 1, "one header: {watched}");

    let o = invok(&["get", "web", "--server", &server]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("functionpool/web not found"),
        "{}",
        stderr(&o)
    );
    let o = invok(&["delete", "web", "--manifests", &dir]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("functionpool/web not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dry_run_and_invalid_input_leave_the_directory_byte_identical() {
    let s = Scratch::new();
    std::fs::write(s.manifests.join("multi.yaml"), MULTI).unwrap();
    std::fs::write(
        s.manifests.join("hello.yaml"),
        "# keep me\n".to_string() + &pool_yaml("hello", 1, 2, ""),
    )
    .unwrap();
    let before = snapshot(&s.manifests);

    // --dry-run reports but writes nothing.
    let new = s.input("new.yaml", &pool_yaml("new", 1, 2, ""));
    let changed = s.input("hello-3.yaml", &pool_yaml("hello", 3, 4, ""));
    let o = invok(&[
        "apply",
        "-f",
        &new,
        "-f",
        &changed,
        "--manifests",
        s.dir(),
        "--dry-run",
    ]);
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "functionpool/hello configured (dry run)\nfunctionpool/new created (dry run)\n"
    );
    assert_eq!(snapshot(&s.manifests), before);

    // One invalid document among valid ones: nothing is written, every error is named.
    let bad = s.input(
        "bad.yaml",
        &(pool_yaml("ok", 1, 2, "")
            + "---\n"
            + &pool_yaml("bad", 1, 2, "").replace("maxContainers", "maxContainer")),
    );
    let o = invok(&["apply", "-f", &new, "-f", &bad, "--manifests", s.dir()]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("bad.yaml:20:5: spec.scaling.maxContainer: unknown field"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(snapshot(&s.manifests), before);

    // Semantic errors and bad YAML too.
    let min_over_max = s.input("mm.yaml", &pool_yaml("mm", 5, 2, ""));
    let not_yaml = s.input("broken.yaml", "apiVersion: [\n");
    for input in [&min_over_max, &not_yaml] {
        let o = invok(&["apply", "-f", &new, "-f", input, "--manifests", s.dir()]);
        expect_code(&o, 1);
        assert_eq!(snapshot(&s.manifests), before);
    }

    // The same pool twice in the input.
    let twice = s.input("twice.yaml", &pool_yaml("new", 1, 2, ""));
    let o = invok(&["apply", "-f", &new, "-f", &twice, "--manifests", s.dir()]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("declared twice"), "{}", stderr(&o));
    assert_eq!(snapshot(&s.manifests), before);

    // A change to a pool that shares its file is refused, naming the file.
    let a_changed = s.input("a.yaml", &pool_yaml("a", 2, 3, ""));
    let o = invok(&[
        "apply",
        "-f",
        &new,
        "-f",
        &a_changed,
        "--manifests",
        s.dir(),
    ]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("multi.yaml together with other documents"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&s.manifests), before);

    // A missing manifest directory is an error, not a new directory.
    let missing = s.root.join("nope");
    let o = invok(&[
        "apply",
        "-f",
        &new,
        "--manifests",
        missing.to_str().unwrap(),
    ]);
    expect_code(&o, 1);
    assert!(!missing.exists());

    // And a real apply writes exactly one new file and rewrites the changed one.
    let o = invok(&["apply", "-f", &new, "-f", &changed, "--manifests", s.dir()]);
    expect_code(&o, 0);
    let after = snapshot(&s.manifests);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        after[&s.manifests.join("new.yaml")],
        pool_yaml("new", 1, 2, "").into_bytes()
    );
    assert_eq!(
        after[&s.manifests.join("hello.yaml")],
        pool_yaml("hello", 3, 4, "").into_bytes()
    );
    assert_eq!(after[&s.manifests.join("multi.yaml")], MULTI.as_bytes());
    let leftovers: Vec<_> = std::fs::read_dir(&s.manifests)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn apply_reads_directories_and_recurses_only_with_r() {
    let s = Scratch::new();
    let input = s.root.join("pools");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    std::fs::write(input.join("top.yaml"), pool_yaml("top", 1, 2, "")).unwrap();
    std::fs::write(input.join("nested/deep.yml"), pool_yaml("deep", 1, 2, "")).unwrap();
    std::fs::write(input.join("notes.txt"), "not a manifest").unwrap();
    let input = input.to_str().unwrap();

    let o = invok(&["apply", "-f", input, "--manifests", s.dir(), "--dry-run"]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "functionpool/top created (dry run)\n");
    let o = invok(&["apply", "-R", "-f", input, "--manifests", s.dir()]);
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "functionpool/deep created\nfunctionpool/top created\n"
    );
    assert!(s.manifests.join("deep.yaml").exists() && s.manifests.join("top.yaml").exists());
}

#[test]
fn diff_exits_0_without_changes_1_with_changes_and_2_on_errors() {
    let s = Scratch::new();
    let web = s.input("web.yaml", &pool_yaml("web", 1, 2, ""));

    // A pool apply would create.
    let o = invok(&["diff", "-f", &web, "--manifests", s.dir()]);
    expect_code(&o, 1);
    let out = stdout(&o);
    assert!(out.starts_with("--- /dev/null\n+++ "), "{out}");
    assert!(out.contains("+  name: web\n"), "{out}");
    assert!(snapshot(&s.manifests).is_empty(), "diff writes nothing");

    // Applied: no difference, even when only comments and formatting differ.
    expect_code(&invok(&["apply", "-f", &web, "--manifests", s.dir()]), 0);
    let o = invok(&["diff", "-f", &web, "--manifests", s.dir()]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "");
    let commented = s.input("c.yaml", &format!("# note\n{}", pool_yaml("web", 1, 2, "")));
    expect_code(
        &invok(&["diff", "-f", &commented, "--manifests", s.dir()]),
        0,
    );

    // A change: the changed lines, as a unified diff.
    let changed = s.input("web3.yaml", &pool_yaml("web", 1, 3, ""));
    let o = invok(&["diff", "-f", &changed, "--manifests", s.dir()]);
    expect_code(&o, 1);
    let out = stdout(&o);
    assert!(
        out.contains("-    maxContainers: 2\n+    maxContainers: 3\n"),
        "{out}"
    );

    // Errors: invalid input, a missing directory.
    let bad = s.input("bad.yaml", &pool_yaml("bad", 3, 2, ""));
    let o = invok(&["diff", "-f", &bad, "--manifests", s.dir()]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("bad.yaml:"), "{}", stderr(&o));
    let o = invok(&["diff", "-f", &web, "--manifests", "/nonexistent/manifests"]);
    expect_code(&o, 2);
}

#[test]
fn delete_rewrites_a_shared_file_without_the_pool_and_removes_a_file_left_empty() {
    let s = Scratch::new();
    std::fs::write(s.manifests.join("multi.yaml"), MULTI).unwrap();
    std::fs::write(s.manifests.join("c.yaml"), pool_yaml("c", 1, 2, "")).unwrap();
    let before = snapshot(&s.manifests);

    let o = invok(&["delete", "a", "--manifests", s.dir(), "--dry-run"]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "functionpool/a deleted (dry run)\n");
    assert_eq!(snapshot(&s.manifests), before);

    let o = invok(&["delete", "a", "c", "--manifests", s.dir()]);
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "functionpool/a deleted\nfunctionpool/c deleted\n"
    );
    assert!(!s.manifests.join("c.yaml").exists());
    let rest = std::fs::read_to_string(s.manifests.join("multi.yaml")).unwrap();
    assert!(!rest.contains("name: a\n"), "{rest}");
    assert!(
        rest.contains("kind: ConfigMap") && rest.contains("# pool b\n"),
        "{rest}"
    );
    let set = invok(&["validate", s.dir()]);
    expect_code(&set, 0);

    // By file, and an unknown name: exit 1, the others still deleted.
    let b = s.input("b.yaml", &pool_yaml("b", 1, 2, ""));
    let o = invok(&["delete", "-f", &b, "ghost", "--manifests", s.dir()]);
    expect_code(&o, 1);
    assert_eq!(stdout(&o), "functionpool/b deleted\n");
    assert!(
        stderr(&o).contains("functionpool/ghost not found"),
        "{}",
        stderr(&o)
    );
    let rest = std::fs::read_to_string(s.manifests.join("multi.yaml")).unwrap();
    assert!(
        !rest.contains("FunctionPool") && rest.contains("ConfigMap"),
        "{rest}"
    );
}

#[test]
fn an_unreachable_server_is_one_clear_line_and_exit_1() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let s = Scratch::new();
    let web = s.input("web.yaml", &pool_yaml("web", 1, 2, ""));
    for args in [
        vec!["get", "--server", &server],
        vec!["get", "web", "-o", "json", "--server", &server],
        vec!["describe", "web", "--server", &server],
        vec![
            "apply",
            "-f",
            &web,
            "--manifests",
            s.dir(),
            "--server",
            &server,
            "--wait=5s",
        ],
    ] {
        let o = invok(&args);
        expect_code(&o, 1);
        let err = stderr(&o);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {err}");
        assert!(
            errors[0].contains(&format!("cannot reach the Invok admin API at {server}"))
                && errors[0].contains("invok run"),
            "{args:?}: {err}"
        );
    }
    // INVOK_SERVER is read too.
    let o = Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(["get"])
        .env("INVOK_SERVER", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains(&server), "{}", stderr(&o));
}

#[test]
fn every_command_explains_itself_with_an_example() {
    for cmd in ["apply", "delete", "diff", "get", "describe"] {
        let o = invok(&[cmd, "--help"]);
        expect_code(&o, 0);
        let help = stdout(&o);
        assert!(help.contains("Example:"), "{cmd}: {help}");
        assert!(help.contains(&format!("invok {cmd}")), "{cmd}: {help}");
    }
    // Usage errors exit 2, as documented.
    expect_code(&invok(&["apply"]), 2);
    expect_code(&invok(&["get", "-o", "table2"]), 2);
}

/// Off loopback the admin API needs a token: `invok run` refuses at once, before it
/// locks or binds anything (no Docker involved), and says how to give one.
#[test]
fn an_admin_api_off_loopback_without_a_token_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut run = Command::new(env!("CARGO_BIN_EXE_invok"));
    run.args(["run", "--manifests"])
        .arg(tmp.path())
        .args(["--admin-listen", &format!("0.0.0.0:{port}")])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--instance", &unique("cli-open")])
        .env("INVOK_LOCK_DIR", tmp.path().join("lock"))
        .env_remove("INVOK_ADMIN_TOKEN");
    let (code, err) = run_within(&mut run, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{err}");
    for part in [
        &format!("--admin-listen 0.0.0.0:{port} is not a loopback address"),
        "needs a token",
        "INVOK_ADMIN_TOKEN",
        "--admin-token",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!tmp.path().join("lock").exists(), "nothing was locked");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on the admin port"
    );
}

/// With `INVOK_ADMIN_TOKEN` (here on loopback, where it is optional), every admin endpoint
/// but /healthz and /readyz wants `Authorization: Bearer <token>`; the clients send it
/// from the same variable (or `--token`) and say what is wrong on a 401; the token is
/// never logged.
#[test]
fn with_an_admin_token_the_admin_api_and_its_clients_require_it() {
    let token = format!("tok-{}", unique("secret"));
    let op = Operator::start_with_env(
        "cli-token",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &[],
        &[("INVOK_ADMIN_TOKEN", &token)],
    );
    let port = op.admin_port;
    let auth = format!("Authorization: Bearer {token}");
    eventually(T, "web has its container ready", || {
        http_get_with(port, "/status", &[&auth])
            .ok()
            .and_then(|(_, _, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["pools"]["web"]["ready_containers"] == 1)
    });
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    assert_ne!(http_get(port, "/readyz").unwrap().0, 401);
    for path in [
        "/status",
        "/api/v1/pools",
        "/api/v1/pools/web",
        "/api/v1/history",
        "/metrics",
    ] {
        let (code, head, body) = http_get_with(port, path, &[]).unwrap();
        assert_eq!(code, 401, "{path}");
        assert!(
            header_value(&head, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
            "{path}: {head}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].is_string(), "{path}: {body}");
        let wrong = format!("Authorization: Bearer {token}x");
        assert_eq!(
            http_get_with(port, path, &[&wrong]).unwrap().0,
            401,
            "{path}"
        );
        assert_eq!(
            http_get_with(port, path, &[&auth]).unwrap().0,
            200,
            "{path}"
        );
    }

    let server = format!("127.0.0.1:{port}");
    let client = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_invok"));
        cmd.args(args)
            .env("INVOK_SERVER", &server)
            .env_remove("INVOK_ADMIN_TOKEN")
            .env_remove("INVOK_MANIFESTS");
        if let Some(t) = token {
            cmd.env("INVOK_ADMIN_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let o = client(&["get"], Some(&token));
    expect_code(&o, 0);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("1/1")),
        "{}",
        stdout(&o)
    );
    let o = client(&["describe", "web", "--token", &token], None);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("Name:"), "{}", stdout(&o));
    let manifests = op.dir.to_str().unwrap();
    let api = tempfile::tempdir().unwrap();
    let api_file = api.path().join("api.yaml");
    std::fs::write(&api_file, pool_yaml("api", 1, 1, "")).unwrap();
    let api_file = api_file.to_str().unwrap();
    let o = client(
        &[
            "apply",
            "-f",
            api_file,
            "--manifests",
            manifests,
            "--wait=60s",
        ],
        Some(&token),
    );
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains("functionpool/api ready 1/1"),
        "{}",
        stdout(&o)
    );

    let o = client(&["get"], None);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("requires a token (HTTP 401)")
            && stderr(&o).contains("INVOK_ADMIN_TOKEN"),
        "{}",
        stderr(&o)
    );
    let o = client(&["get", "web"], Some("not-the-token"));
    expect_code(&o, 1);
    assert!(stderr(&o).contains("refused the token"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("not-the-token"), "{}", stderr(&o));
    assert!(!op.logs().contains(&token), "the token was logged");
}
