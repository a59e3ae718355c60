//! The `dualconn` command: `serve` and `token`, nothing else.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dualconn::config::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dualconn",
    version,
    about = "Real-time WebSocket + SSE connection server for multiplayer games"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. With no signing key configured it runs in dev mode.
    Serve {
        /// TOML file whose keys are the long flag names with `_` (flags and env win)
        #[arg(long, env = "DUALCONN_CONFIG")]
        config: Option<std::path::PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print a player token signed with DUALCONN_JWT_SECRET.
    Token {
        /// The player id (the token's `sub`)
        player_id: String,
        /// Lifetime in seconds
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// Add the `role: "admin"` claim
        #[arg(long)]
        admin: bool,
        #[arg(long, env = "DUALCONN_CONFIG")]
        config: Option<std::path::PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
}

fn load(
    config: Option<std::path::PathBuf>,
    settings: Settings,
) -> anyhow::Result<dualconn::config::Config> {
    let settings = match config {
        Some(path) => settings.or(Settings::from_file(&path)?),
        None => settings,
    };
    Ok(settings.resolve()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, settings } => {
            let config = load(config, settings)?;
            init_logs(config.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(config))
        }
        Command::Token {
            player_id,
            ttl_secs,
            admin,
            config,
            settings,
        } => {
            let config = load(config, settings)?;
            anyhow::ensure!(
                !config.auth.dev_mode(),
                "set DUALCONN_JWT_SECRET to mint tokens (in dev mode, POST /auth/dev-token on the running server)"
            );
            anyhow::ensure!(
                dualconn::auth::valid_player_id(&player_id),
                "player ids match ^[A-Za-z0-9_.:@-]{{1,128}}$ and `stats` is reserved"
            );
            let auth = dualconn::auth::Authenticator::new(&config.auth)?;
            let token = auth
                .mint(&player_id, Duration::from_secs(ttl_secs), admin)
                .context("tokens can be minted only with an HS256 secret, not a public key")?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(config: dualconn::config::Config) -> anyhow::Result<()> {
    let dev = config.auth.dev_mode();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let app = dualconn::App::build(config).await?;
    let addr = app.local_addr();
    if dev {
        tracing::warn!(
            "DEV MODE: tokens are signed with a random secret and /auth/dev-token mints them for anyone; set DUALCONN_JWT_SECRET for production"
        );
        // Printed once, to the terminal and never to the log stream, so an operator can act.
        eprintln!(
            "\n  dualconn is running in DEV MODE on {scheme}://{addr}\n\n  \
             admin key (shown once):  {key}\n\n  \
             get a player token:\n    curl -s -X POST {scheme}://{addr}/auth/dev-token -H 'content-type: application/json' -d '{{\"player_id\":\"alice\"}}'\n",
            key = app
                .admin_keys()
                .first()
                .map(String::as_str)
                .unwrap_or("(configured)"),
        );
    }
    tracing::info!(%addr, %scheme, "listening");
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.run().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("DUALCONN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
