//! Who is asking: player JWTs and admin API keys (SPEC §1). No HTTP types live here.

// Token claims are numbers a client controls (SPEC §12.26): no unchecked arithmetic here.
#![deny(clippy::arithmetic_side_effects)]

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, ConfigError, KeySource};
use crate::hub::PlayerId;

mod claims;
mod verified;

use claims::Player;
use verified::VerifiedTokens;

/// The verified identity behind a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A configured admin API key: a game backend, an operator or a dashboard.
    AdminKey,
    /// A player token. `admin` is the `role: "admin"` claim.
    Player {
        id: PlayerId,
        admin: bool,
        /// `exp` plus the leeway: when connections opened with this token must end.
        expires_at: SystemTime,
    },
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Principal::AdminKey | Principal::Player { admin: true, .. }
        )
    }

    /// May this principal read and act on `player`'s REST resources?
    pub fn may_manage(&self, player: &str) -> bool {
        match self {
            Principal::AdminKey => true,
            Principal::Player { id, admin, .. } => *admin || &**id == player,
        }
    }

    /// The player whose stream this principal may open, if any (SPEC §12.20): admin keys open
    /// none, and an admin JWT opens only its own.
    pub fn stream_player(&self) -> Option<(&PlayerId, SystemTime)> {
        match self {
            Principal::AdminKey => None,
            Principal::Player { id, expires_at, .. } => Some((id, *expires_at)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
}

/// Verifies player tokens and admin keys, and mints tokens when it holds a shared secret.
pub struct Authenticator {
    /// Verifies token signatures.
    decoding: DecodingKey,
    /// Algorithm, `exp`, `aud`, `iss` and leeway rules.
    validation: Validation,
    /// Present only with a shared secret: for `dualconn token` and the dev-token endpoint.
    encoding: Option<EncodingKey>,
    /// SHA-256 of each admin key, so that comparison is constant-time and length-blind.
    admin_key_digests: Vec<[u8; 32]>,
    /// Added to `exp` when deciding when an open connection must end.
    leeway: Duration,
    audience: Option<String>,
    issuer: Option<String>,
    /// The claim that holds the player id; `sub` unless configured.
    player_claim: String,
    /// Tokens already verified, by digest: a token presented again skips verification.
    verified: VerifiedTokens,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Authenticator, ConfigError> {
        let (decoding, encoding, algorithm) = match &config.keys {
            KeySource::Dev { secret } | KeySource::Secret(secret) => (
                DecodingKey::from_secret(secret),
                Some(EncodingKey::from_secret(secret)),
                Algorithm::HS256,
            ),
            KeySource::PublicKeyPem(pem) => {
                if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                    (key, None, Algorithm::ES256)
                } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                    (key, None, Algorithm::RS256)
                } else {
                    return Err(ConfigError::Invalid(
                        "DUALCONN_JWT_PUBLIC_KEY_FILE is neither an EC P-256 nor an RSA public key in PEM".into(),
                    ));
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.as_secs();
        // A configured `aud` or `iss` must be present, not merely right when present. Another
        // player claim is checked below, since jsonwebtoken requires only registered claims.
        let mut required = vec!["exp"];
        required.extend((config.player_claim == "sub").then_some("sub"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        validation.set_required_spec_claims(&required);
        // RFC 7519: a token is refused on or after `exp` (plus leeway), the same instant open
        // connections end; jsonwebtoken alone would still accept it for that whole second.
        validation.reject_tokens_expiring_in_less_than = 1;
        validation.validate_aud = config.audience.is_some();
        if let Some(aud) = &config.audience {
            validation.set_audience(&[aud]);
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Authenticator {
            decoding,
            validation,
            encoding,
            admin_key_digests: config
                .admin_keys
                .0
                .iter()
                .map(|k| digest(k.as_bytes()))
                .collect(),
            leeway: config.leeway,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            player_claim: config.player_claim.clone(),
            verified: VerifiedTokens::default(),
        })
    }

    /// Classifies a bearer credential: an admin key, a valid player token, or an error.
    pub fn authenticate(&self, credential: &str) -> Result<Principal, AuthError> {
        if credential.is_empty() {
            return Err(AuthError::Missing);
        }
        let presented = digest(credential.as_bytes());
        if self.is_admin_key(&presented) {
            return Ok(Principal::AdminKey);
        }
        let now = SystemTime::now();
        if let Some(known) = self.verified.get(&presented, now) {
            return known;
        }
        let principal = self.verify(credential)?;
        self.verified.keep(presented, &principal, now);
        Ok(principal)
    }

    /// Checks a player token's signature and claims.
    fn verify(&self, credential: &str) -> Result<Principal, AuthError> {
        // The claims come back as their JSON text, read once below (`claims`).
        let data =
            jsonwebtoken::decode::<Box<RawValue>>(credential, &self.decoding, &self.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                    ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience"),
                    ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer"),
                    ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing claim"),
                    ErrorKind::InvalidAlgorithm => AuthError::Invalid("wrong algorithm"),
                    _ => AuthError::Invalid("malformed token"),
                })?;
        let claims = claims::parse(data.claims.get(), &self.player_claim)
            .map_err(|_| AuthError::Invalid("malformed token"))?;
        let player = match claims.player {
            Player::Text(id) => id,
            // Games often number their players; the decimal form is the id. `sub` is a string
            // by RFC 7519, so a number there stays refused (jsonwebtoken refuses it first, as
            // the required `sub` it looks for is a string; the guard keeps the rule here).
            Player::Integer(n) if self.player_claim != "sub" => Cow::Owned(n.to_string()),
            Player::Missing => return Err(AuthError::Invalid("missing claim")),
            Player::Integer(_) | Player::Other => {
                return Err(AuthError::Invalid(
                    "the player claim is not a valid player id",
                ));
            }
        };
        if !valid_player_id(&player) {
            return Err(AuthError::Invalid(
                "the player claim is not a valid player id",
            ));
        }
        // SPEC §12.26: an `exp` no clock can represent is refused, not a panic.
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .and_then(|t| t.checked_add(self.leeway))
            .ok_or(AuthError::Invalid("exp is out of range"))?;
        Ok(Principal::Player {
            id: PlayerId::from(player.as_ref()),
            admin: claims.admin,
            expires_at,
        })
    }

    /// `presented` is the credential's digest, so that comparison is constant-time and
    /// length-blind.
    fn is_admin_key(&self, presented: &[u8; 32]) -> bool {
        // Every key is compared, with no early exit, so timing says nothing about which matched.
        self.admin_key_digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, key| {
                acc | key.ct_eq(presented)
            })
            .into()
    }

    /// Mints an HS256 player token, when this server holds a shared secret.
    pub fn mint(&self, player: &str, ttl: Duration, admin: bool) -> Option<String> {
        let encoding = self.encoding.as_ref()?;
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(ttl)
            .as_secs();
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), player.into());
        // The configured claim too, so that minted tokens verify here.
        claims.insert(self.player_claim.clone(), player.into());
        claims.insert("exp".into(), exp.into());
        claims.insert("iat".into(), exp.saturating_sub(ttl.as_secs()).into());
        if admin {
            claims.insert("role".into(), "admin".into());
        }
        if let Some(aud) = &self.audience {
            claims.insert("aud".into(), aud.as_str().into());
        }
        if let Some(iss) = &self.issuer {
            claims.insert("iss".into(), iss.as_str().into());
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).ok()
    }
}

impl Authenticator {
    /// Signs arbitrary claims with the shared secret, so the fuzz targets reach claim checks
    /// that a forged signature never gets past.
    pub(crate) fn sign_any(&self, claims: &serde_json::Value) -> Option<String> {
        let encoding = self.encoding.as_ref()?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, encoding).ok()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SPEC §12.21: `^[A-Za-z0-9_.:@-]{1,128}$`, and `stats` is reserved for the stats route.
pub fn valid_player_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id != "stats"
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminKeys;

    fn hs(secret: &str) -> AuthConfig {
        AuthConfig {
            keys: KeySource::Secret(secret.as_bytes().to_vec()),
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(0),
            player_claim: "sub".into(),
            admin_keys: AdminKeys(vec!["admin-key-0123456789".into()]),
            dev_token_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_player() {
        let auth = Authenticator::new(&hs("0123456789abcdef0123456789abcdef")).unwrap();
        let token = auth.mint("alice", Duration::from_secs(60), false).unwrap();
        match auth.authenticate(&token).unwrap() {
            Principal::Player { id, admin, .. } => {
                assert_eq!(&*id, "alice");
                assert!(!admin);
            }
            other => panic!("unexpected {other:?}"),
        }
        let admin = auth.mint("ops", Duration::from_secs(60), true).unwrap();
        assert!(auth.authenticate(&admin).unwrap().is_admin());
    }

    #[test]
    fn minted_tokens_verify_under_another_player_claim() {
        let mut config = hs("0123456789abcdef0123456789abcdef");
        config.player_claim = "player_id".into();
        let auth = Authenticator::new(&config).unwrap();
        let token = auth.mint("alice", Duration::from_secs(60), false).unwrap();
        assert!(matches!(
            auth.authenticate(&token),
            Ok(Principal::Player { id, .. }) if &*id == "alice"
        ));
    }

    #[test]
    fn only_verified_player_tokens_are_kept_and_a_kept_one_answers_the_same() {
        let auth = Authenticator::new(&hs("0123456789abcdef0123456789abcdef")).unwrap();
        let token = auth.mint("alice", Duration::from_secs(60), true).unwrap();
        let first = auth.authenticate(&token).unwrap();
        assert_eq!(auth.verified.len(), 1);
        assert_eq!(auth.authenticate(&token), Ok(first));

        let theirs = Authenticator::new(&hs("fedcba9876543210fedcba9876543210")).unwrap();
        let forged = theirs.mint("alice", Duration::from_secs(60), true).unwrap();
        for refused in [forged.as_str(), "not a token", &token[..token.len() - 1]] {
            assert!(auth.authenticate(refused).is_err(), "{refused}");
            assert!(auth.authenticate(refused).is_err(), "{refused}, again");
        }
        assert_eq!(
            auth.authenticate("admin-key-0123456789"),
            Ok(Principal::AdminKey)
        );
        assert_eq!(
            auth.verified.len(),
            1,
            "refusals and admin keys are not kept"
        );
    }

    #[test]
    fn admin_keys_match_exactly() {
        let auth = Authenticator::new(&hs("0123456789abcdef0123456789abcdef")).unwrap();
        assert_eq!(
            auth.authenticate("admin-key-0123456789"),
            Ok(Principal::AdminKey)
        );
        assert!(auth.authenticate("admin-key-012345678").is_err());
        assert_eq!(auth.authenticate(""), Err(AuthError::Missing));

        // A key listed twice (a copy-paste in the configuration) still matches.
        let mut config = hs("0123456789abcdef0123456789abcdef");
        config.admin_keys = AdminKeys(vec!["key-a".into(), "key-b".into(), "key-a".into()]);
        let auth = Authenticator::new(&config).unwrap();
        for key in ["key-a", "key-b"] {
            assert_eq!(auth.authenticate(key), Ok(Principal::AdminKey), "{key}");
        }
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let ours = Authenticator::new(&hs("0123456789abcdef0123456789abcdef")).unwrap();
        let theirs = Authenticator::new(&hs("fedcba9876543210fedcba9876543210")).unwrap();
        let token = theirs
            .mint("alice", Duration::from_secs(60), false)
            .unwrap();
        assert_eq!(
            ours.authenticate(&token),
            Err(AuthError::Invalid("bad signature"))
        );
    }

    fn sign(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// The reason a refusal gives is what an operator reads in the 401's message.
    #[test]
    fn each_refusal_names_its_reason() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut config = hs(secret);
        config.audience = Some("game".into());
        config.issuer = Some("backend".into());
        let auth = Authenticator::new(&config).unwrap();
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let good = serde_json::json!({"sub": "alice", "exp": exp, "aud": "game", "iss": "backend"});
        assert!(auth.authenticate(&sign(secret, good.clone())).is_ok());
        let with = |key: &str, value: serde_json::Value| {
            let mut claims = good.clone();
            claims[key] = value;
            sign(secret, claims)
        };
        let mut no_sub = good.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &good,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        for (token, reason) in [
            (with("aud", "other".into()), "wrong audience"),
            (with("iss", "other".into()), "wrong issuer"),
            (sign(secret, no_sub), "missing claim"),
            (hs384, "wrong algorithm"),
            (with("exp", 1.into()), "expired"),
        ] {
            let refused = auth.authenticate(&token).unwrap_err();
            assert!(
                refused.to_string().contains(reason),
                "{refused} for {reason}"
            );
        }
    }

    #[test]
    fn huge_time_claims_are_refused_or_accepted_never_a_panic() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut config = hs(secret);
        config.leeway = Duration::from_secs(60);
        let auth = Authenticator::new(&config).unwrap();
        let max = u64::MAX;
        for claims in [
            serde_json::json!({"sub": "alice", "exp": max}),
            serde_json::json!({"sub": "alice", "exp": max, "iat": max, "nbf": max}),
            serde_json::json!({"sub": "alice", "exp": max - 30}),
            serde_json::json!({"sub": "alice", "exp": 18446744073709551616.0_f64}),
            serde_json::json!({"sub": "alice", "exp": 1e300}),
            serde_json::json!({"sub": "alice", "exp": -1}),
        ] {
            assert!(
                auth.authenticate(&sign(secret, claims.clone())).is_err(),
                "{claims}"
            );
        }
        assert_eq!(
            auth.authenticate(&sign(secret, serde_json::json!({"sub": "a", "exp": max}))),
            Err(AuthError::Invalid("exp is out of range"))
        );
        // 2^53 seconds is far off but representable: a valid token.
        let far = 1u64 << 53;
        let token = sign(
            secret,
            serde_json::json!({"sub": "alice", "exp": far, "iat": far, "nbf": far}),
        );
        match auth.authenticate(&token) {
            Ok(Principal::Player { expires_at, .. }) => {
                assert!(expires_at > SystemTime::now());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn player_ids_follow_the_spec() {
        assert!(valid_player_id("alice@example.com"));
        assert!(valid_player_id("a:b.c-d_e"));
        assert!(!valid_player_id(""));
        assert!(!valid_player_id("stats"));
        assert!(!valid_player_id("../etc"));
        assert!(!valid_player_id("a b"));
        assert!(!valid_player_id(&"a".repeat(129)));
    }
}
