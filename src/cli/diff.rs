//! `invok diff`: what `invok apply` would change in the manifest directory, as a unified
//! diff, with kubectl diff's exit codes.

use similar::TextDiff;

use super::apply::{self, Outcome};
use super::manifests::{DirArgs, DirIndex, InputArgs};

/// Exit code when there is no difference.
const NO_DIFF: u8 = 0;
/// Exit code when apply would change something.
const DIFF: u8 = 1;
/// Exit code on errors (invalid input, a pool apply would refuse, ...).
const ERROR: u8 = 2;

/// Show what `invok apply` would change in the manifest directory.
///
/// Validates the input as apply does, compares each pool with the document that
/// declares it in the manifest directory (by content: comments and formatting alone are
/// no difference), and prints a unified diff of every file apply would create or
/// rewrite. Nothing is written.
///
/// Exit status (as kubectl diff): 0 no differences, 1 differences found, 2 an error
/// (invalid input, a pool apply would refuse to write, a missing directory).
///
/// Example:
///   invok diff -f web.yaml
///   invok diff -f pools/ -R --manifests /etc/invok/manifests && echo "up to date"
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    dir: DirArgs,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match diff(&args) {
        Ok(text) if text.is_empty() => Ok(NO_DIFF),
        Ok(text) => {
            print!("{text}");
            Ok(DIFF)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ERROR)
        }
    }
}

fn diff(args: &Args) -> anyhow::Result<String> {
    let pools = apply::read_inputs(&args.input)?;
    let index = DirIndex::read(&args.dir.manifests)?;
    let mut out = String::new();
    for c in apply::plan(&index, &pools)? {
        if c.outcome == Outcome::Unchanged {
            continue;
        }
        let path = c.file.display().to_string();
        let old = c.old.as_deref().unwrap_or("");
        let from = match c.outcome {
            Outcome::Created => "/dev/null".to_string(),
            _ => format!("{path}\t(current)"),
        };
        let to = format!("{path}\t(applied: functionpool/{} {})", c.name, c.outcome);
        out.push_str(
            &TextDiff::from_lines(old, c.new.as_str())
                .unified_diff()
                .context_radius(3)
                .header(&from, &to)
                .to_string(),
        );
    }
    Ok(out)
}
