//! `keyward scan [PATH…] [--json] [--git-history] [--max-file-size SIZE]
//! [--revoke --server URL]`:
//! finds leaked keys before someone else does. Its exit status is made for
//! pre-commit hooks and CI: 0 when clean, 1 when a key was found, 2 when the
//! scan itself failed. Keys are printed only redacted; the full key stays in
//! memory, to be sent to the server's report endpoint with `--revoke`.
//! File names are printed escaped, in text and in JSON, so a hostile name
//! cannot drive the terminal or fake a finding.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keyward_core::KeyHash;
use keyward_scan::{escape, Finding, Location, Options, Report};
use serde::{Deserialize, Serialize};

use super::sighting::Places;
use super::{byte_size, CliError};

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files or directories to scan (default: the current directory); with
    /// --git-history, repositories.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print the findings as a JSON array.
    #[arg(long)]
    json: bool,
    /// Scan every blob in the history of each repository instead of the
    /// files on disk; a key deleted in a later commit is still found.
    #[arg(long)]
    git_history: bool,
    /// Skip files and blobs larger than this, with a warning naming each,
    /// e.g. 10MB, 512KiB, 2GB or a number of bytes.
    #[arg(long, value_name = "SIZE", default_value = "10MB", value_parser = byte_size::parse)]
    max_file_size: u64,
    /// Send the keys found to the server's report endpoint, which revokes
    /// every one of its keys among them.
    #[arg(long, requires = "server")]
    revoke: bool,
    /// The Keyward server that issued the keys, for --revoke, e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, value_name = "URL", requires = "revoke")]
    server: Option<String>,
}

/// Every failure of a scan exits 2, whatever its cause: exit 1 already
/// means "a key was found".
fn failed(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

pub async fn run(args: ScanArgs) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let defaulted = args.paths.is_empty();
    let paths = if defaulted {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let options = Options {
        threads: 0,
        max_file_size: args.max_file_size,
    };
    let mut report = Report::default();
    for part in scan(&paths, args.git_history, &options)? {
        report.findings.extend(part.findings);
        report.skipped.extend(part.skipped);
        report.errors.extend(part.errors);
        report.stats.searched += part.stats.searched;
        report.stats.bytes += part.stats.bytes;
        report.stats.binary += part.stats.binary;
    }

    let found = &report.findings;
    print_findings(found, args.json, defaulted)?;
    for skipped in &report.skipped {
        eprintln!(
            "warning: skipped {} ({}, above --max-file-size {}); to search it, rerun with --max-file-size {}",
            skipped.location,
            byte_size::show(skipped.size),
            byte_size::show(args.max_file_size),
            byte_size::whole_megabytes_above(skipped.size),
        );
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    summarize(&report, found.len(), args.max_file_size, started.elapsed());

    if let (true, Some(server)) = (args.revoke, &args.server) {
        if !found.is_empty() {
            revoke(server, found, &Places::new(&paths)).await?;
        }
    } else if !found.is_empty() {
        eprintln!(
            "Revoke them now: `keyward scan --revoke --server URL` sends them to the server that issued them."
        );
    }

    if !report.errors.is_empty() {
        return Err(failed(format!(
            "{} path(s) could not be scanned (listed above); fix their permissions or leave them out",
            report.errors.len()
        )));
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One report per repository with --git-history, else one for all paths.
fn scan(paths: &[PathBuf], git_history: bool, options: &Options) -> Result<Vec<Report>, CliError> {
    if !git_history {
        let report = keyward_scan::scan_paths(paths, options).map_err(|e| failed(e.to_string()))?;
        return Ok(vec![report]);
    }
    paths
        .iter()
        .map(|repo| keyward_scan::git_history(repo, options).map_err(|e| failed(e.to_string())))
        .collect()
}

/// One finding as `--json` prints it.
#[derive(Serialize)]
struct FindingObject<'a> {
    /// The file, or for history the path inside the repository.
    file: String,
    line: u64,
    redacted: String,
    kind: &'static str,
    /// SHA-256 hex of the key: what the server stores and reports.
    token_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blob: Option<&'a str>,
}

fn print_findings<'a>(found: &'a [Finding], json: bool, defaulted: bool) -> Result<(), CliError> {
    // Paths under the default `.` read better without `./`.
    let relative = |path: &'a Path| -> &'a Path {
        match defaulted {
            true => path.strip_prefix(".").unwrap_or(path),
            false => path,
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        let objects: Vec<FindingObject> = found
            .iter()
            .map(|f| {
                let (commit, blob) = match &f.location {
                    Location::Blob { commit, blob, .. } => (commit.as_deref(), Some(blob.as_str())),
                    Location::File(_) => (None, None),
                };
                let file = match &f.location {
                    Location::File(path) => relative(path).display().to_string(),
                    Location::Blob { path, .. } => path.clone(),
                };
                FindingObject {
                    file,
                    line: f.line,
                    redacted: f.key.redacted(),
                    kind: f.key.kind().as_str(),
                    token_hash: f.key.hash().to_hex(),
                    commit,
                    blob,
                }
            })
            .collect();
        serde_json::to_string_pretty(&objects)
            .map_err(std::io::Error::from)
            .and_then(|json| writeln!(out, "{}", escape::inert_json(&json)))
    } else {
        found.iter().try_for_each(|f| {
            let place = match &f.location {
                Location::File(path) => escape::escape_path(relative(path)),
                blob => blob.to_string(),
            };
            writeln!(out, "{place}:{}: {}", f.line, f.key.redacted())
        })
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| failed(format!("cannot write the findings: {e}")))
}

/// One line on stderr. Files skipped for their size are counted apart from
/// binaries, and named as unsearched, so a clean result with skips cannot
/// pass for a clean tree.
fn summarize(report: &Report, keys: usize, max_file_size: u64, took: Duration) {
    let s = report.stats;
    let mb = s.bytes as f64 / 1e6;
    let secs = took.as_secs_f64();
    let large = report.skipped.len();
    eprintln!(
        "Searched {} files ({mb:.1} MB, {:.0} MB/s; {} binary skipped, {large} above {} skipped): {keys} key(s) found{}.",
        s.searched,
        mb / secs.max(1e-9),
        s.binary,
        byte_size::show(max_file_size),
        match large {
            0 => "",
            _ => " in the files searched; the skipped ones were not searched (listed above)",
        },
    );
}

/// The most keys the report endpoint takes in one request.
const KEYS_PER_REPORT: usize = 100;
/// How often a throttled report is retried, and the longest wait honoured.
const REPORT_ATTEMPTS: u32 = 4;
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct ReportBody<'a> {
    keys: Vec<&'a str>,
    url: &'a str,
    source: &'static str,
}

#[derive(Deserialize)]
struct ReportAnswer {
    results: Vec<Verdict>,
}

#[derive(Deserialize)]
struct Verdict {
    token_hash: String,
    label: String,
}

/// Sends the keys, one report per place they were found (so the owner's
/// notice says where, relative to the repository), and prints how many the
/// server knew and revoked.
async fn revoke(server: &str, found: &[Finding], places: &Places) -> Result<(), CliError> {
    let endpoint = format!("{}/v1/keys/report", server.trim_end_matches('/'));
    let mut by_place: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for finding in found {
        let keys = by_place.entry(places.of(&finding.location)).or_default();
        if !keys.contains(&finding.key.expose()) {
            keys.push(finding.key.expose());
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(format!("cannot start an HTTP client: {e}")))?;
    let mut revoked: Vec<String> = Vec::new();
    for (url, keys) in by_place {
        for batch in keys.chunks(KEYS_PER_REPORT) {
            let body = ReportBody {
                keys: batch.to_vec(),
                url: &url,
                source: "keyward scan",
            };
            let answer = post_report(&client, &endpoint, &body).await?;
            revoked.extend(
                answer
                    .results
                    .into_iter()
                    .filter(|v| v.label == "true_positive")
                    .map(|v| v.token_hash),
            );
        }
    }
    revoked.sort_unstable();
    revoked.dedup();
    let distinct: std::collections::HashSet<KeyHash> = found.iter().map(|f| f.key.hash()).collect();
    eprintln!(
        "Reported {} distinct key(s) to {server}: {} revoked (keys of that server; already revoked ones count too), {} unknown to it.",
        distinct.len(),
        revoked.len(),
        distinct.len().saturating_sub(revoked.len()),
    );
    Ok(())
}

async fn post_report(
    client: &reqwest::Client,
    endpoint: &str,
    body: &ReportBody<'_>,
) -> Result<ReportAnswer, CliError> {
    let unreachable = |e: reqwest::Error| {
        failed(format!(
            "cannot report to {endpoint}: {e}; check --server points at a running Keyward server"
        ))
    };
    for attempt in 1..=REPORT_ATTEMPTS {
        let response = client
            .post(endpoint)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS && attempt < REPORT_ATTEMPTS {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs)
                .min(LONGEST_RETRY_WAIT);
            eprintln!(
                "The server is throttling reports; retrying in {}s.",
                wait.as_secs()
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(failed(format!("{endpoint} answered {status}: {message}")));
        }
        return serde_json::from_str(&text).map_err(|e| {
            failed(format!(
                "{endpoint} answered something other than a report verdict ({e}); check --server is a Keyward server"
            ))
        });
    }
    Err(failed(format!(
        "{endpoint} kept throttling reports; try again in a minute"
    )))
}
