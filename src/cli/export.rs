//! `invok export`: the pools as Kubernetes objects, for when one host is not enough.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use invok::api::ScalingDefaults;
use invok::{export, manifest};

use super::{EXIT_FAILURE, EXIT_OK};

/// Export pools to Kubernetes: the FunctionPool CRD, and each pool as a Deployment,
/// a Service and a HorizontalPodAutoscaler.
///
/// Example:
///   invok export crd | kubectl apply -f -
///   invok export kubernetes -f manifests/ | kubectl apply -f -
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    Crd(CrdArgs),
    Kubernetes(KubernetesArgs),
}

/// Print the FunctionPool CustomResourceDefinition (apiextensions.k8s.io/v1).
///
/// Group invok.dev, version v1alpha1, plural functionpools, short name fp, with a status
/// subresource and Min, Max, Image and Age columns. Its openAPIV3Schema is a structural
/// schema derived from the same Rust types as `invok schema`, so the API server accepts
/// the pools Invok accepts (and, with strict field validation, flags unknown fields).
/// schemas/functionpool.crd.yaml holds a copy.
///
/// Example:
///   invok export crd | kubectl apply -f -
///   kubectl get fp
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct CrdArgs {}

/// Print each pool as a Deployment, a Service and a HorizontalPodAutoscaler.
///
/// Reads FunctionPool manifests as `invok validate` does and prints the objects as one
/// multi-document YAML stream, or writes one file per object into a directory
/// (<pool>-deployment.yaml, <pool>-service.yaml, <pool>-hpa.yaml). The Deployment runs
/// minContainers pods of the image (command as the container's args, env, port as the
/// named port "http", resources as requests and limits, the readiness probe); the Service
/// listens on port 80; the HPA (autoscaling/v2) scales between minContainers and
/// maxContainers on CPU utilization (of the CPU request: resources.cpus, else 1 core) and
/// average memory, and waits cooldownDuration before scaling down. Omitted scaling fields
/// take their defaults from the same environment variables as `invok run`.
///
/// What Kubernetes cannot express the same way (minContainers 0, targetConcurrency,
/// cooldownCpuThreshold, network, pollInterval, timeout) is said on stderr as a warning.
/// Invalid manifests are reported as FILE:LINE:COL: field: message, and nothing is
/// printed.
///
/// Exit status: 0 when every pool was exported, 1 otherwise, 2 on usage errors.
///
/// Example:
///   invok export kubernetes -f manifests/ | kubectl apply -f -
///   invok export kubernetes -f pools/web.yaml -o k8s/
///   cat pool.yaml | invok export kubernetes -f -
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct KubernetesArgs {
    /// Manifest files or directories; "-" reads standard input.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR"
    )]
    files: Vec<PathBuf>,
    /// Write one file per object into this directory (created if missing) instead of
    /// printing a YAML stream.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.what {
        What::Crd(_) => {
            print!("{}", export::crd_yaml());
            Ok(EXIT_OK)
        }
        What::Kubernetes(args) => kubernetes(args),
    }
}

fn kubernetes(args: KubernetesArgs) -> anyhow::Result<u8> {
    let defaults = ScalingDefaults::from_env()?;
    let set = if args.files.iter().any(|f| f == Path::new("-")) {
        if args.files.len() > 1 {
            bail!("-f - (standard input) cannot be combined with other files");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        manifest::load_str(Path::new("<stdin>"), &text, &defaults)
    } else {
        manifest::load_paths(&args.files, &defaults)
    };
    for n in &set.notices {
        eprintln!("notice: {n}");
    }
    let mut failed = !set.is_clean();
    for e in &set.errors {
        eprintln!("{e}");
    }

    let mut documents = Vec::new();
    for pool in set.pools.values() {
        match export::pool_objects(&pool.manifest, &pool.spec) {
            Ok(objects) => {
                for w in &objects.warnings {
                    eprintln!("warning: {}: {}: {w}", pool.source, pool.spec.name);
                }
                documents.extend(objects.documents());
            }
            Err(e) => {
                eprintln!("{}: {e}", pool.source);
                failed = true;
            }
        }
    }
    if failed {
        eprintln!("nothing exported: fix the errors above");
        return Ok(EXIT_FAILURE);
    }
    if documents.is_empty() {
        eprintln!("error: no FunctionPool found in {} file(s)", set.files_read);
        return Ok(EXIT_FAILURE);
    }

    match &args.output_dir {
        None => print!(
            "{}",
            export::yaml_stream(documents.into_iter().map(|(_, d)| d))
        ),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, document) in documents {
                let path = dir.join(file);
                std::fs::write(&path, document)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", path.display());
            }
        }
    }
    Ok(EXIT_OK)
}
