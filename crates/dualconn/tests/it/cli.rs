//! The `dualconn` command as a user meets it: errors printed once and naming the setting the way
//! the user gave it, help that matches the README, and logs without colour codes in a pipe.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const SECRET: &str = "cli-test-secret-0123456789abcdef-0123";

/// The real binary with a clean environment, so no `DUALCONN_*` of the caller leaks in.
fn dualconn(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualconn"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file for one test, removed with its directory when the test is done.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn scratch(name: &str, contents: &str) -> Scratch {
    // A directory per file: two tests never remove one the other still uses.
    let dir = std::env::temp_dir().join(format!("dualconn-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    Scratch(path)
}

/// Fails for a value the user set to 0 and returns the one error line.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = dualconn(args, env);
    assert!(!out.status.success(), "{args:?} {env:?} was accepted");
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "one line, once: {text}");
    text
}

#[test]
fn a_bad_value_is_named_as_the_user_gave_it() {
    let flag = refused(&["serve", "--heartbeat-secs", "0"], &[]);
    assert_eq!(
        flag.trim(),
        "error: --heartbeat-secs must be greater than 0"
    );

    let env = refused(&["serve"], &[("DUALCONN_HEARTBEAT_SECS", "0")]);
    assert_eq!(
        env.trim(),
        "error: DUALCONN_HEARTBEAT_SECS must be greater than 0"
    );

    let file = scratch("zero.toml", "heartbeat_secs = 0\n");
    let path = file.to_str().unwrap();
    let key = refused(&["serve", "--config", path], &[]);
    assert_eq!(
        key.trim(),
        format!("error: `heartbeat_secs` in {path} must be greater than 0")
    );
    // The same file named by DUALCONN_CONFIG, and a flag that beats it.
    let by_env = refused(&["serve"], &[("DUALCONN_CONFIG", path)]);
    assert!(by_env.contains("`heartbeat_secs` in"), "{by_env}");
    let short = refused(&["serve", "--jwt-secret", "short"], &[]);
    assert_eq!(
        short.trim(),
        "error: --jwt-secret must be at least 32 bytes"
    );
}

#[test]
fn a_toml_error_is_printed_once() {
    let file = scratch("typo.toml", "histroy_size = 1\n");
    let out = dualconn(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    // TOML's own message spans lines (it quotes the file); it must appear once.
    let text = stderr(&out);
    assert!(text.starts_with("error: invalid config file"), "{text}");
    assert_eq!(text.matches("error:").count(), 1, "{text}");
    assert_eq!(text.matches("TOML parse error").count(), 1, "{text}");
    assert_eq!(
        text.matches("unknown field `histroy_size`").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("Caused by"), "{text}");
}

#[test]
fn token_help_lists_only_what_token_uses() {
    let out = dualconn(&["token", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let flags: BTreeSet<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.']))
        .collect();
    let expected: BTreeSet<&str> = [
        "--ttl-secs",
        "--admin",
        "--config",
        "--jwt-secret",
        "--jwt-audience",
        "--jwt-issuer",
        "--help",
    ]
    .into();
    assert_eq!(flags, expected, "{help}");
}

#[test]
fn token_mints_with_the_secret_and_explains_dev_mode() {
    let out = dualconn(
        &["token", "alice", "--ttl-secs", "60", "--admin"],
        &[("DUALCONN_JWT_SECRET", SECRET)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");

    let without = refused(&["token", "alice"], &[]);
    assert!(without.contains("DUALCONN_JWT_SECRET"), "{without}");
    assert!(without.contains("/auth/dev-token"), "{without}");
}

fn env_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("DUALCONN_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // `DUALCONN_*` stands for them all, not for one variable.
        if name.len() > "DUALCONN_".len() {
            names.insert(name.trim_end_matches('_').to_owned());
        }
    }
    names
}

fn readme() -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .unwrap()
}

#[test]
fn the_readme_and_serve_help_list_the_same_variables() {
    let out = dualconn(&["serve", "--help"], &[]);
    assert!(out.status.success());
    let help = env_names(&String::from_utf8_lossy(&out.stdout));
    // The whole README, so a setting documented in its own section (cluster mode, say) counts.
    let readme = env_names(&readme());
    for must in ["DUALCONN_CONFIG", "DUALCONN_LOG", "DUALCONN_LOG_FORMAT"] {
        assert!(help.contains(must), "--help lacks {must}");
    }
    assert!(help.len() > 30, "{help:?}");
    assert_eq!(
        readme, help,
        "README.md and `dualconn serve --help` name different variables"
    );
}

#[test]
fn logs_in_a_pipe_have_no_colour_codes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualconn"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_clear()
        .env("DUALCONN_JWT_SECRET", SECRET)
        .env("DUALCONN_ADMIN_KEYS", "cli-test-admin-key-0123456789")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every line up to "listening"; if the server died first, the pipe ends and this fails.
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("listening");
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.last().is_some_and(|l| l.contains("listening")),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a pipe: {seen:?}"
    );
}
