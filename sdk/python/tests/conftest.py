"""Runs the real dualconn binary (DUALCONN_BIN, set by scripts/python-sdk-test.sh) for the tests,
with its webhooks pointed at a FastAPI app built from the SDK's router, served by uvicorn."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from dualconn import (
    CommandRequest,
    LifecycleEvent,
    LifecycleReply,
    ConnectGrant,
    ConnectRefused,
    ConnectRequest,
    GreetingEvent,
    OutboundEvent,
)
from dualconn.fastapi import webhook_router

SECRET = "python-sdk-test-secret-0123456789abcdef"
ADMIN_KEY = "python-sdk-admin-key-0123456789"
HOOK_SECRET = "python-sdk-hook-secret"
#: Short, so a test sees player_offline quickly.
GRACE_MS = 300
#: The game's own tokens: opaque strings dualconn cannot verify, mapped by the connect webhook.
GAME_TOKENS = {"game-token-hero": "hero", "game-token-mage": "mage"}


@dataclass
class Backend:
    """What the game backend saw, for assertions."""

    commands: list[CommandRequest] = field(default_factory=list)
    connects: list[ConnectRequest] = field(default_factory=list)
    #: Each call of the lifecycle callback (the router calls it once per notice id).
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    #: Notified on every lifecycle call, so tests wait for arrivals instead of sleeping.
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_lifecycle(
        self, kind: str, player_id: str, timeout: float = 10.0
    ) -> LifecycleEvent:
        """The first lifecycle notice of this kind for this player, once it has arrived."""

        def found() -> Optional[LifecycleEvent]:
            return next(
                (e for e in self.lifecycle if e.type == kind and e.player_id == player_id), None
            )

        with self.arrived:
            assert self.arrived.wait_for(lambda: found() is not None, timeout), (
                f"no {kind} for {player_id}: {self.lifecycle}"
            )
        event = found()
        assert event is not None
        return event


def build_game(backend: Backend) -> FastAPI:
    def on_command(req: CommandRequest) -> list[OutboundEvent]:
        backend.commands.append(req)
        return [
            OutboundEvent(
                player_ids=[req.player_id],
                event_type="command_response",
                data={"echo": req.command, "args": req.args},
                room_id="hall",
            )
        ]

    async def on_connect(req: ConnectRequest) -> ConnectGrant:
        backend.connects.append(req)
        player = GAME_TOKENS.get(req.token or "")
        if player is None:
            raise ConnectRefused(401, "unknown game token")
        if player == "mage" and req.transport != "http":
            raise ConnectRefused(403, "mages are banned")
        return ConnectGrant(
            player_id=player,
            expires_at=int(time.time()) + 3600,
            events=[
                GreetingEvent("welcome", {"text": f"hello {player}"}),
                GreetingEvent("room_update", {"room": "hall"}, room_id="hall"),
            ],
        )

    async def on_lifecycle(event: LifecycleEvent) -> LifecycleReply:
        with backend.arrived:
            backend.lifecycle.append(event)
            backend.arrived.notify_all()
        # Only `keeper` is greeted, so the other tests' streams see no extra events.
        if event.type == "player_online" and event.player_id == "keeper":
            return LifecycleReply(events=[GreetingEvent("game_state", {"hp": 10, "room": "hall"})])
        return LifecycleReply()

    app = FastAPI()
    app.include_router(
        webhook_router(
            secret=HOOK_SECRET,
            on_command=on_command,
            on_connect=on_connect,
            on_lifecycle=on_lifecycle,
        ),
        prefix="/dualconn",
    )
    return app


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Dualconn:
    url: str
    game_url: str
    backend: Backend
    log: list[str]

    def log_text(self) -> str:
        return "\n".join(self.log)


@pytest.fixture(scope="session")
def dualconn() -> Iterator[Dualconn]:
    backend = Backend()
    sock = free_socket()
    game_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(build_game(backend), log_level="warning", lifespan="off")
    )
    game = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    game.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    game_url = f"http://127.0.0.1:{game_port}"

    binary = os.environ.get("DUALCONN_BIN", "../../target/debug/dualconn")
    env = dict(os.environ)
    env.update(
        {
            "DUALCONN_BIND": "127.0.0.1:0",
            "DUALCONN_JWT_SECRET": SECRET,
            "DUALCONN_ADMIN_KEYS": ADMIN_KEY,
            "DUALCONN_JWT_PLAYER_CLAIM": "player_id",
            "DUALCONN_COMMAND_WEBHOOK": f"{game_url}/dualconn/commands",
            "DUALCONN_COMMAND_WEBHOOK_SECRET": HOOK_SECRET,
            "DUALCONN_CONNECT_WEBHOOK": f"{game_url}/dualconn/connect",
            "DUALCONN_LIFECYCLE_WEBHOOK": f"{game_url}/dualconn/lifecycle",
            "DUALCONN_LIFECYCLE_GRACE": f"{GRACE_MS}ms",
            "DUALCONN_LOG_FORMAT": "json",
            "DUALCONN_LOG": "info",
        }
    )
    proc = subprocess.Popen(
        [binary, "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    log: list[str] = []
    addr: Optional[str] = None
    for line in proc.stderr:
        log.append(line.rstrip("\n"))
        try:
            entry: Any = json.loads(line)
        except ValueError:
            continue
        if entry.get("fields", {}).get("message") == "listening":
            addr = entry["fields"]["addr"]
            break
    assert addr, "dualconn printed no listening line:\n" + "\n".join(log)
    stderr = proc.stderr

    def drain() -> None:
        for line in stderr:
            log.append(line.rstrip("\n"))

    threading.Thread(target=drain, daemon=True).start()
    try:
        yield Dualconn(url=f"http://{addr}", game_url=game_url, backend=backend, log=log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        server.should_exit = True
        game.join(timeout=10)


class SseStream:
    """Reads one SSE stream's events as JSON, skipping heartbeats."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next_event(self) -> dict[str, Any]:
        for line in self._lines:
            if line.startswith("data:"):
                event: dict[str, Any] = json.loads(line[5:].strip())
                if event.get("event_type") != "heartbeat":
                    return event
        raise AssertionError("the stream ended")


@contextmanager
def sse(url: str) -> Iterator[SseStream]:
    """An open SSE stream; fails the test when the server refuses it."""
    with httpx.Client(timeout=10.0) as client, client.stream("GET", url) as response:
        if response.status_code != 200:
            raise AssertionError(f"SSE refused: {response.status_code} {response.read()!r}")
        yield SseStream(response)
