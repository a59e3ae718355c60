"""A tiny MUD on dualconn, written with the Python SDK.

- Players sign in to the game (``POST /login``) and get the game's own token. They open a
  WebSocket and an SSE stream on dualconn with it; dualconn asks this game who the token
  belongs to (the connect webhook).
- When a player comes online (the lifecycle webhook's ``player_online``, once however many
  transports) the answer greets them with ``game_state`` and ``room_update``.
- Commands (``look``, ``say <text>``, ``go <exit>``) come through the command webhook. Room
  chat is published with the SDK to a dualconn room: a character's place is its membership.
- When dualconn says the player went offline (``player_offline``, after its grace), the player
  is marked link-dead and the room is told.

Run it next to dualconn::

    DUALCONN_URL=http://127.0.0.1:8000 DUALCONN_ADMIN_KEY=... GAME_WEBHOOK_SECRET=... \\
        uvicorn --factory game:from_env --port 8080
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from dualconn import (
    AsyncDualconnClient,
    CommandRequest,
    ConnectGrant,
    ConnectRefused,
    ConnectRequest,
    GreetingEvent,
    LifecycleEvent,
    LifecycleReply,
    OutboundEvent,
)
from dualconn.fastapi import webhook_router

ROOMS: dict[str, dict[str, Any]] = {
    "hall": {"description": "A draughty hall.", "exits": {"north": "library"}},
    "library": {"description": "Dusty shelves, a sleeping cat.", "exits": {"south": "hall"}},
}
NAME = re.compile(r"^[a-z]{1,16}$")


@dataclass
class Player:
    name: str
    room: str = "hall"
    #: No connection left (after dualconn's grace): the character stands there, idle.
    link_dead: bool = True


class Game:
    """The world, the game's own sign-in tokens, and the dualconn client it publishes with."""

    def __init__(self, dualconn: Optional[AsyncDualconnClient] = None) -> None:
        self.dualconn = dualconn
        self.tokens: dict[str, str] = {}
        self.players: dict[str, Player] = {}
        #: Every lifecycle notice handled, once per id (the router drops retries).
        self.lifecycle: list[LifecycleEvent] = []

    def login(self, name: str) -> str:
        token = "g_" + secrets.token_urlsafe(24)
        self.tokens[token] = name
        self.players.setdefault(name, Player(name))
        return token

    def here(self, room: str, but: str = "") -> list[str]:
        """Who is in the room and connected, as the room's description shows them."""
        return [p.name for p in self.players.values()
                if p.room == room and not p.link_dead and p.name != but]

    def room_update(self, player: Player) -> dict[str, Any]:
        room = ROOMS[player.room]
        return {"room": player.room, "description": room["description"],
                "exits": sorted(room["exits"]), "players": self.here(player.room)}

    async def tell_room(self, room: str, text: str, but: str = "") -> None:
        if self.dualconn is not None:
            await self.dualconn.publish_to_room(
                room, "room_message", {"text": text}, except_players=[but] if but else []
            )

    async def move(self, player: Player, to: str) -> None:
        """Where a character stands is its room membership in dualconn, so a room event
        reaches it (or waits in its history) without the game listing anyone."""
        if self.dualconn is not None:
            await self.dualconn.leave_room(player.room, player.name)
            await self.dualconn.join_room(to, player.name)
        player.room = to

    # -- the webhooks -------------------------------------------------------------------------

    async def on_connect(self, req: ConnectRequest) -> ConnectGrant:
        name = self.tokens.get(req.token or "")
        if name is None:
            raise ConnectRefused(401, "sign in to the game first")
        return ConnectGrant(player_id=name)

    async def on_lifecycle(self, event: LifecycleEvent) -> Optional[LifecycleReply]:
        self.lifecycle.append(event)
        player = self.players.get(event.player_id)
        if player is None:
            return None
        if event.type == "player_online":
            player.link_dead = False
            if self.dualconn is not None:
                await self.dualconn.join_room(player.room, player.name)
            return LifecycleReply(events=[
                GreetingEvent("game_state", {"name": player.name, "hp": 10}),
                GreetingEvent("room_update", self.room_update(player), room_id=player.room),
            ])
        if event.type == "player_offline":
            player.link_dead = True
            await self.tell_room(player.room, f"{player.name} is link-dead.", but=player.name)
        return None

    async def on_command(self, cmd: CommandRequest) -> list[OutboundEvent]:
        player = self.players[cmd.player_id]
        if cmd.command == "say" and cmd.args:
            text = " ".join(cmd.args)
            await self.tell_room(player.room, f"{player.name} says: {text}", but=player.name)
            return [OutboundEvent([player.name], "command_response", {"text": f"You say: {text}"})]
        if cmd.command == "go" and cmd.args and cmd.args[0] in ROOMS[player.room]["exits"]:
            await self.tell_room(player.room, f"{player.name} leaves.", but=player.name)
            await self.move(player, ROOMS[player.room]["exits"][cmd.args[0]])
            await self.tell_room(player.room, f"{player.name} arrives.", but=player.name)
        elif cmd.command not in ("look", "go"):
            return [OutboundEvent([player.name], "command_response",
                                  {"text": "You can look, say <text> or go <exit>."})]
        return [OutboundEvent([player.name], "room_update", self.room_update(player),
                              room_id=player.room)]


class Login(BaseModel):
    name: str


def create_app(game: Game, webhook_secret: str) -> FastAPI:
    app = FastAPI(title="fastapi_game")

    @app.post("/login")
    def login(body: Login) -> dict[str, str]:
        if not NAME.match(body.name):
            raise HTTPException(400, "a name is 1 to 16 lower-case letters")
        return {"token": game.login(body.name)}

    app.include_router(
        webhook_router(
            secret=webhook_secret,
            on_command=game.on_command,
            on_connect=game.on_connect,
            on_lifecycle=game.on_lifecycle,
        ),
        prefix="/dualconn",
    )
    return app


def from_env() -> FastAPI:
    """For ``uvicorn --factory game:from_env``."""
    client = AsyncDualconnClient(os.environ["DUALCONN_URL"], os.environ["DUALCONN_ADMIN_KEY"])
    return create_app(Game(client), os.environ["GAME_WEBHOOK_SECRET"])
