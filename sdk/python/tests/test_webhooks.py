"""Webhook signatures, and the FastAPI router driven by the real binary's webhooks."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import HOOK_SECRET, Dualconn, sse
from dualconn import (
    CommandRequest,
    ConnectRequest,
    InvalidSignature,
    WebhookVerifier,
    sign,
    verify_signature,
)


def test_signatures_match_hmac_sha256_and_refuse_any_change() -> None:
    # RFC 4231, test case 2: the same vector the server's own test uses.
    body = b"what do ya want for nothing?"
    assert sign("Jefe", body) == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    header = sign(b"Jefe", body)
    assert verify_signature("Jefe", body, header)
    assert not verify_signature("Jefe", body + b" ", header)
    assert not verify_signature("jefe", body, header)
    assert not verify_signature("Jefe", body, None)
    assert not verify_signature("Jefe", body, header.replace("sha256=", ""))
    verifier = WebhookVerifier("Jefe")
    verifier.verify(body, header)
    with pytest.raises(InvalidSignature):
        verifier.verify(body, sign("other", body))


def test_connect_requests_never_show_credentials_in_repr() -> None:
    req = ConnectRequest.parse(
        {"token": "s3cret", "cookie": "sid=s3cret", "transport": "sse", "player_id": None,
         "remote_addr": "127.0.0.1"}
    )
    assert "s3cret" not in repr(req)
    with pytest.raises(ValueError):
        ConnectRequest.parse({"token": "t", "transport": "carrier-pigeon", "remote_addr": "x"})
    with pytest.raises(ValueError):
        CommandRequest.parse({"player_id": "p", "command": "look", "args": [1]})


def test_the_connect_webhook_maps_a_game_token_and_greets_after_connected(
    dualconn: Dualconn,
) -> None:
    with sse(f"{dualconn.url}/api/events?token=game-token-hero") as stream:
        connected = stream.next_event()
        assert connected["event_type"] == "connected"
        assert connected["data"]["player_id"] == "hero"
        welcome = stream.next_event()
        assert welcome["event_type"] == "welcome"
        assert welcome["data"] == {"text": "hello hero"}
        room = stream.next_event()
        assert room["event_type"] == "room_update"
        assert room["room_id"] == "hall"
        # Numbered like any publish, in order.
        assert room["sequence_number"] == welcome["sequence_number"] + 1

        seen = dualconn.backend.connects[-1]
        assert seen.token == "game-token-hero"
        assert seen.transport == "sse"

        # The same game token works for REST calls: a command over HTTP goes to the command
        # webhook as player `hero`, and its answer comes back on the stream.
        with httpx.Client() as c:
            res = c.post(
                f"{dualconn.url}/api/commands",
                headers={"Authorization": "Bearer game-token-hero"},
                json={"type": "game_command", "data": {"command": "look north"}},
            )
        assert res.status_code == 202, res.text
        answer = stream.next_event()
        assert answer["event_type"] == "command_response"
        assert answer["data"] == {"echo": "look", "args": ["north"]}
        assert dualconn.backend.commands[-1].player_id == "hero"
    assert "game-token-hero" not in dualconn.log_text(), "a token reached the log"


def test_refusals_from_the_backend_reach_the_player_as_the_error_envelope(
    dualconn: Dualconn,
) -> None:
    with httpx.Client() as c:
        unknown = c.get(f"{dualconn.url}/api/events?token=made-up-token")
        banned = c.get(f"{dualconn.url}/sse/mage?token=game-token-mage")
    assert unknown.status_code == 401
    assert unknown.json()["error_type"] == "authentication_error"
    assert banned.status_code == 403
    assert banned.json()["error_type"] == "authorization_error"
    assert "made-up-token" not in dualconn.log_text()


def test_the_router_refuses_unsigned_or_badly_signed_bodies(dualconn: Dualconn) -> None:
    body = json.dumps(
        {"token": "game-token-hero", "transport": "sse", "player_id": None,
         "remote_addr": "127.0.0.1"}
    ).encode()
    url = f"{dualconn.game_url}/dualconn/connect"
    with httpx.Client() as c:
        assert c.post(url, content=body).status_code == 400
        bad = c.post(url, content=body, headers={"X-Dualconn-Signature": sign("wrong", body)})
        assert bad.status_code == 400
        good = c.post(url, content=body, headers={"X-Dualconn-Signature": sign(HOOK_SECRET, body)})
        assert good.status_code == 200
        assert good.json()["player_id"] == "hero"
        # Only signature-checked bodies are parsed.
        junk = b"not json"
        assert c.post(
            url, content=junk, headers={"X-Dualconn-Signature": sign(HOOK_SECRET, junk)}
        ).status_code == 400
