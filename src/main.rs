//! `huddle`: the desktop app (no subcommand) or the headless command line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let launch = huddle::cli::Launch::parse();
    // A running node reports peers coming and going; other commands stay quiet.
    let default = match &launch.command {
        None | Some(huddle::cli::Command::Serve(_)) | Some(huddle::cli::Command::Join { .. }) => {
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match launch.into_command() {
        Ok(Ok(cli)) => huddle::cli::run(cli, &args),
        Ok(Err((dir, app))) => {
            huddle::cli::open_app(dir, app).map(|()| std::process::ExitCode::SUCCESS)
        }
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
