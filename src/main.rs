//! The `gpu-linalg` command-line tool.

use clap::Parser;

fn main() {
    let cli = gpu_linalg::cli::Cli::parse();
    if let Err(e) = gpu_linalg::cli::run(cli) {
        gpu_linalg::cli::report_error(&e);
        std::process::exit(1);
    }
}
