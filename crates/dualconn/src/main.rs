//! The `dualconn` command: `serve` and `token`, nothing else.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use dualconn::config::{AllowedOrigins, ConfigError, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

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
// Parsed once at start-up; boxing the settings would only make clap's flatten awkward.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server. With no signing key configured it runs in dev mode.
    #[command(after_help = LOG_HELP)]
    Serve {
        /// TOML file whose keys are the long flag names with `_` (flags and env win)
        #[arg(long, env = "DUALCONN_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print a player token signed with the server's HS256 secret.
    Token {
        /// The player id (the token's `sub`)
        player_id: String,
        /// Lifetime in seconds
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// Add the `role: "admin"` claim
        #[arg(long)]
        admin: bool,
        /// TOML file of the server's settings; only `jwt_*` keys are read from it
        #[arg(long, env = "DUALCONN_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        signing: Signing,
    },
}

const LOG_HELP: &str = "Logs go to stderr, coloured only on a terminal. \
DUALCONN_LOG filters them (e.g. `debug` or `dualconn=trace`) [default: info].";

/// The settings `token` uses: a subset of [`Settings`], so its help lists nothing else.
#[derive(clap::Args)]
struct Signing {
    /// HS256 secret the server verifies player tokens with
    #[arg(long, env = "DUALCONN_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// `aud` claim to add, when the server requires one
    #[arg(long, env = "DUALCONN_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// `iss` claim to add, when the server requires one
    #[arg(long, env = "DUALCONN_JWT_ISSUER")]
    jwt_issuer: Option<String>,
}

/// Flags over environment (clap merges those two) over the file; then defaults and checks.
fn load(
    matches: &ArgMatches,
    config: Option<&Path>,
    settings: Settings,
) -> anyhow::Result<dualconn::config::Config> {
    let settings = match config {
        Some(path) => settings.or(Settings::from_file(path)?),
        None => settings,
    };
    settings
        .resolve()
        .map_err(|e| named_as_given(e, matches, config))
}

/// Names an out-of-range setting the way the user gave it: `--flag`, `DUALCONN_VAR`, or the
/// file's key, instead of the internal field name.
fn named_as_given(err: ConfigError, matches: &ArgMatches, file: Option<&Path>) -> anyhow::Error {
    let ConfigError::Setting { key, problem } = err else {
        return err.into();
    };
    let name = match matches
        .try_get_raw(key)
        .ok()
        .flatten()
        .and_then(|_| matches.value_source(key))
    {
        Some(ValueSource::CommandLine) => format!("--{}", key.replace('_', "-")),
        Some(ValueSource::EnvVariable) => format!("DUALCONN_{}", key.to_ascii_uppercase()),
        _ => match file {
            Some(path) => format!("`{key}` in {}", path.display()),
            None => key.to_owned(),
        },
    };
    anyhow::anyhow!("{name} {problem}")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes in one line, each text once: many errors here already quote their
/// source in their own message, which anyhow's report would print a second time.
fn one_line(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(cause.trim()) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve { config, settings } => {
            let sub = matches.subcommand_matches("serve").unwrap_or(&matches);
            let config = load(sub, config.as_deref(), settings)?;
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
            signing,
        } => {
            let sub = matches.subcommand_matches("token").unwrap_or(&matches);
            let file = match &config {
                Some(path) => Settings::from_file(path)?,
                None => Settings::default(),
            };
            let secret = signing.jwt_secret.or(file.jwt_secret);
            anyhow::ensure!(
                secret.is_some(),
                "set DUALCONN_JWT_SECRET (or --jwt-secret, or `jwt_secret` in the config file) to mint tokens; in dev mode, POST /auth/dev-token on the running server"
            );
            anyhow::ensure!(
                dualconn::auth::valid_player_id(&player_id),
                "player ids match ^[A-Za-z0-9_.:@-]{{1,128}}$ and `stats` is reserved"
            );
            let settings = Settings {
                jwt_secret: secret,
                jwt_audience: signing.jwt_audience.or(file.jwt_audience),
                jwt_issuer: signing.jwt_issuer.or(file.jwt_issuer),
                ..Settings::default()
            };
            let resolved = settings
                .resolve()
                .map_err(|e| named_as_given(e, sub, config.as_deref()))?;
            let auth = dualconn::auth::Authenticator::new(&resolved.auth)?;
            let token = auth
                .mint(&player_id, Duration::from_secs(ttl_secs), admin)
                .context("cannot sign the token")?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(config: dualconn::config::Config) -> anyhow::Result<()> {
    let dev = config.auth.dev_mode();
    let same_origin_only = config.allowed_origins == AllowedOrigins::SameOrigin;
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
    if same_origin_only {
        // A dev server's proxy (Vite with `changeOrigin: true`) sends its own origin, and its
        // WebSocket is refused with 403; nothing else would tell the developer why.
        tracing::info!(
            "no DUALCONN_ALLOWED_ORIGINS set: WebSockets from pages of another origin are refused (403) and their API calls get no CORS grant; to allow a dev server or its proxy (e.g. Vite with changeOrigin), set its origin, e.g. DUALCONN_ALLOWED_ORIGINS=http://localhost:5173"
        );
    }
    tracing::info!(%addr, %scheme, "listening");
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    // On a worker, not on this `block_on` thread: the connection tasks the accept loop spawns
    // then start in the same worker's queue, with no wake-up of another thread (and, on one
    // core, no context switch) per connection (BENCHMARKS.md, "The accept loop on a worker").
    tokio::spawn(app.run())
        .await
        .context("the server's accept loop failed")?;
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
        // Colour codes are noise in a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
