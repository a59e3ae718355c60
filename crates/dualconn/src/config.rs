//! One place that turns flags, `DUALCONN_*` variables and a TOML file into a [`Config`].
//!
//! Precedence is flag, then environment, then file, then the built-in default. clap would hide
//! where a value came from if it applied defaults itself, so every field of [`Settings`] is an
//! `Option` and defaults are applied once, in [`Settings::resolve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::hub::{BudgetConfig, default_max_connections};

/// 512 MiB: room for 512 readers a full default outbox behind at once, far below the memory
/// of any machine meant to hold thousands of connections.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 512 << 20;

/// Every setting an operator can give. The same struct is read from the command line and from
/// the TOML file, so the two can never drift apart.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Listen address [default: 127.0.0.1:8000]
    #[arg(long, env = "DUALCONN_BIND")]
    pub bind: Option<SocketAddr>,
    /// PEM certificate chain; with the key, the listener serves HTTPS and WSS only
    #[arg(long, env = "DUALCONN_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) for the TLS certificate
    #[arg(long, env = "DUALCONN_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// HS256 secret for player tokens; setting any key turns dev mode off
    #[arg(long, env = "DUALCONN_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC P-256) for RS256/ES256 player tokens
    #[arg(long, env = "DUALCONN_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The token claim that holds the player id [default: sub]
    #[arg(long, env = "DUALCONN_JWT_PLAYER_CLAIM")]
    pub jwt_player_claim: Option<String>,
    /// Required `aud` claim, when set
    #[arg(long, env = "DUALCONN_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim, when set
    #[arg(long, env = "DUALCONN_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Clock leeway for `exp`, in seconds [default: 30]
    #[arg(long, env = "DUALCONN_JWT_LEEWAY_SECS")]
    pub jwt_leeway_secs: Option<u64>,
    /// Admin API keys, comma-separated [default: one random key in dev mode]
    #[arg(long, env = "DUALCONN_ADMIN_KEYS", hide_env_values = true)]
    pub admin_keys: Option<String>,
    /// Connections one player may hold [default: 4]
    #[arg(long, env = "DUALCONN_MAX_CONNECTIONS_PER_PLAYER")]
    pub max_connections_per_player: Option<usize>,
    /// Refuse a connection past the cap instead of evicting the oldest [default: false]
    #[arg(long, env = "DUALCONN_REJECT_OVER_LIMIT")]
    pub reject_over_limit: Option<bool>,
    /// Players one room may hold [default: 10000]
    #[arg(long, env = "DUALCONN_MAX_ROOM_MEMBERS")]
    pub max_room_members: Option<usize>,
    /// Rooms one player may be in [default: 64]
    #[arg(long, env = "DUALCONN_MAX_ROOMS_PER_PLAYER")]
    pub max_rooms_per_player: Option<usize>,
    /// Connection attempts per second per client IP [default: 20]
    #[arg(long, env = "DUALCONN_CONNECT_RATE_PER_IP")]
    pub connect_rate_per_ip: Option<u32>,
    /// Burst of connection attempts per client IP [default: 100]
    #[arg(long, env = "DUALCONN_CONNECT_BURST_PER_IP")]
    pub connect_burst_per_ip: Option<u32>,
    /// Connection attempts per second per player [default: 2]
    #[arg(long, env = "DUALCONN_CONNECT_RATE_PER_PLAYER")]
    pub connect_rate_per_player: Option<u32>,
    /// Burst of connection attempts per player [default: 10]
    #[arg(long, env = "DUALCONN_CONNECT_BURST_PER_PLAYER")]
    pub connect_burst_per_player: Option<u32>,
    /// Events retained per player for resume [default: 256]
    #[arg(long, env = "DUALCONN_HISTORY_SIZE")]
    pub history_size: Option<usize>,
    /// How long retained events are kept, in seconds [default: 300]
    #[arg(long, env = "DUALCONN_HISTORY_TTL_SECS")]
    pub history_ttl_secs: Option<u64>,
    /// Heartbeat event interval on both transports, in seconds [default: 15]
    #[arg(long, env = "DUALCONN_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// WebSocket protocol ping interval, in seconds [default: 25]
    #[arg(long, env = "DUALCONN_PING_SECS")]
    pub ping_secs: Option<u64>,
    /// Outbound queue bound per connection, in bytes [default: 1048576]
    #[arg(long, env = "DUALCONN_OUTBOX_BYTES")]
    pub outbox_bytes: Option<usize>,
    /// Idle time after which a player with no connections is forgotten, in seconds [default: 86400]
    #[arg(long, env = "DUALCONN_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u64>,
    /// Largest inbound WebSocket message or POST /api/commands body, in bytes [default: 65536]
    #[arg(long, env = "DUALCONN_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Largest HTTP request body, in bytes [default: 262144]
    #[arg(long, env = "DUALCONN_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Time to drain connections on shutdown, in seconds [default: 10]
    #[arg(long, env = "DUALCONN_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Origins allowed cross-origin, comma-separated, or `*` [default: same-origin only]
    #[arg(long, env = "DUALCONN_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// Lifetime of tokens from the dev-token endpoint, in seconds [default: 3600]
    #[arg(long, env = "DUALCONN_DEV_TOKEN_TTL_SECS")]
    pub dev_token_ttl_secs: Option<u64>,
    /// Game backend that receives players' commands instead of the demo world
    #[arg(long, env = "DUALCONN_COMMAND_WEBHOOK")]
    pub command_webhook: Option<String>,
    /// Shared secret that signs webhook bodies (X-Dualconn-Signature: sha256=HMAC)
    #[arg(long, env = "DUALCONN_COMMAND_WEBHOOK_SECRET", hide_env_values = true)]
    pub command_webhook_secret: Option<String>,
    /// Webhook timeout, in milliseconds [default: 5000]
    #[arg(long, env = "DUALCONN_COMMAND_WEBHOOK_TIMEOUT_MS")]
    pub command_webhook_timeout_ms: Option<u64>,
    /// Game backend that maps credentials dualconn cannot verify to a player (POST, signed)
    #[arg(long, env = "DUALCONN_CONNECT_WEBHOOK")]
    pub connect_webhook: Option<String>,
    /// Secret that signs connect-webhook bodies [default: the command webhook's secret]
    #[arg(long, env = "DUALCONN_CONNECT_WEBHOOK_SECRET", hide_env_values = true)]
    pub connect_webhook_secret: Option<String>,
    /// Connect-webhook timeout, in milliseconds [default: 3000]
    #[arg(long, env = "DUALCONN_CONNECT_WEBHOOK_TIMEOUT_MS")]
    pub connect_webhook_timeout_ms: Option<u64>,
    /// Game backend told when players come online and go offline, sessions start and connections open and close (POST, signed)
    #[arg(long, env = "DUALCONN_LIFECYCLE_WEBHOOK")]
    pub lifecycle_webhook: Option<String>,
    /// Secret that signs lifecycle-webhook bodies [default: the command webhook's secret]
    #[arg(
        long,
        env = "DUALCONN_LIFECYCLE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub lifecycle_webhook_secret: Option<String>,
    /// Lifecycle-webhook timeout per attempt, in milliseconds [default: 3000]
    #[arg(long, env = "DUALCONN_LIFECYCLE_WEBHOOK_TIMEOUT_MS")]
    pub lifecycle_webhook_timeout_ms: Option<u64>,
    /// How long a player has no connection before `player_offline`, e.g. `5s` or `500ms` [default: 5s]
    #[arg(long, env = "DUALCONN_LIFECYCLE_GRACE")]
    pub lifecycle_grace: Option<String>,
    /// Commands per second per player [default: 20]
    #[arg(long, env = "DUALCONN_COMMAND_RATE_PER_PLAYER")]
    pub command_rate_per_player: Option<u32>,
    /// Burst of commands per player [default: 40]
    #[arg(long, env = "DUALCONN_COMMAND_BURST_PER_PLAYER")]
    pub command_burst_per_player: Option<u32>,
    /// Cluster mode: nodes share players, sessions, history and fan-out through this Redis
    /// (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS) [default: none, one process]
    #[arg(long, env = "DUALCONN_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so deployments can share a Redis [default: dualconn]
    #[arg(long, env = "DUALCONN_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// This node's id in the cluster, unique per node [default: random]
    #[arg(long, env = "DUALCONN_NODE_ID")]
    pub node_id: Option<String>,
    /// Log format: `text` or `json`; DUALCONN_LOG filters, e.g. `debug` [default: text]
    #[arg(long, env = "DUALCONN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    // The node's budget (SPEC §12.27): past either bound new streams get 503.
    /// Streams this node holds at once [default: the descriptor limit less a reserve]
    #[arg(long, env = "DUALCONN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bytes queued in all outboxes together; past it the heaviest readers close [default: 536870912]
    #[arg(long, env = "DUALCONN_MAX_QUEUED_BYTES")]
    pub max_queued_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// A value out of range. `key` is the TOML key; the command line names it the way the
    /// user gave it (flag, variable or file key), which only it knows.
    #[error("{key} {problem}")]
    Setting {
        key: &'static str,
        problem: &'static str,
    },
}

/// Where player tokens' signatures come from.
#[derive(Clone)]
pub enum KeySource {
    /// Dev mode: a secret made at start that nobody outside this process knows.
    Dev { secret: Vec<u8> },
    /// HS256 with an operator's shared secret.
    Secret(Vec<u8>),
    /// RS256 or ES256; the PEM text of the public key.
    PublicKeyPem(Vec<u8>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line, not even through `{:?}`.
        f.write_str(match self {
            KeySource::Dev { .. } => "Dev(<redacted>)",
            KeySource::Secret(_) => "Secret(<redacted>)",
            KeySource::PublicKeyPem(_) => "PublicKeyPem",
        })
    }
}

/// Authentication settings, resolved.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub keys: KeySource,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway: Duration,
    /// The claim that names the player (SPEC §12.28): games whose tokens carry a user id in
    /// `sub` put the player id in another claim.
    pub player_claim: String,
    /// Configured admin keys. Debug prints only how many there are.
    pub admin_keys: AdminKeys,
    pub dev_token_ttl: Duration,
}

impl AuthConfig {
    pub fn dev_mode(&self) -> bool {
        matches!(self.keys, KeySource::Dev { .. })
    }
}

#[derive(Clone, Default)]
pub struct AdminKeys(pub Vec<String>);

impl std::fmt::Debug for AdminKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminKeys({} keys)", self.0.len())
    }
}

/// Token-bucket parameters.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Everything the server needs, with defaults applied and checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    /// Set when the listener speaks TLS; read again on SIGHUP or when the files change.
    pub tls: Option<crate::tls::TlsFiles>,
    pub auth: AuthConfig,
    pub max_connections_per_player: usize,
    pub reject_over_limit: bool,
    pub max_room_members: usize,
    pub max_rooms_per_player: usize,
    pub connect_per_ip: Rate,
    pub connect_per_player: Rate,
    pub history_size: usize,
    pub history_ttl: Duration,
    pub heartbeat_interval: Duration,
    pub ping_interval: Duration,
    pub outbox_bytes: usize,
    pub session_ttl: Duration,
    pub max_message_bytes: usize,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub allowed_origins: AllowedOrigins,
    pub log_format: LogFormat,
    /// How long the server tells clients to wait before reconnecting after a shutdown.
    pub reconnect_after: Duration,
    /// SSE `retry:` value, the browser's reconnect delay.
    pub sse_retry: Duration,
    /// Where commands go; `None` runs the built-in demo world.
    pub command_webhook: Option<WebhookConfig>,
    /// Asked who a player is when dualconn cannot verify the credentials itself.
    pub connect_webhook: Option<WebhookConfig>,
    /// Told players' lifecycle: online, offline, sessions, connections.
    pub lifecycle_webhook: Option<WebhookConfig>,
    /// How long a player must have no connection before `player_offline`, so that a
    /// transport switch or a reconnect does not flap.
    pub lifecycle_grace: Duration,
    pub command_rate: Rate,
    /// Cluster mode through Redis; `None` runs one process with nothing else.
    pub cluster: Option<RedisSettings>,
    /// Node-wide bounds on streams and queued bytes.
    pub budget: BudgetConfig,
}

pub use crate::backplane::redis::RedisSettings;

/// The game backend that answers commands.
#[derive(Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Which browser origins may use the API from another origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Only the page's own origin.
    SameOrigin,
    Any,
    List(Vec<String>),
}

impl Settings {
    /// Reads a TOML file whose keys are the long flag names with `_`.
    pub fn from_file(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Fills every unset field of `self` from `lower`.
    pub fn or(self, lower: Settings) -> Settings {
        macro_rules! merge {
            ($($f:ident),* $(,)?) => { Settings { $($f: self.$f.or(lower.$f)),* } };
        }
        merge!(
            bind,
            tls_cert_file,
            tls_key_file,
            jwt_secret,
            jwt_public_key_file,
            jwt_player_claim,
            jwt_audience,
            jwt_issuer,
            jwt_leeway_secs,
            admin_keys,
            max_connections_per_player,
            reject_over_limit,
            max_room_members,
            max_rooms_per_player,
            connect_rate_per_ip,
            connect_burst_per_ip,
            connect_rate_per_player,
            connect_burst_per_player,
            history_size,
            history_ttl_secs,
            heartbeat_secs,
            ping_secs,
            outbox_bytes,
            session_ttl_secs,
            max_message_bytes,
            max_body_bytes,
            shutdown_timeout_secs,
            allowed_origins,
            dev_token_ttl_secs,
            command_webhook,
            command_webhook_secret,
            command_webhook_timeout_ms,
            connect_webhook,
            connect_webhook_secret,
            connect_webhook_timeout_ms,
            lifecycle_webhook,
            lifecycle_webhook_secret,
            lifecycle_webhook_timeout_ms,
            lifecycle_grace,
            command_rate_per_player,
            command_burst_per_player,
            redis_url,
            redis_prefix,
            node_id,
            log_format,
            max_connections,
            max_queued_bytes,
        )
    }

    /// Applies defaults and checks values. Dev mode makes its random secret here.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let keys = match (self.jwt_secret, self.jwt_public_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set either DUALCONN_JWT_SECRET or DUALCONN_JWT_PUBLIC_KEY_FILE, not both"
                        .into(),
                ));
            }
            (Some(secret), None) => {
                if secret.len() < 32 {
                    return Err(ConfigError::Setting {
                        key: "jwt_secret",
                        problem: "must be at least 32 bytes",
                    });
                }
                KeySource::Secret(secret.into_bytes())
            }
            (None, Some(path)) => KeySource::PublicKeyPem(
                std::fs::read(&path).map_err(|source| ConfigError::ReadFile { path, source })?,
            ),
            (None, None) => KeySource::Dev {
                secret: crate::random::bytes::<32>().to_vec(),
            },
        };
        let mut admin_keys: Vec<String> = self
            .admin_keys
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if admin_keys.iter().any(|k| k.len() < 16) {
            return Err(ConfigError::Setting {
                key: "admin_keys",
                problem: "must each be at least 16 characters",
            });
        }
        if admin_keys.is_empty() && matches!(keys, KeySource::Dev { .. }) {
            admin_keys.push(format!("dev-admin-{}", crate::random::token()));
        }
        let cluster = match self.redis_url {
            None => {
                if self.redis_prefix.is_some() || self.node_id.is_some() {
                    return Err(ConfigError::Invalid(
                        "DUALCONN_REDIS_PREFIX and DUALCONN_NODE_ID need DUALCONN_REDIS_URL".into(),
                    ));
                }
                None
            }
            Some(url) => {
                let node_id = self.node_id.unwrap_or_else(|| {
                    format!("node-{}", &crate::random::token()[..10]).replace('_', "-")
                });
                if !crate::backplane::redis::valid_node_id(&node_id) {
                    return Err(ConfigError::Invalid(
                        "DUALCONN_NODE_ID must match ^[A-Za-z0-9_.:-]{1,64}$".into(),
                    ));
                }
                let prefix = self.redis_prefix.unwrap_or_else(|| "dualconn".into());
                if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                    return Err(ConfigError::Invalid(
                        "DUALCONN_REDIS_PREFIX must be non-empty and without spaces".into(),
                    ));
                }
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(ConfigError::Invalid(
                        "DUALCONN_REDIS_URL must start with redis:// or rediss://".into(),
                    ));
                }
                Some(RedisSettings {
                    url,
                    prefix,
                    node_id,
                })
            }
        };
        let player_claim = self.jwt_player_claim.unwrap_or_else(|| "sub".into());
        // These claims have their own meaning; a player id in one of them would be ambiguous.
        if player_claim.is_empty()
            || ["exp", "nbf", "iat", "aud", "iss", "role"].contains(&player_claim.as_str())
        {
            return Err(ConfigError::Invalid(format!(
                "DUALCONN_JWT_PLAYER_CLAIM cannot be {player_claim:?}"
            )));
        }
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "DUALCONN_TLS_CERT_FILE and DUALCONN_TLS_KEY_FILE go together: set both or neither"
                        .into(),
                ));
            }
        };
        let secs = Duration::from_secs;
        let positive = |key: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError::Setting {
                    key,
                    problem: "must be greater than 0",
                })
            } else {
                Ok(v)
            }
        };
        let connect_webhook_timeout = Duration::from_millis(positive(
            "connect_webhook_timeout_ms",
            self.connect_webhook_timeout_ms.unwrap_or(3000),
        )?);
        let lifecycle_webhook_timeout = Duration::from_millis(positive(
            "lifecycle_webhook_timeout_ms",
            self.lifecycle_webhook_timeout_ms.unwrap_or(3000),
        )?);
        let lifecycle_grace = match self.lifecycle_grace.as_deref() {
            None => DEFAULT_LIFECYCLE_GRACE,
            Some(text) => parse_duration(text).ok_or(ConfigError::Setting {
                key: "lifecycle_grace",
                problem: "must be a duration such as 5s or 500ms (a bare number is seconds)",
            })?,
        };
        let config = Config {
            bind: self
                .bind
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
            tls,
            auth: AuthConfig {
                keys,
                audience: self.jwt_audience,
                issuer: self.jwt_issuer,
                leeway: secs(self.jwt_leeway_secs.unwrap_or(30)),
                player_claim,
                admin_keys: AdminKeys(admin_keys),
                dev_token_ttl: secs(positive(
                    "dev_token_ttl_secs",
                    self.dev_token_ttl_secs.unwrap_or(3600),
                )?),
            },
            max_connections_per_player: positive(
                "max_connections_per_player",
                self.max_connections_per_player.unwrap_or(4) as u64,
            )? as usize,
            reject_over_limit: self.reject_over_limit.unwrap_or(false),
            max_room_members: positive(
                "max_room_members",
                self.max_room_members.unwrap_or(10_000) as u64,
            )? as usize,
            max_rooms_per_player: positive(
                "max_rooms_per_player",
                self.max_rooms_per_player.unwrap_or(64) as u64,
            )? as usize,
            connect_per_ip: Rate {
                per_second: positive(
                    "connect_rate_per_ip",
                    self.connect_rate_per_ip.unwrap_or(20).into(),
                )? as u32,
                burst: positive(
                    "connect_burst_per_ip",
                    self.connect_burst_per_ip.unwrap_or(100).into(),
                )? as u32,
            },
            connect_per_player: Rate {
                per_second: positive(
                    "connect_rate_per_player",
                    self.connect_rate_per_player.unwrap_or(2).into(),
                )? as u32,
                burst: positive(
                    "connect_burst_per_player",
                    self.connect_burst_per_player.unwrap_or(10).into(),
                )? as u32,
            },
            history_size: self.history_size.unwrap_or(256),
            history_ttl: secs(self.history_ttl_secs.unwrap_or(300)),
            heartbeat_interval: secs(positive(
                "heartbeat_secs",
                self.heartbeat_secs.unwrap_or(15),
            )?),
            ping_interval: secs(positive("ping_secs", self.ping_secs.unwrap_or(25))?),
            outbox_bytes: positive("outbox_bytes", self.outbox_bytes.unwrap_or(1 << 20) as u64)?
                as usize,
            session_ttl: secs(positive(
                "session_ttl_secs",
                self.session_ttl_secs.unwrap_or(86_400),
            )?),
            max_message_bytes: positive(
                "max_message_bytes",
                self.max_message_bytes.unwrap_or(64 * 1024) as u64,
            )? as usize,
            max_body_bytes: positive(
                "max_body_bytes",
                self.max_body_bytes.unwrap_or(256 * 1024) as u64,
            )? as usize,
            shutdown_timeout: secs(self.shutdown_timeout_secs.unwrap_or(10)),
            allowed_origins: parse_origins(self.allowed_origins.as_deref()),
            log_format: self.log_format.unwrap_or_default(),
            reconnect_after: Duration::from_millis(1000),
            sse_retry: Duration::from_millis(1000),
            connect_webhook: self.connect_webhook.map(|url| WebhookConfig {
                url,
                // One secret for every webhook is the usual set-up; a separate one is allowed.
                secret: self
                    .connect_webhook_secret
                    .or_else(|| self.command_webhook_secret.clone()),
                timeout: connect_webhook_timeout,
            }),
            lifecycle_webhook: self.lifecycle_webhook.map(|url| WebhookConfig {
                url,
                secret: self
                    .lifecycle_webhook_secret
                    .or_else(|| self.command_webhook_secret.clone()),
                timeout: lifecycle_webhook_timeout,
            }),
            lifecycle_grace,
            command_webhook: self.command_webhook.map(|url| WebhookConfig {
                url,
                secret: self.command_webhook_secret,
                timeout: Duration::from_millis(self.command_webhook_timeout_ms.unwrap_or(5000)),
            }),
            command_rate: Rate {
                per_second: positive(
                    "command_rate_per_player",
                    self.command_rate_per_player.unwrap_or(20).into(),
                )? as u32,
                burst: positive(
                    "command_burst_per_player",
                    self.command_burst_per_player.unwrap_or(40).into(),
                )? as u32,
            },
            cluster,
            budget: BudgetConfig {
                max_connections: positive(
                    "max_connections",
                    self.max_connections.unwrap_or_else(default_max_connections) as u64,
                )? as usize,
                max_queued_bytes: positive(
                    "max_queued_bytes",
                    self.max_queued_bytes.unwrap_or(DEFAULT_MAX_QUEUED_BYTES) as u64,
                )? as usize,
            },
        };
        Ok(config)
    }
}

/// Long enough for a page reload or a transport switch, short enough that a backend soon
/// hears that a player left.
pub const DEFAULT_LIFECYCLE_GRACE: Duration = Duration::from_secs(5);

/// `5s`, `500ms`, `1m` (humantime), or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).ok(),
    }
}

fn parse_origins(raw: Option<&str>) -> AllowedOrigins {
    let Some(raw) = raw else {
        return AllowedOrigins::SameOrigin;
    };
    let list: Vec<String> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect();
    if list.iter().any(|o| o == "*") {
        AllowedOrigins::Any
    } else if list.is_empty() {
        AllowedOrigins::SameOrigin
    } else {
        AllowedOrigins::List(list)
    }
}

impl Config {
    /// Defaults with dev-mode auth: what `dualconn serve` runs with no settings, bound to port 0
    /// so that tests and embedders can run many at once.
    pub fn ephemeral() -> Config {
        let mut config = Settings::default()
            .resolve()
            .expect("the built-in defaults are valid");
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_defaults_fill_the_rest() {
        let cli = Settings {
            history_size: Some(10),
            ..Default::default()
        };
        let file: Settings = toml::from_str("history_size = 99\nping_secs = 7").unwrap();
        let config = cli.or(file).resolve().unwrap();
        assert_eq!(config.history_size, 10);
        assert_eq!(config.ping_interval, Duration::from_secs(7));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(config.bind.to_string(), "127.0.0.1:8000");
        assert!(config.auth.dev_mode());
        assert_eq!(config.auth.admin_keys.0.len(), 1);
    }

    #[test]
    fn a_secret_turns_dev_mode_off_and_short_secrets_are_refused() {
        let ok = Settings {
            jwt_secret: Some("x".repeat(32)),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(!ok.auth.dev_mode());
        assert!(ok.auth.admin_keys.0.is_empty());
        assert!(
            Settings {
                jwt_secret: Some("short".into()),
                ..Default::default()
            }
            .resolve()
            .is_err()
        );
    }

    #[test]
    fn the_player_claim_and_connect_webhook_come_from_the_file_too() {
        let file: Settings = toml::from_str(
            "jwt_player_claim = \"player_id\"\nconnect_webhook = \"http://game/connect\"\ncommand_webhook_secret = \"s\"",
        )
        .unwrap();
        let config = file.resolve().unwrap();
        assert_eq!(config.auth.player_claim, "player_id");
        let hook = config.connect_webhook.unwrap();
        assert_eq!(
            hook.secret.as_deref(),
            Some("s"),
            "the command webhook's secret by default"
        );
        assert_eq!(hook.timeout, Duration::from_millis(3000));
        assert_eq!(
            Settings::default().resolve().unwrap().auth.player_claim,
            "sub"
        );
        for reserved in ["exp", "role", ""] {
            let settings = Settings {
                jwt_player_claim: Some(reserved.into()),
                ..Default::default()
            };
            assert!(settings.resolve().is_err(), "{reserved:?}");
        }
    }

    #[test]
    fn the_lifecycle_grace_reads_units_or_seconds() {
        let grace = |text: &str| {
            Settings {
                lifecycle_grace: Some(text.into()),
                ..Default::default()
            }
            .resolve()
            .map(|c| c.lifecycle_grace)
        };
        assert_eq!(grace("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(grace("2").unwrap(), Duration::from_secs(2));
        assert_eq!(grace("1m").unwrap(), Duration::from_secs(60));
        assert!(grace("soon").is_err());
        let config = Settings::default().resolve().unwrap();
        assert_eq!(config.lifecycle_grace, DEFAULT_LIFECYCLE_GRACE);
        let file: Settings = toml::from_str(
            "lifecycle_webhook = \"http://game/lifecycle\"\ncommand_webhook_secret = \"s\"",
        )
        .unwrap();
        let hook = file.resolve().unwrap().lifecycle_webhook.unwrap();
        assert_eq!(
            hook.secret.as_deref(),
            Some("s"),
            "the command webhook's secret by default"
        );
    }

    #[test]
    fn unknown_file_keys_are_an_error() {
        assert!(toml::from_str::<Settings>("histroy_size = 1").is_err());
    }

    #[test]
    fn origins_parse() {
        assert_eq!(parse_origins(None), AllowedOrigins::SameOrigin);
        assert_eq!(parse_origins(Some("*")), AllowedOrigins::Any);
        assert_eq!(
            parse_origins(Some("https://A.example/, http://b.example")),
            AllowedOrigins::List(vec!["https://a.example".into(), "http://b.example".into()])
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = Settings {
            jwt_secret: Some("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into()),
            admin_keys: Some("admin-key-0123456789".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("s3cr3t"));
        assert!(!text.contains("admin-key-0123456789"));
    }
}
