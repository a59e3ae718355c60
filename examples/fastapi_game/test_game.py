"""End to end: the real dualconn binary (DUALCONN_BIN) and this game, one player on a WebSocket
and an SSE stream with the game's own token, a second player in the room, and the lifecycle
the game sees. Run by scripts/example-game-test.sh."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import httpx
import pytest
import uvicorn
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from dualconn import AsyncDualconnClient
from game import Game, create_app

ADMIN_KEY = "example-game-admin-key-0123456789"
JWT_SECRET = "example-game-jwt-secret-0123456789abcdef"
WEBHOOK_SECRET = "example-game-webhook-secret"
GRACE_MS = 500
#: The page's origin during development (a Vite dev server), allowed to open streams.
DEV_ORIGIN = "http://localhost:5173"


class Running:
    def __init__(self, dualconn: str, game_url: str, game: Game) -> None:
        self.dualconn = dualconn
        self.game_url = game_url
        self.game = game

    def login(self, name: str) -> str:
        res = httpx.post(f"{self.game_url}/login", json={"name": name})
        res.raise_for_status()
        token: str = res.json()["token"]
        return token


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    game = Game()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    game_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(game, WEBHOOK_SECRET), log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    env = dict(os.environ)
    env.update({
        "DUALCONN_BIND": "127.0.0.1:0",
        "DUALCONN_JWT_SECRET": JWT_SECRET,
        "DUALCONN_ADMIN_KEYS": ADMIN_KEY,
        "DUALCONN_COMMAND_WEBHOOK": f"{game_url}/dualconn/commands",
        "DUALCONN_CONNECT_WEBHOOK": f"{game_url}/dualconn/connect",
        "DUALCONN_LIFECYCLE_WEBHOOK": f"{game_url}/dualconn/lifecycle",
        "DUALCONN_COMMAND_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DUALCONN_LIFECYCLE_GRACE": f"{GRACE_MS}ms",
        "DUALCONN_ALLOWED_ORIGINS": DEV_ORIGIN,
        "DUALCONN_LOG_FORMAT": "json",
    })
    proc = subprocess.Popen([os.environ["DUALCONN_BIN"], "serve"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    addr: Optional[str] = None
    for line in proc.stderr:
        fields = json.loads(line).get("fields", {}) if line.startswith("{") else {}
        if fields.get("message") == "listening":
            addr = fields["addr"]
            break
    assert addr, "dualconn did not start"
    stderr = proc.stderr
    threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
    game.dualconn = AsyncDualconnClient(f"http://{addr}", ADMIN_KEY)
    while not server.started:
        time.sleep(0.01)
    try:
        yield Running(f"http://{addr}", game_url, game)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        server.should_exit = True
        thread.join(timeout=10)


def bearer(token: str) -> list[Subprotocol]:
    """The WebSocket subprotocols that carry a token: a browser can set nothing else."""
    return [Subprotocol("bearer"), Subprotocol(token)]


def ws_events(ws: ClientConnection) -> Iterator[dict[str, Any]]:
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=10))
        if event["event_type"] != "heartbeat":
            yield event


class Sse:
    def __init__(self, response: httpx.Response) -> None:
        self.headers = response.headers
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        for line in self._lines:
            if line.startswith("data:"):
                event: dict[str, Any] = json.loads(line[5:])
                if event["event_type"] != "heartbeat":
                    return event
        raise AssertionError("the stream ended")

    def until(self, event_type: str) -> dict[str, Any]:
        while True:
            event = self.next()
            if event["event_type"] == event_type:
                return event


@contextmanager
def sse(url: str, origin: Optional[str] = None) -> Iterator[Sse]:
    headers = {"Origin": origin} if origin else {}
    with httpx.Client(timeout=10) as c, c.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        yield Sse(response)


def test_a_player_on_two_transports_plays_drops_one_resumes_and_leaves(running: Running) -> None:
    alice, bob = running.login("alice"), running.login("bob")
    with sse(f"{running.dualconn}/api/events?token={bob}") as bob_sse:
        assert bob_sse.next()["data"]["player_id"] == "bob"
        assert bob_sse.next()["event_type"] == "game_state"
        bob_sse.until("room_update")

        # alice's WebSocket, with the game's own token: connected, then the greeting once.
        ws_url = running.dualconn.replace("http", "ws") + "/api/ws"
        with connect(ws_url, origin=Origin(DEV_ORIGIN), subprotocols=bearer(alice)) as ws:
            events = ws_events(ws)
            assert next(events)["data"]["player_id"] == "alice"
            state, room = next(events), next(events)
            assert (state["event_type"], room["event_type"]) == ("game_state", "room_update")
            assert room["data"]["players"] == ["alice", "bob"]

            with sse(f"{running.dualconn}/api/events?token={alice}", DEV_ORIGIN) as alice_sse:
                assert alice_sse.headers["access-control-allow-origin"] == DEV_ORIGIN
                assert alice_sse.next()["event_type"] == "connected"
                # She talks over the WebSocket; the answer is on both transports, the chat
                # in bob's stream.
                ws.send(json.dumps({"type": "command", "data": {"command": "say hello"}}))
                answer = next(events)
                assert answer["data"] == {"text": "You say: hello"}
                assert alice_sse.next() == answer, "the same event, once per transport"
                assert bob_sse.until("room_message")["data"]["text"] == "alice says: hello"
                last_on_ws = answer["sequence_number"]

                # Her WebSocket drops; bob talks meanwhile (over HTTP, with his game token).
                ws.close()
                said = httpx.post(f"{running.dualconn}/api/commands",
                                  headers={"Authorization": f"Bearer {bob}"},
                                  json={"type": "chat", "data": {"text": "hi alice"}})
                assert said.status_code == 202, said.text
                missed = alice_sse.until("room_message")
                assert missed["data"]["text"] == "bob says: hi alice"

                # It resumes from the last event it had: what it missed is replayed, once.
                resume = f"{ws_url}?last_event_id={last_on_ws}"
                with connect(resume, subprotocols=bearer(alice)) as ws2:
                    events = ws_events(ws2)
                    assert next(events)["event_type"] == "connected"
                    recovery = next(events)
                    assert recovery["data"]["recovered"] is True
                    assert next(events) == missed
        # Both transports gone: after the grace the game marks her link-dead, and bob hears it.
        assert bob_sse.until("room_message")["data"]["text"] == "alice is link-dead."
    assert running.game.players["alice"].link_dead

    kinds = [(e.type, e.transport) for e in running.game.lifecycle if e.player_id == "alice"]
    assert kinds[:4] == [("player_online", "websocket"), ("session_started", None),
                         ("connection_opened", "websocket"), ("connection_opened", "sse")]
    counts = {k: sum(1 for t, _ in kinds if t == k) for k, _ in kinds}
    assert counts == {"player_online": 1, "session_started": 1, "connection_opened": 3,
                      "connection_closed": 3, "player_offline": 1}
    assert kinds[-1] == ("player_offline", None)
