//! `tcp-floor`: the physical floor of fan-out on this machine. It accepts raw TCP connections
//! on `--port` and, for each line its control port (`--port + 1`, loopback) receives, writes one
//! fixed 200-byte message (the line's send time, a round number, filler) to every socket with
//! one `write` each: no framing, no JSON, no queues. It answers each line with the round
//! number once every socket has been written. Whatever dualconn costs per delivery above this
//! is its own overhead.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const MSG: usize = 200;

fn main() -> std::io::Result<()> {
    let mut port = 8100u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--cpu" => {
                if let Some(cpu) = args.next().and_then(|c| c.parse().ok()) {
                    dualconn_bench::pin_to_cpu(cpu).map_err(std::io::Error::other)?;
                }
            }
            _ => {
                eprintln!("usage: tcp-floor [--port 8100] [--cpu N]");
                std::process::exit(2);
            }
        }
    }
    let clients = TcpListener::bind(("0.0.0.0", port))?;
    let control = TcpListener::bind(("127.0.0.1", port + 1))?;
    eprintln!(
        "tcp-floor: clients on 0.0.0.0:{port}, control on 127.0.0.1:{}",
        port + 1
    );
    let socks: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepted = socks.clone();
    std::thread::spawn(move || {
        for s in clients.incoming().flatten() {
            let _ = s.set_nodelay(true);
            accepted.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
    });
    let mut round = 0u64;
    let mut msg = [b'x'; MSG];
    for ctl in control.incoming() {
        let ctl = ctl?;
        ctl.set_nodelay(true)?;
        let mut reply = ctl.try_clone()?;
        for line in BufReader::new(ctl).lines() {
            let Ok(line) = line else { break };
            let sent: u64 = line.trim().parse().unwrap_or(0);
            round += 1;
            msg[0..8].copy_from_slice(&sent.to_le_bytes());
            msg[8..16].copy_from_slice(&round.to_le_bytes());
            let mut socks = socks.lock().unwrap_or_else(|e| e.into_inner());
            socks.retain_mut(|s| s.write_all(&msg).is_ok());
            drop(socks);
            if reply.write_all(format!("{round}\n").as_bytes()).is_err() {
                break;
            }
        }
    }
    Ok(())
}
