//! The headless `huddle` command, part of the binary only (the library never sees it):
//! arguments parsed once by clap ([`args`]), turned into the node's typed operation
//! ([`plan`]), carried out through a running node's control socket or on the store
//! itself ([`carry`]), and the result rendered here ([`render`], [`output`]: text, or
//! JSON with `--json`). `serve`, `join`, `unlock`, `lock`, `repair` and `passphrase`
//! are not node operations and have modules of their own.

pub mod args;
mod carry;
mod join;
pub mod output;
mod passphrase;
mod plan;
mod render;
mod serve;
mod unlock;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use args::{AppArgs, AuditArgs, Cli, Command, PassphraseCommand};
use huddle::host::control;
use huddle::host::control::protocol::Answer;
use huddle::host::wait;
use huddle::node::Node;
use huddle::store::Store;

/// The data directory given, or the OS data directory + `/huddle`.
pub fn data_dir_or_default(given: Option<&PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d.clone()),
        None => huddle::store::dir::default_dir()
            .context("no OS data directory; pass --data-dir or set HUDDLE_DATA_DIR"),
    }
}

/// Opens the node, creating the data directory when `create` allows it.
fn open_node(dir: &Path, create: bool) -> Result<Node> {
    if !Store::exists(dir) {
        if !create {
            return Err(huddle::store::StoreError::NotFound(dir.to_path_buf()).into());
        }
        let fresh = !dir.exists();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let created = huddle::store::dir::restrict(dir)
            .with_context(|| format!("restricting {}", dir.display()))
            .and_then(|_| passphrase::new())
            .and_then(|pass| Ok(Node::create(dir, pass.as_bytes())?));
        let theirs = created.as_ref().err().and_then(|e| e.downcast_ref());
        if created.is_err() && fresh && !theirs.is_some_and(wait::is_locked) {
            // Nothing is left behind by a creation that failed (unless another process
            // is creating the same directory: that one is not ours to remove).
            let _ = std::fs::remove_dir_all(dir);
        }
        return created;
    }
    let pass = passphrase::existing()?;
    Ok(Node::open(dir, pass.as_bytes())?)
}

/// Opens the desktop app (`huddle` with no subcommand) on the data directory.
pub fn open_app(dir: Option<PathBuf>, args: AppArgs) -> Result<()> {
    let dir = data_dir_or_default(dir.as_ref())?;
    if control::running(&dir) {
        bail!(
            "a huddle serve is running on {}: stop it first (the app runs the node itself)",
            dir.display()
        );
    }
    for p in &args.net.peers {
        huddle::net::addr::parse(p).map_err(anyhow::Error::msg)?;
    }
    huddle::app::run(huddle::app::AppOptions {
        bridge: huddle::app::bridge::BridgeConfig {
            dir,
            net: args.net.options(),
        },
        idle_lock: std::time::Duration::from_secs(args.idle_lock * 60),
        notifier: None,
        passphrase: passphrase::from_env(),
        screenshot: args.screenshot.map(|path| huddle::app::Screenshot {
            path,
            open_thread: args.screenshot_thread,
            audit: args.screenshot_audit,
        }),
    })
}

/// Runs one command: through a running node on the same data directory if there is
/// one, else on the store directly, waiting while another command holds it (module
/// `carry`). Returns the process exit code.
pub fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let dir = data_dir_or_default(cli.data_dir.as_ref())?;
    let success = std::process::ExitCode::SUCCESS;
    match &cli.command {
        Command::Serve(args) => return serve::run(&dir, args).map(|_| success),
        Command::Unlock => return unlock::unlock(&dir).map(|_| success),
        Command::Lock => return unlock::lock(&dir).map(|_| success),
        Command::Repair => {
            if control::running(&dir) {
                bail!("stop the `huddle serve` running on {} first", dir.display());
            }
            let pass = passphrase::existing()?;
            match Node::repair(&dir, pass.as_bytes())? {
                Some(report) => println!("{report}"),
                None => println!("the store opens and reads normally: nothing to repair"),
            }
            return Ok(success);
        }
        Command::Passphrase(PassphraseCommand::Change) => {
            if control::running(&dir) {
                bail!(
                    "stop the `huddle serve` running on {} first, then change the passphrase",
                    dir.display()
                );
            }
            passphrase::change(&dir)?;
            println!(
                "passphrase changed: the old one no longer opens {}",
                dir.display()
            );
            return Ok(success);
        }
        Command::Join { invite, net } => {
            if control::running(&dir) {
                bail!(
                    "a huddle serve is running on {}: this device already has a clinic",
                    dir.display()
                );
            }
            return join::run(&dir, invite, net).map(|_| success);
        }
        _ => {}
    }
    let op = plan::plan(&cli.command)?;
    let (answer, note) = match carry::carry_out(&dir, &op, plan::creates(&op))? {
        carry::Done::Answered(answer) => (answer, None),
        carry::Done::CutOff(why) => {
            let settled = carry::settle(&dir, &op, &why);
            (settled.answer, settled.note)
        }
    };
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let style = render::Style {
        json: cli.json,
        csv: matches!(cli.command, Command::Audit(AuditArgs { csv: true, .. })),
    };
    let mut out = output::Out::default();
    let rendered = match &answer {
        Answer::Done(result) => render::result(&mut out, &op, result, style),
        Answer::Locked { .. } => render::locked(&mut out, &answer, style.json),
        Answer::Failed(e) => Err(anyhow::anyhow!("{e}")),
        other => Err(anyhow::anyhow!("the node answered {other:?}")),
    };
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    match rendered {
        Ok(()) => Ok(success),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command, with its command path.
    fn all_args(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String, bool)>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            out.push((path.to_string(), id.to_string(), arg.get_help().is_some()));
        }
        for sub in cmd.get_subcommands() {
            all_args(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_is_described() {
        let mut args = Vec::new();
        all_args(&super::args::Launch::command(), "huddle", &mut args);
        assert!(args.len() > 40, "walked every command: {}", args.len());
        let bare: Vec<_> = args
            .iter()
            .filter(|(_, _, described)| !described)
            .map(|(path, id, _)| format!("{path} {id}"))
            .collect();
        assert!(bare.is_empty(), "arguments without a description: {bare:?}");
    }
}
