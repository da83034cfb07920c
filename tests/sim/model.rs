//! The manifest directory as the simulation models it: which pool lives in which file,
//! what each document says (valid, or broken in one of many ways), and what the operator
//! must therefore keep, may drop or must prune (the oracle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use invok::api::{EffectiveSpec, ScalingDefaults};

/// Pool names; one of them is usually scaled to zero.
pub const POOLS: [&str; 4] = ["web", "api", "batch", "zero"];
/// Files, one nested (the directory is read recursively).
pub const FILES: [&str; 4] = ["a.yaml", "b.yaml", "nested/c.yml", "d.yaml"];
/// Images the host has.
pub const IMAGES: [&str; 3] = ["invok/demo-fn:1", "invok/demo-fn:2", "invok/demo-fn:3"];

/// What a valid document of a pool says.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub name: &'static str,
    pub image: usize,
    pub env: u8,
    pub min: u32,
    pub max: u32,
    /// cpuOverloadThreshold, in hundredths.
    pub cpu: u32,
    /// cooldownCpuThreshold, in hundredths.
    pub idle: u32,
    /// memoryOverloadThreshold in MB.
    pub mem_mb: u32,
    pub cooldown_s: u32,
    pub poll_ms: u32,
    /// resources.cpus in hundredths of a core (none: one core).
    pub cpus: Option<u32>,
    /// targetRequestsPerSecond.
    pub rps: Option<u32>,
    /// predictive (defaults) on the request rate.
    pub predictive: bool,
    /// customMetrics `queue_depth`'s targetPerContainer.
    pub metric: Option<u32>,
}

impl PoolSpec {
    pub fn new(name: &'static str) -> PoolSpec {
        PoolSpec {
            name,
            image: 0,
            env: 0,
            min: 1,
            max: 3,
            // The operator's defaults (ScalingDefaults::default()).
            cpu: 70,
            idle: 10,
            mem_mb: 300,
            cooldown_s: 30,
            poll_ms: 2000,
            cpus: None,
            rps: None,
            predictive: false,
            metric: None,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.min <= self.max
            && self.max >= 1
            && self.idle < self.cpu
            && (!self.predictive || self.rps.is_some())
    }

    /// Whether the operator's validated spec says what this document says (the
    /// oracle's own reading: no parser involved). `Err` names the first difference.
    pub fn matches(&self, e: &EffectiveSpec) -> Result<(), String> {
        let close = |a: f64, b: u32| (a - b as f64 / 100.0).abs() < 1e-9;
        let env: Vec<(String, String)> = if self.env > 0 {
            vec![("MODE".into(), format!("v{}", self.env))]
        } else {
            Vec::new()
        };
        let t = &e.template;
        let s = &e.scaling;
        let checks = [
            ("name", e.name == self.name),
            ("image", t.image == IMAGES[self.image]),
            ("env", t.env == env),
            (
                "port",
                t.port == 8080 && t.command.is_none() && t.network.is_none() && t.memory.is_none(),
            ),
            (
                "cpus",
                match (t.cpus, self.cpus) {
                    (None, None) => true,
                    (Some(a), Some(b)) => close(a, b),
                    _ => false,
                },
            ),
            ("minContainers", s.min == self.min as usize),
            ("maxContainers", s.max == self.max as usize),
            (
                "cpuOverloadThreshold",
                close(s.cpu_overload_threshold, self.cpu),
            ),
            (
                "cooldownCpuThreshold",
                close(s.cooldown_cpu_threshold, self.idle),
            ),
            (
                "memoryOverloadThreshold",
                s.memory_overload_threshold == u64::from(self.mem_mb) * 1_000_000,
            ),
            (
                "cooldownDuration",
                s.cooldown_duration == std::time::Duration::from_secs(self.cooldown_s.into()),
            ),
            (
                "pollInterval",
                s.poll_interval == std::time::Duration::from_millis(self.poll_ms.into()),
            ),
            ("readiness", e.readiness == invok::api::Probe::Tcp),
            (
                "targetRequestsPerSecond",
                s.target_requests_per_second == self.rps.map(f64::from),
            ),
            (
                "predictive",
                s.predictive.as_ref().map(|p| (p.horizon, p.window))
                    == self.predictive.then_some((
                        invok::api::DEFAULT_HORIZON,
                        invok::api::DEFAULT_FORECAST_WINDOW,
                    )),
            ),
            (
                "customMetrics",
                s.custom_metrics
                    .iter()
                    .map(|m| (m.name.as_str(), m.path.as_str(), m.target_per_container))
                    .collect::<Vec<_>>()
                    == self
                        .metric
                        .map(|t| ("queue_depth", "/metrics", f64::from(t)))
                        .into_iter()
                        .collect::<Vec<_>>(),
            ),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            None => Ok(()),
            Some((field, _)) => Err(format!(
                "{field} differs: the manifest says {self:?}, the operator has {e:?}"
            )),
        }
    }

    /// The document's YAML.
    /// The document's YAML, with the scaling fields that equal the operator's defaults
    /// left out (as users write them; short documents also parse faster).
    pub fn render(&self) -> String {
        self.render_with(false)
    }

    /// The document's YAML with every field written out.
    pub fn render_full(&self) -> String {
        self.render_with(true)
    }

    fn render_with(&self, full: bool) -> String {
        let mut s = format!(
            "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: {}\nspec:\n  image: {}\n",
            self.name, IMAGES[self.image]
        );
        if self.env > 0 {
            s += &format!("  env:\n  - name: MODE\n    value: \"v{}\"\n", self.env);
        }
        if let Some(c) = self.cpus {
            s += &format!("  resources:\n    cpus: {}\n", c as f64 / 100.0);
        }
        s += &format!(
            "  scaling:\n    minContainers: {}\n    maxContainers: {}\n",
            self.min, self.max
        );
        let d = PoolSpec::new(self.name);
        if full || self.cpu != d.cpu {
            s += &format!("    cpuOverloadThreshold: {}\n", self.cpu as f64 / 100.0);
        }
        if full || self.mem_mb != d.mem_mb {
            s += &format!("    memoryOverloadThreshold: {}M\n", self.mem_mb);
        }
        if full || self.idle != d.idle {
            s += &format!("    cooldownCpuThreshold: {}\n", self.idle as f64 / 100.0);
        }
        if full || self.cooldown_s != d.cooldown_s {
            s += &format!("    cooldownDuration: {}s\n", self.cooldown_s);
        }
        if full || self.poll_ms != d.poll_ms {
            s += &format!("    pollInterval: {}ms\n", self.poll_ms);
        }
        if let Some(r) = self.rps {
            s += &format!("    targetRequestsPerSecond: {r}\n");
        }
        if self.predictive {
            s += "    predictive: {}\n";
        }
        if let Some(t) = self.metric {
            s += &format!(
                "    customMetrics:\n    - name: queue_depth\n      targetPerContainer: {t}\n"
            );
        }
        s
    }
}

/// Ways to break one pool's document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    /// Invalid YAML (the whole file fails to parse).
    YamlSyntax,
    /// `metadta:` for `metadata:` (the name cannot be read).
    MetadataTypo,
    /// `sepc:` for `spec:`.
    SpecTypo,
    /// `maxContainer:` for `maxContainers:`.
    FieldTypo,
    /// `apiVersion: invok.de/v1alpha1` (another API group: skipped).
    GroupTypo,
    /// `apiVersion: invok.dev/v1` (unknown version of our group).
    VersionTypo,
    /// `kind: FunctionPol`.
    KindTypo,
    /// `name: Web` (not a DNS-1123 label).
    NameCase,
    /// minContainers above maxContainers.
    MinAboveMax,
    /// cpuOverloadThreshold: 1.5.
    BadThreshold,
    /// cooldownCpuThreshold not below cpuOverloadThreshold.
    IdleAboveOverload,
    /// pollInterval: 0s.
    ZeroPoll,
    /// No image.
    NoImage,
    /// No apiVersion.
    NoApiVersion,
    /// A list instead of a mapping.
    NotAMapping,
}

pub const BREAKS: [Break; 15] = [
    Break::YamlSyntax,
    Break::MetadataTypo,
    Break::SpecTypo,
    Break::FieldTypo,
    Break::GroupTypo,
    Break::VersionTypo,
    Break::KindTypo,
    Break::NameCase,
    Break::MinAboveMax,
    Break::BadThreshold,
    Break::IdleAboveOverload,
    Break::ZeroPoll,
    Break::NoImage,
    Break::NoApiVersion,
    Break::NotAMapping,
];

impl Break {
    /// The broken document still names its pool (the error is reported against it).
    pub fn keeps_name(self) -> bool {
        !matches!(
            self,
            Break::YamlSyntax
                | Break::MetadataTypo
                | Break::NameCase
                | Break::NotAMapping
                | Break::GroupTypo
        )
    }

    pub fn render(self, spec: &PoolSpec) -> String {
        let text = spec.render_full();
        let name_line = format!("  name: {}\n", spec.name);
        match self {
            Break::YamlSyntax => text.replacen("spec:\n", "spec: [\n", 1),
            Break::MetadataTypo => text.replacen("metadata:", "metadta:", 1),
            Break::SpecTypo => text.replacen("spec:", "sepc:", 1),
            Break::FieldTypo => text.replacen("maxContainers:", "maxContainer:", 1),
            Break::GroupTypo => text.replacen("invok.dev/v1alpha1", "invok.de/v1alpha1", 1),
            Break::VersionTypo => text.replacen("invok.dev/v1alpha1", "invok.dev/v1", 1),
            Break::KindTypo => text.replacen("kind: FunctionPool", "kind: FunctionPol", 1),
            Break::NameCase => {
                let mut upper = spec.name.to_string();
                upper[..1].make_ascii_uppercase();
                text.replacen(&name_line, &format!("  name: {upper}\n"), 1)
            }
            Break::MinAboveMax => PoolSpec {
                min: spec.max + 1,
                ..spec.clone()
            }
            .render_full(),
            Break::BadThreshold => PoolSpec {
                cpu: 150,
                ..spec.clone()
            }
            .render_full(),
            Break::IdleAboveOverload => PoolSpec {
                idle: spec.cpu,
                ..spec.clone()
            }
            .render_full(),
            Break::ZeroPoll => text.replacen(
                &format!("pollInterval: {}ms", spec.poll_ms),
                "pollInterval: 0s",
                1,
            ),
            Break::NoImage => text.replacen(&format!("  image: {}\n", IMAGES[spec.image]), "", 1),
            Break::NoApiVersion => text.replacen("apiVersion: invok.dev/v1alpha1\n", "", 1),
            Break::NotAMapping => format!("- {}\n- oops\n", spec.name),
        }
    }
}

/// One document of a file.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc {
    /// The pool's valid declaration.
    Pool(PoolSpec),
    /// The pool's declaration, broken.
    Broken(PoolSpec, Break),
    /// A second, valid declaration of a pool declared elsewhere (an error).
    Dup(PoolSpec),
    /// A resource of another API group (skipped with a notice).
    Foreign(u8),
}

impl Doc {
    fn render(&self) -> String {
        match self {
            Doc::Pool(s) | Doc::Dup(s) => s.render(),
            Doc::Broken(s, b) => b.render(s),
            Doc::Foreign(n) => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{n}\ndata:\n  level: \"{n}\"\n"
            ),
        }
    }

    fn pool(&self) -> Option<&'static str> {
        match self {
            Doc::Pool(s) | Doc::Broken(s, _) => Some(s.name),
            _ => None,
        }
    }
}

/// How a whole file can be broken (its documents stay in the model: they are what the
/// file "was about").
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    NotUtf8,
    Garbage,
    Empty,
    CommentsOnly,
    /// A prefix of the file that does not read cleanly, and the pools its errors name.
    Truncated(Vec<u8>, Vec<String>),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub docs: Vec<Doc>,
    pub raw: Option<Raw>,
}

impl File {
    pub fn text(&self) -> Vec<u8> {
        match &self.raw {
            Some(Raw::NotUtf8) => b"apiVersion: \xff\xfe\xfd\n".to_vec(),
            Some(Raw::Garbage) => b"key: [unclosed\n  - {\n".to_vec(),
            Some(Raw::Empty) => Vec::new(),
            Some(Raw::CommentsOnly) => b"# pools move here soon\n".to_vec(),
            Some(Raw::Truncated(b, _)) => b.clone(),
            None => self.clean_text().into_bytes(),
        }
    }

    pub fn clean_text(&self) -> String {
        self.docs
            .iter()
            .map(Doc::render)
            .collect::<Vec<_>>()
            .join("---\n")
    }

    fn yaml_broken(&self) -> bool {
        self.docs
            .iter()
            .any(|d| matches!(d, Doc::Broken(_, Break::YamlSyntax)))
    }
}

/// What the operator must do about a pool, given the directory.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Declared validly, once: this spec.
    Valid(PoolSpec),
    /// Its file exists with errors (or holds only skipped documents, or is empty):
    /// keep the last valid spec. `shown`: the error must show in the pool's status.
    /// `known_only`: only an operator that read the pool valid can tell (a file that
    /// now holds only other resources); one started since may prune it.
    Kept { shown: bool, known_only: bool },
    /// A case the issue leaves open (a skipped document beside valid ones): keeping and
    /// pruning are both fine.
    Ambiguous,
    /// No file declares it: it may be pruned (and must be, once the directory is clean).
    Gone,
}

/// The directory.
pub struct Dir {
    pub root: PathBuf,
    pub files: BTreeMap<&'static str, File>,
    /// The file each pool was last declared in.
    pub home: BTreeMap<&'static str, &'static str>,
    pub defaults: ScalingDefaults,
    /// What each file on disk holds, so only changed files are written.
    written: std::cell::RefCell<BTreeMap<String, Vec<u8>>>,
}

impl Dir {
    pub fn new(root: &Path) -> Dir {
        Dir {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            home: BTreeMap::new(),
            defaults: ScalingDefaults::default(),
            written: Default::default(),
        }
    }

    /// Where the pool's declaration (valid or broken) is.
    pub fn locate(&self, pool: &str) -> Option<(&'static str, usize)> {
        self.files.iter().find_map(|(f, file)| {
            file.docs
                .iter()
                .position(|d| d.pool() == Some(pool))
                .map(|i| (*f, i))
        })
    }

    /// The pool's declaration, valid or not.
    pub fn spec_of(&self, pool: &str) -> Option<PoolSpec> {
        let (f, i) = self.locate(pool)?;
        match &self.files[f].docs[i] {
            Doc::Pool(s) | Doc::Broken(s, _) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn has_dup(&self, pool: &str) -> bool {
        self.files.values().any(|f| {
            f.docs
                .iter()
                .any(|d| matches!(d, Doc::Dup(s) if s.name == pool))
        })
    }

    pub fn remove_dups(&mut self, pool: &str) {
        for f in self.files.values_mut() {
            f.docs
                .retain(|d| !matches!(d, Doc::Dup(s) if s.name == pool));
        }
    }

    /// Every file reads cleanly: no errors anywhere.
    pub fn is_clean(&self) -> bool {
        self.files.values().all(|f| {
            f.raw.is_none()
                && f.docs
                    .iter()
                    .all(|d| matches!(d, Doc::Pool(_) | Doc::Foreign(_)))
        })
    }

    /// True when some file holds no document at all. After a restart the operator cannot
    /// tell such a file from one caught mid-rewrite that declared a pool, so it keeps the
    /// containers of pools it never saw declared (orphans) while one exists.
    pub fn has_empty_file(&self) -> bool {
        self.files
            .values()
            .any(|f| f.raw.is_none() && f.docs.is_empty())
    }

    /// The file a pool is declared in, or was last.
    pub fn file_of(&self, pool: &str) -> &'static str {
        self.locate(pool)
            .map(|l| l.0)
            .or_else(|| self.home.get(pool).copied())
            .unwrap_or("?")
    }

    /// Records the file a pool is validly declared in: the file whose fate decides the
    /// pool's once its declaration goes (the operator keeps the source of the last valid
    /// spec). Call with the expectation just computed.
    pub fn rehome(&mut self, pool: &'static str, expect: &Expect) {
        match expect {
            Expect::Valid(_) => {
                if let Some(f) = self.valid_files(pool).first() {
                    self.home.insert(pool, f);
                }
            }
            Expect::Gone => {
                self.home.remove(pool);
            }
            _ => {}
        }
    }

    /// Documents that declare a pool already declared by an earlier one (in the order the
    /// loader reads: files by path, documents in order): the "declared twice" error is
    /// reported there, not at the first.
    fn second_declarations(&self) -> BTreeSet<(&'static str, usize)> {
        let mut seen = BTreeSet::new();
        let mut second = BTreeSet::new();
        for (f, file) in self.files.iter().filter(|(_, f)| Self::readable(f)) {
            for (i, d) in file.docs.iter().enumerate() {
                if let Doc::Pool(s) | Doc::Dup(s) = d {
                    if !seen.insert(s.name) {
                        second.insert((*f, i));
                    }
                }
            }
        }
        second
    }

    /// Files the loader can read at all.
    fn readable(file: &File) -> bool {
        file.raw.is_none() && !file.yaml_broken()
    }

    /// Readable files with a valid document of `pool` (its own or a duplicate).
    fn valid_files(&self, pool: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (f, file) in &self.files {
            if Self::readable(file) {
                for d in &file.docs {
                    if matches!(d, Doc::Pool(s) | Doc::Dup(s) if s.name == pool) {
                        v.push(*f);
                    }
                }
            }
        }
        v
    }

    pub fn expect(&self, pool: &str) -> Expect {
        const KEPT: Expect = Expect::Kept {
            shown: true,
            known_only: false,
        };
        let mut valid: Vec<&PoolSpec> = Vec::new();
        // A truncated file may still name the pool in an error (`name: web` read, the
        // rest cut off).
        let mut named_invalid = self.files.values().any(
            |f| matches!(&f.raw, Some(Raw::Truncated(_, names)) if names.iter().any(|n| n == pool)),
        );
        for file in self.files.values().filter(|f| Self::readable(f)) {
            for d in &file.docs {
                match d {
                    Doc::Pool(s) | Doc::Dup(s) if s.name == pool => valid.push(s),
                    Doc::Broken(s, b) if s.name == pool && b.keeps_name() => named_invalid = true,
                    _ => {}
                }
            }
        }
        if named_invalid && !valid.is_empty() {
            // A valid and an invalid document of one pool (in different files): which
            // wins depends on the order the files are read in; the issue leaves it open.
            return Expect::Ambiguous;
        }
        if named_invalid || valid.len() > 1 {
            // Invalid, or declared twice: an error that names the pool.
            return KEPT;
        }
        if let [spec] = valid[..] {
            return Expect::Valid(spec.clone());
        }
        // No readable document names it: its last file decides.
        let Some(file) = self.home.get(pool).and_then(|f| self.files.get(f)) else {
            return Expect::Gone;
        };
        if let Some(raw) = &file.raw {
            return Expect::Kept {
                shown: matches!(raw, Raw::NotUtf8 | Raw::Garbage),
                known_only: false,
            };
        }
        let home = self.home[pool];
        let second = self.second_declarations();
        let errors = file.yaml_broken()
            || (0..file.docs.len()).any(|i| second.contains(&(home, i)))
            || file
                .docs
                .iter()
                .any(|d| matches!(d, Doc::Broken(_, b) if *b != Break::GroupTypo));
        if errors {
            return KEPT;
        }
        let declares = file
            .docs
            .iter()
            .any(|d| matches!(d, Doc::Pool(_) | Doc::Dup(_)));
        let skipped_pools = file
            .docs
            .iter()
            .any(|d| matches!(d, Doc::Broken(_, Break::GroupTypo)));
        match (declares, skipped_pools) {
            // A FunctionPool of another group beside valid pools: the issue leaves it open.
            (true, true) => Expect::Ambiguous,
            (true, false) => Expect::Gone,
            (false, true) => KEPT,
            // Only other resources: the pool's document was taken out, or the file is
            // being rewritten. Keep; a restarted operator cannot know.
            (false, false) => Expect::Kept {
                shown: true,
                known_only: true,
            },
        }
    }

    /// Writes a file as modelled (or deletes it when it is no longer modelled), unless
    /// the disk already holds that.
    pub fn write(&self, file: &str) {
        let path = self.root.join(file);
        let mut written = self.written.borrow_mut();
        match self.files.get(file) {
            Some(f) => {
                let text = f.text();
                if written.get(file) == Some(&text) {
                    return;
                }
                written.insert(file.to_string(), text.clone());
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                // The operator reads only when the simulation says so: no need for the
                // temporary file and rename an editor would use.
                std::fs::write(&path, text).expect("write");
            }
            None => {
                if written.remove(file).is_some() {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// Records that something outside [`Dir::write`] changed `file` on disk.
    pub fn forget_written(&self, file: &str) {
        self.written.borrow_mut().remove(file);
    }

    /// Records that `from` was renamed to `to` on disk.
    pub fn renamed(&self, from: &str, to: &str) {
        let mut w = self.written.borrow_mut();
        if let Some(t) = w.remove(from) {
            w.insert(to.to_string(), t);
        }
    }

    /// A prefix of `file`'s clean text that declares no pool validly (an editor caught
    /// mid-write), near `cut` (0.0 to 1.0): cut mid-line, or at a line end, going back
    /// until the prefix reads with errors or is blank.
    pub fn truncated(&self, file: &str, cut: f64) -> Raw {
        let text = self.files[file].clean_text();
        let bytes = text.as_bytes();
        let mut n = ((bytes.len() as f64) * cut) as usize;
        for _ in 0..40 {
            n = n.min(bytes.len());
            while n > 0 && !text.is_char_boundary(n) {
                n -= 1;
            }
            let prefix = &text[..n];
            if prefix.trim().is_empty() {
                return Raw::Truncated(prefix.as_bytes().to_vec(), Vec::new());
            }
            let set = invok::manifest::load_str(Path::new(file), prefix, &self.defaults);
            if set.pools.is_empty() && !set.errors.is_empty() {
                let names = set.invalid_pools.keys().cloned().collect();
                return Raw::Truncated(prefix.as_bytes().to_vec(), names);
            }
            // Back to the previous line, cut after its first few characters.
            let line_start = prefix[..prefix.len().saturating_sub(1)]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            n = if line_start + 3 < n {
                line_start + 3
            } else {
                line_start.saturating_sub(1)
            };
        }
        Raw::Truncated(Vec::new(), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_break_is_an_error_or_a_skip_and_valid_specs_are_valid() {
        let dir = Dir::new(Path::new("/nonexistent"));
        let spec = PoolSpec {
            env: 2,
            cpus: Some(50),
            ..PoolSpec::new("web")
        };
        let mut set = invok::manifest::load_str(Path::new("x.yaml"), &spec.render(), &dir.defaults);
        let eff = set.pools.remove("web").expect("valid").spec;
        spec.matches(&eff).unwrap();
        assert!(PoolSpec {
            min: 2,
            ..spec.clone()
        }
        .matches(&eff)
        .is_err());
        for b in BREAKS {
            let set =
                invok::manifest::load_str(Path::new("x.yaml"), &b.render(&spec), &dir.defaults);
            assert!(set.pools.is_empty(), "{b:?} still declares web");
            assert!(
                !set.errors.is_empty() || (b == Break::GroupTypo && !set.notices.is_empty()),
                "{b:?} reads cleanly"
            );
        }
    }
}
