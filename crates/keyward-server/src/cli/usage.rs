//! `keyward usage`: requests, tokens and cost per day, per project, key and
//! model, as a table or CSV.

use keyward_core::{duration, time};
use keyward_service::{BucketWidth, Caller, UsageQuery};

use super::{services, CliError, StoreArgs};

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// How far back to report, e.g. 30d (default), 12h, 1w.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    since: String,
    /// Print CSV (with a header row) instead of a table.
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: UsageArgs) -> Result<(), CliError> {
    let back = duration::parse_seconds(&args.since)
        .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    let services = services(&args.store).await?;
    let now = time::now_unix();
    let mut query = UsageQuery {
        start: now.saturating_sub(back).max(0),
        end: Some(now + 1),
        width: BucketWidth::Day,
        by_project: true,
        by_key: true,
        by_model: true,
        project_ids: Vec::new(),
        key_ids: Vec::new(),
        models: Vec::new(),
        limit: 31,
        page: None,
    };
    let header = [
        "date",
        "project_id",
        "api_key_id",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    ];
    if args.csv {
        println!("{}", header.join(","));
    } else {
        println!(
            "{:<10} {:<29} {:<28} {:<24} {:>9} {:>13} {:>13} {:>12}",
            "DATE",
            "PROJECT",
            "KEY",
            "MODEL",
            "REQUESTS",
            "INPUT TOKENS",
            "OUTPUT TOKENS",
            "COST (USD)"
        );
    }
    loop {
        let page = services.usage(&Caller::cli(), &query).await?;
        for bucket in &page.buckets {
            let date = &time::format_utc(bucket.start)[..10];
            for r in &bucket.results {
                let project = r
                    .project_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let key = r
                    .key_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let model = r.model.clone().unwrap_or_default();
                let cost = format!("{:.6}", r.cost.to_usd());
                if args.csv {
                    println!(
                        "{date},{project},{key},{},{},{},{},{cost}",
                        csv_field(&model),
                        r.requests,
                        r.prompt_tokens,
                        r.completion_tokens
                    );
                } else {
                    println!(
                        "{date:<10} {project:<29} {key:<28} {model:<24} {:>9} {:>13} {:>13} {cost:>12}",
                        r.requests, r.prompt_tokens, r.completion_tokens
                    );
                }
            }
        }
        match page.next_page {
            Some(next) => query.page = Some(next),
            None => return Ok(()),
        }
    }
}

/// Quotes a CSV field when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
