"""The lifecycle webhook through the SDK's router, driven by the real binary."""

from __future__ import annotations

import json
import time

import httpx

from conftest import GRACE_MS, HOOK_SECRET, SECRET, Dualconn, sse
from dualconn import LifecycleEvent, mint_player_token, sign


def test_notices_arrive_typed_and_the_answer_greets_the_player_after_connected(
    dualconn: Dualconn,
) -> None:
    token = mint_player_token(SECRET, "keeper", player_claim="player_id")
    with sse(f"{dualconn.url}/sse/keeper?token={token}") as stream:
        connected = stream.next_event()
        assert connected["event_type"] == "connected"
        state = stream.next_event()
        assert state["event_type"] == "game_state"
        assert state["data"] == {"hp": 10, "room": "hall"}
        assert isinstance(state["sequence_number"], int), "a stream event, kept in history"
        online = dualconn.backend.wait_for_lifecycle("player_online", "keeper")
        assert isinstance(online, LifecycleEvent)
        assert online.transport == "sse"
        assert online.connection_id == connected["data"]["connection_id"]
        assert online.session_id == connected["data"]["session_id"]
        assert online.timestamp.endswith("Z")
    closed_at = time.monotonic()
    closed = dualconn.backend.wait_for_lifecycle("connection_closed", "keeper")
    assert closed.reason == "client_closed"
    dualconn.backend.wait_for_lifecycle("player_offline", "keeper")
    assert time.monotonic() - closed_at >= GRACE_MS / 1000, "offline before the grace ended"


def test_a_retried_notice_is_handled_once_and_unsigned_ones_are_refused(
    dualconn: Dualconn,
) -> None:
    body = json.dumps(
        {"id": "retried-notice-1", "type": "player_online", "timestamp": "2025-01-06T19:55:00Z",
         "player_id": "keeper", "session_id": "s1", "connection_id": "ws_1",
         "transport": "websocket"}
    ).encode()
    url = f"{dualconn.game_url}/dualconn/lifecycle"
    headers = {"X-Dualconn-Signature": sign(HOOK_SECRET, body)}
    with httpx.Client() as c:
        first = c.post(url, content=body, headers=headers)
        again = c.post(url, content=body, headers=headers)
        assert c.post(url, content=body).status_code == 400
        forged = c.post(url, content=body, headers={"X-Dualconn-Signature": sign("x", body)})
        assert forged.status_code == 400
        odd = json.dumps({"id": "n", "type": "player_teleported", "timestamp": "t",
                          "player_id": "p"}).encode()
        refused = c.post(url, content=odd, headers={"X-Dualconn-Signature": sign(HOOK_SECRET, odd)})
        assert refused.status_code == 400
    assert first.status_code == 200 and again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["events"][0]["event_type"] == "game_state"
    calls = [e for e in dualconn.backend.lifecycle if e.id == "retried-notice-1"]
    assert len(calls) == 1, "the callback ran once for one id"
