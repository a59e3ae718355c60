"""The REST clients and minted tokens against the real binary."""

from __future__ import annotations

import anyio
import httpx
import pytest

from conftest import ADMIN_KEY, SECRET, Dualconn, sse
from dualconn import AsyncDualconnClient, DualconnClient, DualconnError, mint_player_token


def test_a_minted_token_opens_a_stream_as_the_named_claims_player(dualconn: Dualconn) -> None:
    # The server reads the player from `player_id` (DUALCONN_JWT_PLAYER_CLAIM); `sub` holds the
    # game's user id, as many games' tokens do.
    token = mint_player_token(
        SECRET, "alice", player_claim="player_id", extra_claims={"sub": "user-7"}
    )
    with sse(f"{dualconn.url}/sse/alice?token={token}") as stream:
        connected = stream.next_event()
        assert connected["event_type"] == "connected"
        assert connected["data"]["player_id"] == "alice"
    # The user id is not the player: a stream for it is refused.
    with httpx.Client() as c:
        res = c.get(f"{dualconn.url}/sse/user-7?token={token}")
    assert res.status_code == 403
    assert res.json()["error_type"] == "authorization_error"


def test_publish_broadcast_and_room_reach_the_players_stream(dualconn: Dualconn) -> None:
    token = mint_player_token(SECRET, "bob", player_claim="player_id")
    with DualconnClient(dualconn.url, ADMIN_KEY) as client, sse(
        f"{dualconn.url}/sse/bob?token={token}"
    ) as stream:
        assert stream.next_event()["event_type"] == "connected"
        published = client.publish(["bob"], "chat", {"text": "hi"}, room_id="tavern")
        [entry] = published["events"]
        assert entry["player_id"] == "bob" and entry["connections"] == 1
        event = stream.next_event()
        assert event["event_type"] == "chat"
        assert event["data"] == {"text": "hi"}
        assert event["room_id"] == "tavern"
        assert event["sequence_number"] == entry["sequence_number"]

        everyone = client.broadcast("tick", {"n": 1})
        mine = [e for e in everyone["events"] if e["player_id"] == "bob"]
        assert len(mine) == 1
        event = stream.next_event()
        assert event["event_type"] == "tick"
        assert event["sequence_number"] == mine[0]["sequence_number"]


def test_rooms_name_receivers_and_skip_the_speaker(dualconn: Dualconn) -> None:
    token = mint_player_token(SECRET, "rhea", player_claim="player_id")
    with DualconnClient(dualconn.url, ADMIN_KEY) as client, sse(
        f"{dualconn.url}/sse/rhea?token={token}"
    ) as stream:
        assert stream.next_event()["event_type"] == "connected"
        assert client.join_room("inn", "rhea") == {
            "room_id": "inn",
            "player_id": "rhea",
            "member_count": 1,
        }
        assert client.join_room("inn", "sam")["member_count"] == 2
        assert client.join_room("inn", "sam")["member_count"] == 2, "idempotent"
        room = client.room("inn")
        assert room["members"] == [
            {"player_id": "rhea", "online": True},
            {"player_id": "sam", "online": False},
        ]
        assert client.player_rooms("sam") == {"player_id": "sam", "rooms": ["inn"]}

        said = client.publish_to_room("inn", "say", {"text": "ale!"}, except_players=["sam"])
        assert [e["player_id"] for e in said["events"]] == ["rhea"]
        event = stream.next_event()
        assert event["event_type"] == "say"
        assert event["room_id"] == "inn"
        assert event["sequence_number"] == said["events"][0]["sequence_number"]

        assert client.leave_room("inn", "sam")["member_count"] == 1
        with pytest.raises(TypeError):
            client.publish_to_room("inn", "say", except_players="sam")
        with pytest.raises(DualconnError) as refused:
            client.join_room("bad room", "rhea")
        assert refused.value.status == 400


def test_sessions_connection_info_and_stats(dualconn: Dualconn) -> None:
    token = mint_player_token(SECRET, "carol", player_claim="player_id")
    with DualconnClient(dualconn.url, ADMIN_KEY) as client, sse(
        f"{dualconn.url}/sse/carol?token={token}"
    ) as stream:
        first = stream.next_event()["data"]["session_id"]
        assert client.get_session("carol")["session_id"] == first
        info = client.connection_info("carol")
        assert info["presence"]["status"] == "online"
        assert info["connections"]["sse"]["count"] == 1
        assert client.stats()["total_connections"] >= 1

        made = client.new_session("carol", "carol-round-2")
        assert made["session_id"] == "carol-round-2"
        assert made["previous_connections_disconnected"] == 1
        ended = stream.next_event()
        assert ended["event_type"] == "session_terminated"
    assert client_session(dualconn, "carol") == "carol-round-2"


def client_session(dualconn: Dualconn, player: str) -> str:
    with DualconnClient(dualconn.url, ADMIN_KEY) as client:
        return client.get_session(player)["session_id"]


def test_refusals_carry_the_servers_error_envelope(dualconn: Dualconn) -> None:
    with DualconnClient(dualconn.url, ADMIN_KEY) as client:
        with pytest.raises(DualconnError) as bad:
            client.publish(["dave"], "not a type", {})
        assert bad.value.status == 400
        assert bad.value.error_type == "validation_error"
        with pytest.raises(TypeError):
            client.publish("dave", "chat")  # one id, not a list: a common slip
    with DualconnClient(dualconn.url, "not-an-admin-key-at-all") as client:
        with pytest.raises(DualconnError) as refused:
            client.stats()
        assert refused.value.status == 401
        assert refused.value.error_type == "authentication_error"
    with DualconnClient("http://127.0.0.1:9", ADMIN_KEY, timeout=2) as client:
        with pytest.raises(DualconnError) as down:
            client.stats()
        assert down.value.error_type == "network_error" and down.value.status == 0


def test_the_async_client_does_the_same(dualconn: Dualconn) -> None:
    token = mint_player_token(SECRET, "erin", player_claim="player_id")

    async def main() -> tuple[int, int, str]:
        async with AsyncDualconnClient(dualconn.url, ADMIN_KEY) as client:
            published = await client.publish(["erin"], "chat", {"text": "async"})
            info = await client.connection_info("erin")
            made = await client.new_session("erin")
            got = await client.get_session("erin")
            assert got["session_id"] == made["session_id"]
            assert (await client.join_room("dock", "erin"))["member_count"] == 1
            assert (await client.room("dock"))["member_count"] == 1
            assert (await client.player_rooms("erin"))["rooms"] == ["dock"]
            told = await client.publish_to_room("dock", "horn", except_players=["erin"])
            assert told["events"] == []
            assert (await client.leave_room("dock", "erin"))["member_count"] == 0
            stats = await client.stats()
            return published["events"][0]["sequence_number"], stats["total_players"], info[
                "presence"
            ]["status"]

    seq, _, status = anyio.run(main)
    assert status == "offline"
    # The event was kept in history: a stream that resumes from before it gets it.
    with sse(f"{dualconn.url}/sse/erin?token={token}&last_event_id={seq - 1}") as stream:
        assert stream.next_event()["event_type"] == "connected"
        assert stream.next_event()["event_type"] == "recovery"
        replayed = stream.next_event()
        assert replayed["sequence_number"] == seq
        assert replayed["data"] == {"text": "async"}
