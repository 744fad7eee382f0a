//! `huddle`: the headless command-line face of a Huddle node.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = huddle::cli::Cli::parse();
    // A running node reports peers coming and going; other commands stay quiet.
    let default = match cli.command {
        huddle::cli::Command::Serve(_) | huddle::cli::Command::Join { .. } => "info,libp2p=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUDDLE_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match huddle::cli::run(cli, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
