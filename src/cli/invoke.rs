//! `invok invoke`: call a function through the gateway.

use std::io::{Read, Write};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{EXIT_FAILURE, EXIT_OK};

/// Call a function through the gateway and print its answer.
///
/// Sends the request to GATEWAY/function/NAME[/PATH]: a POST with the data when --data
/// is given, else a GET (or the method of -X). The answer's body goes to stdout; with
/// -v, the status and the container that answered (X-Invok-Container) go to stderr.
/// A pool at zero containers starts one and the request waits for it.
///
/// Exit status: 0 for a 2xx/3xx answer, 1 otherwise (the error goes to stderr).
///
/// Example:
///   invok invoke hello
///   invok invoke hello --data 'some input'
///   invok invoke hello --data @request.json
///   invok invoke hello --path 'cgi-bin/cpu?ms=500' -v
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The function (pool) name.
    name: String,
    /// Request body: a string, @FILE to read a file, or @- for stdin.
    #[arg(short, long, value_name = "@FILE|STRING")]
    data: Option<String>,
    /// Path (and query) after /function/NAME/.
    #[arg(long, default_value = "", value_name = "PATH")]
    path: String,
    /// HTTP method (default: POST with --data, else GET).
    #[arg(short = 'X', long, value_name = "METHOD")]
    method: Option<String>,
    /// The gateway's base URL.
    #[arg(
        long,
        env = "INVOK_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    gateway: String,
    /// Print the status and the answering container to stderr.
    #[arg(short, long)]
    verbose: bool,
}

fn read_data(data: &str) -> anyhow::Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            Ok(buf)
        }
        Some(file) => std::fs::read(file).with_context(|| format!("reading {file}")),
        None => Ok(data.as_bytes().to_vec()),
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let body = args.data.as_deref().map(read_data).transpose()?;
    let method = match &args.method {
        Some(m) => m.to_uppercase(),
        None if body.is_some() => "POST".into(),
        None => "GET".into(),
    };
    let url = format!(
        "{}/function/{}/{}",
        args.gateway.trim_end_matches('/'),
        args.name,
        args.path.trim_start_matches('/')
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = hyper::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .with_context(|| format!("building a request to {url}"))?;
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(e) => bail!(
                "cannot reach the gateway at {}: {e} (is `invok run` running?)",
                args.gateway
            ),
        };
        let status = resp.status();
        let container = resp
            .headers()
            .get(invok::gateway::CONTAINER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        if args.verbose {
            eprintln!(
                "{} {status} from {}",
                method,
                container.as_deref().unwrap_or("-")
            );
        }
        if status.is_client_error() || status.is_server_error() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            eprintln!("error: {status}: {message}");
            return Ok(EXIT_FAILURE);
        }
        std::io::stdout().write_all(&bytes)?;
        Ok(EXIT_OK)
    })
}
