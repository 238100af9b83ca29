//! `keyward`: the server and its command line.

#![forbid(unsafe_code)]

mod api;
mod cli;
mod client_addr;
mod config;
mod connection;
mod github_keys;
mod local_model;
mod logging;
mod notify;
mod outbox;
mod serve;
mod workers;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc's thread-local free lists: a gateway request allocates and
/// frees many small buffers, and glibc's allocator took about a sixth of
/// the gateway's CPU under load (bench/gateway, perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            logging::flush();
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    };
    logging::flush();
    code
}
