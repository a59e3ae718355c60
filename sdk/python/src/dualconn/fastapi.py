"""A FastAPI router that receives dualconn's webhooks and calls typed callbacks.

```python
from fastapi import FastAPI
from dualconn.fastapi import webhook_router

app = FastAPI()
app.include_router(
    webhook_router(
        secret=WEBHOOK_SECRET,
        on_command=handle_command,
        on_connect=who_is_this,
        on_lifecycle=player_came_or_went,
    ),
    prefix="/dualconn",
)
# DUALCONN_COMMAND_WEBHOOK=http://game:8080/dualconn/commands
# DUALCONN_CONNECT_WEBHOOK=http://game:8080/dualconn/connect
# DUALCONN_LIFECYCLE_WEBHOOK=http://game:8080/dualconn/lifecycle
```

Each route checks the signature on the raw body (400 when it does not match, so that dualconn
reports a misconfigured secret as a failing backend rather than as a refused player), parses
the body into a typed request and calls the callback. Callbacks may be plain functions (run in
a worker thread) or coroutines.

Lifecycle notices arrive at least once. The router calls ``on_lifecycle`` once per notice
``id`` (within this process, for the last ``lifecycle_dedup`` ids): a retry gets the first
answer again, and a retry that arrives while the first call still runs waits for it. A backend
run as several processes still needs its own check on ``id``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Optional, Sequence, TypeVar, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .signatures import SIGNATURE_HEADER, verify_signature
from .webhooks import (
    CommandReply,
    CommandRequest,
    ConnectGrant,
    ConnectRefused,
    ConnectRequest,
    GreetingEvent,
    LifecycleEvent,
    LifecycleReply,
    OutboundEvent,
)

T = TypeVar("T")
R = TypeVar("R")
MaybeAwaitable = Union[T, Awaitable[T]]

CommandCallback = Callable[
    [CommandRequest], MaybeAwaitable[Union[CommandReply, Sequence[OutboundEvent], None]]
]
ConnectCallback = Callable[[ConnectRequest], MaybeAwaitable[ConnectGrant]]
LifecycleCallback = Callable[
    [LifecycleEvent], MaybeAwaitable[Union[LifecycleReply, Sequence[GreetingEvent], None]]
]


class _Once:
    """Runs one call per key and hands every caller with that key its answer; remembers the
    last ``size`` keys."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._answers: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()

    async def run(
        self, key: str, call: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        if self._size <= 0:
            return await call()
        known = self._answers.get(key)
        if known is not None:
            self._answers.move_to_end(key)
            return await asyncio.shield(known)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[key] = future
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)
        try:
            answer = await call()
        except BaseException as e:
            # Not remembered: dualconn retries, and the next attempt calls again.
            self._answers.pop(key, None)
            future.set_exception(e)
            future.exception()  # retrieved, so an unawaited failure is not reported twice
            raise
        future.set_result(answer)
        return answer


async def _call(callback: Callable[[T], MaybeAwaitable[R]], arg: T) -> R:
    if inspect.iscoroutinefunction(callback):
        return await callback(arg)  # type: ignore[no-any-return]
    result = await run_in_threadpool(callback, arg)
    if inspect.isawaitable(result):
        return await result
    return result


def webhook_router(
    *,
    secret: Union[str, bytes, None],
    on_command: Optional[CommandCallback] = None,
    on_connect: Optional[ConnectCallback] = None,
    on_lifecycle: Optional[LifecycleCallback] = None,
    commands_path: str = "/commands",
    connect_path: str = "/connect",
    lifecycle_path: str = "/lifecycle",
    lifecycle_dedup: int = 10_000,
) -> APIRouter:
    """Routes for the webhooks whose callbacks are given.

    ``secret`` is the shared webhook secret (``DUALCONN_COMMAND_WEBHOOK_SECRET``, which the
    connect and lifecycle webhooks use too unless their own secret is set). ``None`` accepts
    unsigned bodies, for a local set-up without a secret only. ``lifecycle_dedup`` is how many
    recent notice ids are remembered (0: call ``on_lifecycle`` for every delivery).
    """
    router = APIRouter()

    async def signed_body(request: Request) -> Optional[bytes]:
        body = await request.body()
        if secret is not None and not verify_signature(
            secret, body, request.headers.get(SIGNATURE_HEADER)
        ):
            return None
        return body

    def bad(message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=400)

    if on_command is not None:
        command_callback = on_command

        async def commands(request: Request) -> Response:
            body = await signed_body(request)
            if body is None:
                return bad("bad signature")
            try:
                parsed = CommandRequest.parse(body)
            except (ValueError, json.JSONDecodeError) as e:
                return bad(f"not a command: {e}")
            result = await _call(command_callback, parsed)
            if result is None:
                reply = CommandReply()
            elif isinstance(result, CommandReply):
                reply = result
            else:
                reply = CommandReply(events=list(result))
            return JSONResponse(reply.to_json())

        router.add_api_route(commands_path, commands, methods=["POST"])

    if on_connect is not None:
        connect_callback = on_connect

        async def connect(request: Request) -> Response:
            body = await signed_body(request)
            if body is None:
                return bad("bad signature")
            try:
                parsed = ConnectRequest.parse(body)
            except (ValueError, json.JSONDecodeError) as e:
                return bad(f"not a connect request: {e}")
            try:
                grant = await _call(connect_callback, parsed)
            except ConnectRefused as refused:
                return JSONResponse({"detail": refused.message}, status_code=refused.status)
            return JSONResponse(grant.to_json())

        router.add_api_route(connect_path, connect, methods=["POST"])

    if on_lifecycle is not None:
        lifecycle_callback = on_lifecycle
        once = _Once(lifecycle_dedup)

        async def answer(event: LifecycleEvent) -> dict[str, Any]:
            result = await _call(lifecycle_callback, event)
            if result is None:
                return LifecycleReply().to_json()
            if isinstance(result, LifecycleReply):
                return result.to_json()
            return LifecycleReply(events=list(result)).to_json()

        async def lifecycle(request: Request) -> Response:
            body = await signed_body(request)
            if body is None:
                return bad("bad signature")
            try:
                event = LifecycleEvent.parse(body)
            except (ValueError, json.JSONDecodeError) as e:
                return bad(f"not a lifecycle notice: {e}")
            return JSONResponse(await once.run(event.id, lambda: answer(event)))

        router.add_api_route(lifecycle_path, lifecycle, methods=["POST"])

    return router
