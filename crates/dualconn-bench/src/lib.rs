//! The dualconn load generator's parts, shared by the binaries and their tests.

pub mod check;
pub mod client;
pub mod http;
pub mod tls;

use serde::Serialize;

/// Mints an HS256 player token with `sub` and `exp`, as a game backend would.
pub fn mint(secret: &[u8], player: &str, ttl_secs: u64) -> anyhow::Result<String> {
    mint_with_id(secret, player, ttl_secs, None)
}

/// As [`mint`], with a `jti` claim when `id` is given: tokens with different ids differ, so a
/// server that keeps the tokens it verified must verify each afresh.
pub fn mint_with_id(
    secret: &[u8],
    player: &str,
    ttl_secs: u64,
    id: Option<u64>,
) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
        iat: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        jti: Option<String>,
    }
    let now = check::now_ns() / 1_000_000_000;
    let claims = Claims {
        sub: player,
        exp: now + ttl_secs,
        iat: now,
        jti: id.map(|id| format!("{id:x}")),
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )?)
}

/// A process's CPU time (user + system, all threads, dead ones included) and resident memory.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    pub cpu_us: u64,
    /// The user-space part of `cpu_us`. On loopback the kernel runs the peer's receive inside
    /// the sender's system calls, so the system part moves with the client's timing while
    /// this one is the server's own work.
    pub user_us: u64,
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces, start after the last ')'.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (user, system) = (field(11), field(12));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        cpu_us: (user + system) * 1_000_000 / hz,
        user_us: user * 1_000_000 / hz,
        rss_bytes: rss_kb * 1024,
    })
}

/// Pins the calling process (and the threads and children it starts later) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
