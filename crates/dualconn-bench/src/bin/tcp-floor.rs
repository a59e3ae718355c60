//! `tcp-floor`: the physical floor of fan-out on this machine. It accepts raw TCP connections
//! on `--port` and, for each line its control port (`--port + 1`, loopback) receives, writes one
//! fixed 200-byte message (the line's send time, a round number, filler) to every socket with
//! one `write` each: no framing, no JSON, no queues. It answers each line with the round
//! number once every socket has been written. Whatever dualconn costs per delivery above this
//! is its own overhead.
//!
//! `--order` changes the order the sockets are written in, to measure what the kernel pays
//! for it (BENCHMARKS.md): `accepted` (the default), `scattered` (neighbours in accept order
//! far apart, as a walk by hash visits them), `sharded` (64 shards by hash, each walked in
//! accept order, as dualconn's broadcast does).
//!
//! `--io-uring` hands a round's sends to the kernel through an io_uring instead, up to
//! `RING` of them per system call, in accept order: what batching the submissions would save
//! against one `send` per socket, which is the question "half of Node" leaves (BENCHMARKS.md).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use io_uring::{IoUring, opcode, types};

const MSG: usize = 200;
/// Submission queue entries: the sends one system call hands over at most.
const RING: u32 = 4096;

fn main() -> std::io::Result<()> {
    let mut port = 8100u16;
    // `None`: the order the sockets were accepted in.
    let mut order: Option<Order> = None;
    let mut ring: Option<IoUring> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--order" => {
                order = match args.next().as_deref() {
                    Some("scattered") => Some(Order::Scattered),
                    Some("sharded") => Some(Order::Sharded),
                    _ => None,
                }
            }
            "--io-uring" => ring = Some(IoUring::new(RING)?),
            "--cpu" => {
                if let Some(cpu) = args.next().and_then(|c| c.parse().ok()) {
                    dualconn_bench::pin_to_cpu(cpu).map_err(std::io::Error::other)?;
                }
            }
            _ => {
                eprintln!(
                    "usage: tcp-floor [--port 8100] [--cpu N] [--order accepted|scattered|sharded] [--io-uring]"
                );
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
    let mut visits: Vec<usize> = Vec::new();
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
            if let Some(ring) = &mut ring {
                write_through_ring(ring, &mut socks, &msg)?;
            } else if let Some(order) = order {
                if visits.len() != socks.len() {
                    visits = visiting_order(socks.len(), order);
                }
                write_in_order(&mut socks, &visits, &msg);
            } else {
                socks.retain_mut(|s| s.write_all(&msg).is_ok());
            }
            drop(socks);
            if reply.write_all(format!("{round}\n").as_bytes()).is_err() {
                break;
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Scattered,
    Sharded,
}

/// Each index below `n` once, in the order `order` visits them.
fn visiting_order(n: usize, order: Order) -> Vec<usize> {
    match order {
        // A stride near the golden ratio of `n`, coprime to it so each index comes once.
        Order::Scattered => {
            let mut stride = (n * 618 / 1000).max(1);
            while gcd(stride, n) != 1 {
                stride += 1;
            }
            (0..n).map(|k| k * stride % n).collect()
        }
        Order::Sharded => {
            let shard = |i: usize| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
            let mut visits: Vec<usize> = (0..n).collect();
            visits.sort_by_key(|&i| (shard(i), i));
            visits
        }
    }
}

/// Writes every socket once, in `visits`' order, and drops those that failed.
fn write_in_order(socks: &mut Vec<TcpStream>, visits: &[usize], msg: &[u8]) {
    let mut failed = vec![false; socks.len()];
    for &i in visits {
        failed[i] = socks[i].write_all(msg).is_err();
    }
    drop_failed(socks, &failed);
}

/// Writes every socket once, in accept order, through `ring`, and drops those that failed or
/// took only part of the message (the floor keeps no queue to finish it from).
fn write_through_ring(
    ring: &mut IoUring,
    socks: &mut Vec<TcpStream>,
    msg: &[u8; MSG],
) -> std::io::Result<()> {
    let mut failed = vec![false; socks.len()];
    let (mut next, mut in_flight) = (0, 0usize);
    while next < socks.len() || in_flight > 0 {
        let mut queue = ring.submission();
        while next < socks.len() && !queue.is_full() {
            let send =
                opcode::Send::new(types::Fd(socks[next].as_raw_fd()), msg.as_ptr(), MSG as u32)
                    .build()
                    .user_data(next as u64);
            // SAFETY: the kernel reads `msg` until the send completes; it lives in `main` for
            // the whole program, and this function waits for every completion anyway.
            if unsafe { queue.push(&send) }.is_err() {
                break;
            }
            next += 1;
            in_flight += 1;
        }
        drop(queue);
        ring.submit_and_wait(1)?;
        for done in ring.completion() {
            in_flight -= 1;
            if usize::try_from(done.result()).ok() != Some(MSG) {
                failed[done.user_data() as usize] = true;
            }
        }
    }
    drop_failed(socks, &failed);
    Ok(())
}

/// Keeps the sockets whose `failed` entry is false.
fn drop_failed(socks: &mut Vec<TcpStream>, failed: &[bool]) {
    let mut failed = failed.iter();
    socks.retain(|_| failed.next() == Some(&false));
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
