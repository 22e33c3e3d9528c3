//! The `starling` binary: see `starling --help`.

use std::process::ExitCode;

use clap::Parser;
use starling::cli::{Cli, Command, default_config_path, print_modules, run_admin};
use starling::{Config, Server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Doap) {
        print!("{}", starling::doap::generate(starling::modules::ALL));
        return ExitCode::SUCCESS;
    }
    let path = cli.config.unwrap_or_else(default_config_path);
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("starling: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::CheckConfig => starling::server::start_modules(&config).map(|_| println!("{}: OK", path.display())),
        Command::Modules => print_modules(&config),
        Command::Serve => {
            starling::logging::init(&config.log);
            runtime().and_then(|rt| rt.block_on(serve(config)))
        }
        other => {
            starling::logging::init(&config.log);
            runtime().and_then(|rt| rt.block_on(run_admin(&config, &other)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("starling: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
