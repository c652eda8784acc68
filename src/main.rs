//! The `gpu-linalg` command-line tool.

use clap::Parser;

fn main() {
    let cli = gpu_linalg::cli::Cli::parse();
    if let Err(e) = gpu_linalg::cli::run(cli) {
        eprintln!("gpu-linalg: error: {}", gpu_linalg::cli::one_line(&e));
        std::process::exit(1);
    }
}
