//! `invok validate` and `invok schema`: the commands CI runs before a manifest reaches a host.

use std::path::PathBuf;

use anyhow::Context;
use invok::api::{self, ScalingDefaults};
use invok::manifest;

use super::{EXIT_FAILURE, EXIT_OK};

/// Output format of `validate`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// FILE:LINE:COL: field: message, one per line.
    Text,
    /// A JSON object with `valid`, `pools`, `errors` and `notices`.
    Json,
}

/// Check manifests without touching Docker.
///
/// Reads every file given (whatever its extension) and every `.yaml`/`.yml` file below the
/// directories given, checks each FunctionPool document against the schema and the
/// semantic rules, and reports every problem as FILE:LINE:COL: field: message.
/// Documents of other API groups are skipped with a notice. Omitted scaling fields take
/// their defaults from the seed's environment variables (CPU_OVERLOAD_THRESHOLD, ...).
///
/// Exit status: 0 when everything is valid, 1 when anything is not, 2 on usage errors.
///
/// Example:
///   invok validate manifests/
///   invok validate -o json pools/web.yaml pools/api.yaml
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Files or directories to check.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    output: Format,
}

/// Print the FunctionPool JSON Schema.
///
/// The schema is generated from the same Rust types the operator uses, so any JSON Schema
/// validator (in CI, in an editor) accepts exactly what Invok accepts, structurally.
/// Semantic rules (min <= max, thresholds) are checked by `invok validate`.
///
/// Example:
///   invok schema > functionpool.schema.json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct SchemaArgs {}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let defaults = ScalingDefaults::from_env()?;
    let set = manifest::load_paths(&args.paths, &defaults);
    match args.output {
        Format::Text => {
            for n in &set.notices {
                eprintln!("notice: {n}");
            }
            for e in &set.errors {
                println!("{e}");
            }
            if set.is_clean() {
                eprintln!(
                    "{} pool(s) valid in {} file(s)",
                    set.pools.len(),
                    set.files_read
                );
            } else {
                eprintln!(
                    "{} error(s) in {} file(s)",
                    set.errors.len(),
                    set.files_read
                );
            }
        }
        Format::Json => {
            let out = serde_json::json!({
                "valid": set.is_clean(),
                "pools": set.pools.values().map(|p| serde_json::json!({
                    "name": p.spec.name,
                    "file": p.source.file,
                    "line": p.source.line,
                })).collect::<Vec<_>>(),
                "errors": set.errors,
                "notices": set.notices,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).context("printing JSON")?
            );
        }
    }
    Ok(if set.is_clean() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}

pub fn schema(_: SchemaArgs) -> anyhow::Result<u8> {
    println!("{}", serde_json::to_string_pretty(&api::json_schema())?);
    Ok(EXIT_OK)
}
