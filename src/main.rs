//! `huddle`: the desktop app (no subcommand) or the headless command line ([`cli`]).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let launch = cli::args::Launch::parse();
    // A running node reports peers coming and going; other commands stay quiet.
    let default = match &launch.command {
        None | Some(cli::args::Command::Serve(_)) | Some(cli::args::Command::Join { .. }) => {
            "info,libp2p=warn"
        }
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
    let result = match launch.into_command() {
        Ok(Ok(command)) => cli::run(command),
        Ok(Err((dir, app))) => cli::open_app(dir, app).map(|()| std::process::ExitCode::SUCCESS),
        Err(e) => Err(e),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
