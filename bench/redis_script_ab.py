#!/usr/bin/env python3
"""Redis CPU per player-event of the cluster scripts, A against B (see redis-script-ab.sh).

Each side is a version of crates/dualconn/src/backplane/redis/scripts.rs (`git:REV` or a file),
loaded into one private Redis under a key prefix of its own, with the same players joined the
way a cluster joins them (the side's own JOIN and HEARTBEAT). Rounds alternate A B, B A, …;
each round runs the side's broadcasts (or targeted publishes) and reads back the CPU time of
Redis's main thread (INFO cpu), the scripts' own timing (cmdstat_evalsha) and that of the
commands they called (INFO commandstats, reset before each round).
A side whose scripts have BROADCAST runs it; one with BROADCAST_TARGETS runs it and then the
players in chunks through PUBLISH, a window of calls in flight, as RedisBackplane::broadcast
does. A subscriber on one node's channel notes when that node would hear the events.
"""

import argparse
import re
import socket
import statistics
import subprocess
import threading
import time


class Redis:
    """A minimal RESP client with pipelining: enough for EVALSHA, INFO and CONFIG."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self._reply() for _ in commands]

    def call(self, *args):
        return self.pipeline([args])[0]


class Listener(threading.Thread):
    """Subscribes to one node's channel on each side and notes when each message arrives: how
    long a node waits for its first events, and for its last, after a broadcast is sent."""

    def __init__(self, port, channels):
        super().__init__(daemon=True)
        self.r = Redis(port)
        self.r.pipeline([["SUBSCRIBE", c] for c in channels])
        self.arrivals, self.lock = [], threading.Lock()

    def run(self):
        while True:
            msg = self.r._reply()
            at = time.perf_counter()
            if msg and msg[0] == "message":
                with self.lock:
                    self.arrivals.append((msg[1], at))

    def between(self, channel, start, end):
        with self.lock:
            return [at - start for c, at in self.arrivals if c == channel and start <= at < end]


def extract(source):
    """Every script of a scripts.rs as Redis runs it: the `lua!` prelude, then the body."""
    if source.startswith("git:"):
        text = subprocess.run(
            ["git", "show", source[4:] + ":crates/dualconn/src/backplane/redis/scripts.rs"],
            check=True, capture_output=True, text=True).stdout
    else:
        with open(source) as f:
            text = f.read()
    prelude = re.search(r'concat!\(\s*r#"(.*?)"#,\s*\$body', text, re.S).group(1)
    bodies = re.findall(r'pub const (\w+): &str = lua!\(\s*r#"(.*?)"#\s*\);', text, re.S)
    return {name: prelude + body for name, body in bodies}


NODE_TTL = "86400000"  # nodes never expire while the measurement runs
HISTORY_TTL = "300000"
SESSION_TTL = "86400000"


class Side:
    def __init__(self, name, source, r, args):
        self.name, self.r, self.args = name, r, args
        self.prefix = "ab" + name
        self.sha = {k: r.call("SCRIPT", "LOAD", v) for k, v in extract(source).items()}
        if "BROADCAST_TARGETS" in self.sha:
            self.kind = "chunked"
        elif "BROADCAST" in self.sha:
            self.kind = "one script"
        else:
            raise SystemExit(source + ": neither BROADCAST nor BROADCAST_TARGETS")
        self.nodes = ["n%d" % i for i in range(args.nodes)]
        self.players = ["p%d" % i for i in range(args.players)]
        self.next_target = 0

    def evalsha(self, script, *argv):
        return ["EVALSHA", self.sha[script], 0, self.prefix, *argv]

    def load(self, head, tail):
        a = self.args
        self.r.pipeline([self.evalsha("HEARTBEAT", n, "{}", NODE_TTL, SESSION_TTL, "")
                         for n in self.nodes])
        joins = []
        for i, p in enumerate(self.players):
            for t, kind in enumerate("ws"):
                node = self.nodes[(i * 2 + t) % a.nodes]
                joins.append(self.evalsha("JOIN", p, "", "s%d" % i, node,
                                          "%s|c%d%s|%s" % (node, i, kind, kind), 4, "0", "",
                                          NODE_TTL, a.history, "0", "0"))
        self.r.pipeline(joins)
        if a.full:
            # Every player's history already holds history_size events: each XADD trims.
            fill = """
local hk = P .. ':h:' .. ARGV[2]
for k = 1, tonumber(ARGV[3]) do
  local seq = redis.call('HINCRBY', P .. ':p:' .. ARGV[2], 'seq', 1)
  redis.call('XADD', hk, 'MAXLEN', ARGV[3], string.format('%d', seq) .. '-0', 't', '1', 'j', ARGV[4])
end
return 1"""
            fill = "local P = ARGV[1]\n" + fill
            sample = head + "1" + ',"player_id":"p0"' + tail
            self.r.pipeline([["EVAL", fill, 0, self.prefix, p, a.history, sample]
                             for p in self.players])

    def broadcast(self, head, tail):
        """Returns when the first numbering call was sent: the listing's answer takes this
        client far longer to parse than it takes a node."""
        a = self.args
        if self.kind == "one script":
            numbering = time.perf_counter()
            self.r.call(*self.evalsha("BROADCAST", head, tail, a.history, HISTORY_TTL, NODE_TTL))
            return numbering
        targets = self.r.call(*self.evalsha("BROADCAST_TARGETS", NODE_TTL))
        chunks = [targets[i:i + a.chunk] for i in range(0, len(targets), a.chunk)]
        calls = [Redis.encode(self.evalsha("PUBLISH", head, tail, a.history, HISTORY_TTL,
                                           SESSION_TTL, *c)) for c in chunks]
        # As the node does: `window` calls in flight, the next sent as each answer comes.
        numbering = time.perf_counter()
        for call in calls[:a.window]:
            self.r.sock.sendall(call)
        for call in calls[a.window:] + [None] * min(a.window, len(calls)):
            self.r._reply()
            if call:
                self.r.sock.sendall(call)
        return numbering

    def publish(self, head, tail):
        a = self.args
        batch = []
        for _ in range(a.batch):
            batch.append(self.players[self.next_target])
            self.next_target = (self.next_target + 1) % len(self.players)
        self.r.call(*self.evalsha("PUBLISH", head, tail, a.history, HISTORY_TTL, SESSION_TTL,
                                  *batch))


def cpu_seconds(r):
    """CPU time of Redis's main thread: unlike the commands' own timings, it does not grow when
    another process takes the core away in the middle of a script."""
    fields = dict(line.split(":", 1) for line in r.call("INFO", "cpu").split("\r\n")
                  if ":" in line)
    return float(fields["used_cpu_user_main_thread"]) + float(fields["used_cpu_sys_main_thread"])


def commandstats(r):
    stats = {}
    for line in r.call("INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", line)
        if m:
            stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=16499)
    ap.add_argument("--a", default="git:main")
    ap.add_argument("--b", default="crates/dualconn/src/backplane/redis/scripts.rs")
    ap.add_argument("--players", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--history", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="start with every history full")
    ap.add_argument("--mode", choices=["broadcast", "publish"], default="broadcast")
    ap.add_argument("--batch", type=int, default=10, help="players per targeted publish")
    ap.add_argument("--chunk", type=int, default=256, help="players per PUBLISH (chunked)")
    ap.add_argument("--window", type=int, default=2, help="PUBLISH calls in flight (chunked)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=4, help="broadcasts per side and round")
    a = ap.parse_args()
    if a.mode == "publish":
        a.per_round *= 250

    r = Redis(a.port)
    r.call("FLUSHALL")
    head = '{"event_type":"bench","timestamp":"2026-12-01T12:00:00.000000Z","sequence_number":'
    tail = ',"data":{"t":1764590400000000000,"k":7,"pad":"%s"}}' % ("x" * 48)
    sides = [Side("A", a.a, r, a), Side("B", a.b, r, a)]
    for s in sides:
        s.load(head, tail)
    events_per_round = a.per_round * (a.players if a.mode == "broadcast" else a.batch)
    print("A: %s (%s)\nB: %s (%s)" % (a.a, sides[0].kind, a.b, sides[1].kind))
    print("%d players on %d nodes, history %d%s, %s; %d player-events per side and round"
          % (a.players, a.nodes, a.history, " (full)" if a.full else "", a.mode,
             events_per_round))
    per_event = {"A": [], "B": []}
    scripts = {"A": [], "B": []}
    first, last = {"A": [], "B": []}, {"A": [], "B": []}
    listener = Listener(a.port, [s.prefix + ":ch:n0" for s in sides])
    listener.start()
    inner = {"A": {}, "B": {}}
    for rnd in range(a.rounds):
        order = sides if rnd % 2 == 0 else sides[::-1]
        for s in order:
            r.call("CONFIG", "RESETSTAT")
            cpu = cpu_seconds(r)
            wall, sent = 0.0, []
            for _ in range(a.per_round):
                started = time.perf_counter()
                numbering = (s.broadcast if a.mode == "broadcast" else s.publish)(head, tail)
                wall += time.perf_counter() - started
                sent.append(numbering or started)
                if a.mode == "broadcast":
                    time.sleep(0.01)  # the listener's last arrivals land before the next send
            wall = wall / a.per_round * 1000
            cpu = (cpu_seconds(r) - cpu) * 1e6 / events_per_round
            for start, end in zip(sent, sent[1:] + [time.perf_counter()]) if a.mode == "broadcast" else ():
                got = listener.between(s.prefix + ":ch:n0", start, end)
                if got:
                    first[s.name].append(min(got) * 1000)
                    last[s.name].append(max(got) * 1000)
            stats = commandstats(r)
            _, usec = stats.get("evalsha", (0, 0))
            per_event[s.name].append(cpu)
            scripts[s.name].append(usec / events_per_round)
            for cmd, (calls, us) in stats.items():
                if cmd not in ("evalsha", "config", "info"):
                    inner[s.name].setdefault(cmd, []).append((calls / events_per_round,
                                                              us / events_per_round))
            print("round %d %s: %.2f us CPU per player-event (scripts %.2f), %.1f ms wall per %s"
                  % (rnd + 1, s.name, cpu, usec / events_per_round, wall, a.mode))
    # Each round's B against its A, run next to each other (CPU time): steadier than the two
    # medians when something else on the machine comes and goes.
    ratios = [b / a for a, b in zip(per_event["A"], per_event["B"])]
    print("\nB/A per round: %s; median %.3f" % (" ".join("%.2f" % x for x in ratios),
                                              statistics.median(ratios)))
    for s in sides:
        print("%s median: %.2f us of Redis CPU per player-event (main thread; least %.2f); "
              "scripts' own timing %.2f us (EVALSHA total)"
              % (s.name, statistics.median(per_event[s.name]), min(per_event[s.name]),
                 statistics.median(scripts[s.name])))
        if first[s.name]:
            print("   node n0 hears the first events %.1f ms after the first numbering call was "
                  "sent, the last %.1f ms (medians)" % (statistics.median(first[s.name]),
                                 statistics.median(last[s.name])))
        for cmd, runs in sorted(inner[s.name].items()):
            calls = statistics.median(c for c, _ in runs)
            us = statistics.median(u for _, u in runs)
            print("   %-10s %5.2f calls %6.2f us per player-event" % (cmd, calls, us))


if __name__ == "__main__":
    main()
