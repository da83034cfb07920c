//! Regressions of the manifest writers (`invok apply`, `delete`).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// `invok apply` of a new pool wrote its file with the temporary file's mode, 0600
/// (found in review of the move to `tempfile`): an operator running as another user than
/// the one who applied (`sudo invok apply`) could not read it, and the unreadable file
/// held every prune up. A new file must get what a plain create gives (0666 less the
/// umask), an existing one keeps its mode.
#[test]
fn a_pool_applied_into_a_new_file_is_readable_as_a_plain_file_is() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let input = dir.path().join("web.yaml");
    std::fs::write(
        &input,
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: invok/demo-fn:latest\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invok"))
        .arg("apply")
        .arg("-f")
        .arg(&input)
        .arg("--manifests")
        .arg(&manifests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    assert_eq!(mode(&manifests.join("web.yaml")), mode(&plain));
}
