//! What one player token's check costs on its own: `Authenticator::authenticate` on HS256
//! tokens shaped like the ones `dualconn token` mints, with the player in `sub` and, as SPEC
//! §12.28 allows, in a claim of the operator's naming. Every WebSocket and SSE set-up pays one
//! of two costs, so they are part of the set-up row of BENCHMARKS.md: `first`, a token this
//! process has not seen (the signature and claims are checked), or `again`, one it has
//! verified before.
//!
//! `cargo bench -p dualconn --bench token_check` prints one line per run and the medians.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dualconn::auth::Authenticator;
use dualconn::config::{AdminKeys, AuthConfig, KeySource};

/// Distinct tokens per run: under the number of verified tokens a server keeps.
const TOKENS: usize = 4_000;
const RUNS: usize = 7;

fn authenticator(player_claim: &str) -> Authenticator {
    Authenticator::new(&AuthConfig {
        keys: KeySource::Secret(b"a shared secret of thirty-two by".to_vec()),
        audience: None,
        issuer: None,
        leeway: Duration::from_secs(30),
        player_claim: player_claim.into(),
        admin_keys: AdminKeys(vec!["an admin key of some length".into()]),
        dev_token_ttl: Duration::from_secs(3600),
    })
    .expect("a valid auth config")
}

/// Nanoseconds per check, checking each token once.
fn check_all(auth: &Authenticator, tokens: &[String]) -> f64 {
    let start = Instant::now();
    for token in tokens {
        black_box(
            auth.authenticate(black_box(token))
                .expect("the token verifies"),
        );
    }
    start.elapsed().as_nanos() as f64 / tokens.len() as f64
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    for claim in ["sub", "player_id"] {
        let tokens: Vec<String> = (0..TOKENS)
            .map(|i| {
                authenticator(claim)
                    .mint(&format!("player-{i:06}"), Duration::from_secs(3600), false)
                    .expect("a shared secret mints")
            })
            .collect();
        let (mut first, mut again) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            // A new authenticator has seen none of them.
            let auth = authenticator(claim);
            first.push(check_all(&auth, &tokens));
            again.push(check_all(&auth, &tokens));
            println!(
                "token_check claim={claim} first_ns={:.0} again_ns={:.0}",
                first[first.len() - 1],
                again[again.len() - 1]
            );
        }
        println!(
            "token_check claim={claim} median_first_ns={:.0} median_again_ns={:.0}",
            median(first),
            median(again)
        );
    }
}
