//! The prune rules: nothing a broken edit does may remove a pool that still has a file.

use std::path::Path;

use super::*;

fn pool(name: &str, min: u32) -> String {
    format!(
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: {name}\nspec:\n  image: invok/demo-fn:latest\n  scaling:\n    minContainers: {min}\n"
    )
}

/// A manifest directory and the desired state read from it.
struct Dir {
    dir: tempfile::TempDir,
    desired: Desired,
}

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let mut d = Dir {
            dir: tempfile::tempdir().unwrap(),
            desired: Desired::default(),
        };
        for (name, text) in files {
            d.write(name, text);
        }
        d.read();
        d.read();
        d
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn delete(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }

    fn read(&mut self) -> BTreeSet<String> {
        let set = crate::manifest::load_dir(self.dir.path(), &Default::default()).unwrap();
        self.desired.apply(set)
    }

    fn declared(&self, name: &str) -> bool {
        self.desired.pools.contains_key(name)
    }

    /// After three more reads with the directory as it is: the pool is still declared
    /// and may not be pruned, and is reported invalid with a message naming the file.
    fn kept_as_invalid(&mut self, name: &str, file: &str) {
        for _ in 0..3 {
            self.read();
            assert!(self.declared(name), "{name} was dropped");
            assert!(!self.desired.may_prune(name), "{name} may be pruned");
        }
        let why = self.desired.invalid.get(name).expect("reported invalid");
        assert!(why.contains(file), "{why}");
    }
}

#[test]
fn a_typo_in_metadata_keeps_the_pool_it_declared() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2))]);
    d.write("web.yaml", &pool("web", 2).replace("metadata:", "metadta:"));
    d.kept_as_invalid("web", "web.yaml");
}

#[test]
fn a_misspelt_api_group_keeps_the_pool_it_declared() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2))]);
    d.write(
        "web.yaml",
        &pool("web", 2).replace("invok.dev/", "invok.de/"),
    );
    d.kept_as_invalid("web", "web.yaml");
    assert!(
        d.desired.prune_blocked,
        "a misspelt FunctionPool may hide a pool"
    );
}

#[test]
fn an_invalid_name_keeps_the_pool_it_declared() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2))]);
    d.write(
        "web.yaml",
        &pool("web", 2).replace("name: web", "name: Web"),
    );
    d.kept_as_invalid("web", "web.yaml");
}

#[test]
fn a_yaml_syntax_error_keeps_the_pool_it_declared() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2))]);
    d.write("web.yaml", "apiVersion: [\n");
    d.kept_as_invalid("web", "web.yaml");
}

#[test]
fn an_empty_file_is_not_a_deletion() {
    // An editor truncates, then writes: a read in between sees an empty file.
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2))]);
    d.write("web.yaml", "");
    d.kept_as_invalid("web", "web.yaml");
    let spec = d.desired.pools["web"].spec.clone();
    d.write("web.yaml", &pool("web", 2));
    d.read();
    assert!(!d.desired.invalid.contains_key("web"));
    assert_eq!(
        d.desired.pools["web"].spec, spec,
        "the same spec: nothing restarts"
    );
}

#[test]
fn a_file_left_with_only_other_resources_keeps_the_pool() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2))]);
    d.write(
        "web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
    );
    d.kept_as_invalid("web", "web.yaml");
}

#[test]
fn a_deleted_file_prunes_its_pool_once_a_second_read_agrees() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2)), ("api.yaml", &pool("api", 1))]);
    d.delete("web.yaml");
    let changed = d.read();
    assert!(d.declared("web"), "pruned on the first read");
    assert!(!changed.contains("web"));
    assert!(d.desired.wants_confirming_read());
    let changed = d.read();
    assert!(changed.contains("web"));
    assert!(!d.declared("web"));
    assert!(d.desired.may_prune("web"));
    assert!(!d.desired.may_prune("api"));
}

#[test]
fn a_clean_file_that_drops_a_pool_prunes_it_once_a_second_read_agrees() {
    let both = format!("{}---\n{}", pool("web", 2), pool("api", 1));
    let mut d = Dir::new(&[("pools.yaml", &both)]);
    d.write("pools.yaml", &pool("api", 1));
    d.read();
    assert!(d.declared("web"));
    d.read();
    assert!(!d.declared("web") && d.desired.may_prune("web"));
}

#[test]
fn a_pool_moved_to_another_file_is_never_changed_nor_pruned() {
    let mut d = Dir::new(&[("a.yaml", &pool("web", 2))]);
    // Seen mid-way: gone from a.yaml, not yet in b.yaml.
    d.delete("a.yaml");
    let mid = d.read();
    assert!(mid.is_empty(), "{mid:?}");
    d.write("b.yaml", &pool("web", 2));
    let after = d.read();
    assert!(after.is_empty(), "{after:?}");
    assert!(d.declared("web") && !d.desired.may_prune("web"));
    // Seen in both at once: declared twice, an error; the last valid spec stays.
    d.write("a.yaml", &pool("web", 2));
    d.read();
    assert!(d.declared("web") && !d.desired.may_prune("web"));
    d.delete("a.yaml");
    for _ in 0..3 {
        d.read();
    }
    assert!(d.declared("web") && d.desired.invalid.is_empty());
}

#[test]
fn orphans_wait_for_two_reads_and_for_every_file_to_parse() {
    let mut d = Dir {
        dir: tempfile::tempdir().unwrap(),
        desired: Desired::default(),
    };
    d.write("api.yaml", &pool("api", 1));
    d.read();
    assert!(!d.desired.may_prune("old"), "pruned after one read");
    d.read();
    assert!(d.desired.may_prune("old"));
    d.write("broken.yaml", "kind: [\n");
    d.read();
    assert!(!d.desired.may_prune("old"), "a broken file may declare it");
}

#[test]
fn the_file_report_names_why_dropped_pools_are_kept() {
    let set = crate::manifest::load_str(Path::new("x.yaml"), "", &Default::default());
    let report = &set.files[Path::new("x.yaml")];
    assert_eq!(report.keeps_dropped_pools(), Some("the file is empty"));
    assert!(
        report.may_hide_pools(true),
        "a truncated pool file may hide its pools"
    );
    assert!(
        !report.may_hide_pools(false),
        "an empty placeholder hides nothing"
    );
}

#[test]
fn an_empty_placeholder_file_does_not_block_prunes() {
    let mut d = Dir::new(&[
        ("web.yaml", &pool("web", 2)),
        ("notes.yaml", "# nothing here yet\n"),
    ]);
    d.delete("web.yaml");
    d.read();
    d.read();
    assert!(!d.declared("web") && d.desired.may_prune("web"));
}

#[test]
fn a_prune_blocked_by_a_broken_file_says_so() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2)), ("api.yaml", &pool("api", 1))]);
    d.delete("web.yaml");
    d.write("api.yaml", "spec: [\n");
    d.read();
    let why = d.desired.invalid.get("web").expect("reported");
    assert!(
        why.contains("api.yaml") && why.contains("web.yaml"),
        "{why}"
    );
    // Nothing new: a further read wakes no pool.
    assert!(d.read().is_empty());
}

#[test]
fn a_missing_directory_is_not_polled_at_the_debounce() {
    let d = Desired::default();
    assert!(
        !d.wants_confirming_read(),
        "no successful read yet: the rescan interval"
    );
}

#[test]
fn a_deleted_pool_is_not_pruned_while_another_file_is_broken() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2)), ("api.yaml", &pool("api", 1))]);
    d.delete("web.yaml");
    d.write("api.yaml", "spec: [\n");
    for _ in 0..3 {
        d.read();
        assert!(
            d.declared("web"),
            "pruned while api.yaml (which may declare it) is broken"
        );
        assert!(
            !d.desired.wants_confirming_read(),
            "re-reads a broken directory at once"
        );
    }
    d.write("api.yaml", &pool("api", 1));
    d.read();
    assert!(!d.declared("web") && d.desired.may_prune("web"));
}

#[test]
fn after_a_restart_an_empty_file_holds_orphan_prunes_up() {
    // A new operator cannot tell an empty file from one caught mid-rewrite that declared
    // the pool whose containers it finds.
    let mut d = Dir::new(&[("web.yaml", ""), ("api.yaml", &pool("api", 1))]);
    d.read();
    assert!(
        !d.desired.may_prune("web"),
        "an orphan pruned beside an empty file"
    );
    d.write("web.yaml", "# still nothing\n");
    d.read();
    assert!(!d.desired.may_prune("web"));
    d.delete("web.yaml");
    d.read();
    assert!(d.desired.may_prune("web"));
}

#[test]
fn a_deleted_file_replaced_by_other_resources_prunes_its_pool() {
    let mut d = Dir::new(&[("web.yaml", &pool("web", 2)), ("api.yaml", &pool("api", 1))]);
    d.delete("web.yaml");
    d.read();
    assert!(d.declared("web"), "pruned on the first read");
    d.write(
        "web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
    );
    d.read();
    assert!(!d.declared("web") && d.desired.may_prune("web"));
}
