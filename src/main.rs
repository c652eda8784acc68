//! The `gpu-linalg` command-line tool.

use clap::Parser;

fn main() {
    let cli = gpu_linalg::cli::Cli::parse();
    if let Err(e) = gpu_linalg::cli::run(cli) {
        // One write per line, so that the lines of several processes (an MPI job's ranks)
        // sharing one stderr do not interleave.
        let line = format!("gpu-linalg: error: {}\n", gpu_linalg::cli::one_line(&e));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        std::process::exit(1);
    }
}
