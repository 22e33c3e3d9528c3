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
            match err.downcast_ref::<starling::admin_socket::AdminSocketError>() {
                Some(starling::admin_socket::AdminSocketError::NotRunning(_)) => ExitCode::from(3),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    let control = server.control.clone();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match control.reload_now().await {
                Ok(report) => tracing::info!("SIGHUP: {}", report.describe()),
                Err(err) => tracing::error!("SIGHUP: reload failed: {err}"),
            }
        }
    });
    tokio::select! {
        result = wait_for_signal() => result?,
        _ = server.stopped() => {}
    }
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
