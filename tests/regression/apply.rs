//! Regressions of the manifest writers (`invok apply`, `delete`).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn pool(name: &str, max: u32) -> String {
    format!(
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: {name}\nspec:\n  image: invok/demo-fn:latest\n  scaling: {{maxContainers: {max}}}\n"
    )
}

fn invok(args: &[&str], manifests: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(args)
        .arg("--manifests")
        .arg(manifests)
        .env_remove("INVOK_MANIFESTS")
        .output()
        .unwrap()
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

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

/// `invok apply` of a changed pool whose manifest is a symbolic link (a file shared with
/// another checkout, say) renamed the new text over the link: the link became a plain
/// file and what it linked to silently stopped following the directory (found in review
/// of the walker's symlink rules; `delete` did the same to a file it rewrote). A linked
/// manifest is never rewritten: the command refuses, naming the link's target, and
/// changes nothing; a link whose file held only a deleted pool is removed, its target
/// kept.
#[test]
fn apply_and_delete_never_replace_a_linked_manifest_with_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let shared = dir.path().join("shared-web.yaml");
    std::fs::write(&shared, pool("web", 2)).unwrap();
    let link = manifests.join("web.yaml");
    symlink(&shared, &link).unwrap();
    let shared_two = dir.path().join("shared-two.yaml");
    std::fs::write(
        &shared_two,
        format!("{}---\n{}", pool("d", 2), pool("e", 2)),
    )
    .unwrap();
    let two_link = manifests.join("two.yaml");
    symlink(&shared_two, &two_link).unwrap();

    let changed = dir.path().join("web.yaml");
    std::fs::write(&changed, pool("web", 3)).unwrap();
    let o = invok(&["apply", "-f", changed.to_str().unwrap()], &manifests);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is a symbolic link to"), "{err}");
    assert!(is_link(&link));
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), pool("web", 2));

    let o = invok(&["delete", "d"], &manifests);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(is_link(&two_link));
    assert!(std::fs::read_to_string(&shared_two)
        .unwrap()
        .contains("name: d"));

    let o = invok(&["delete", "web"], &manifests);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the link is removed"
    );
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), pool("web", 2));
}
