"""A FastAPI router that receives dualconn's webhooks and calls typed callbacks.

```python
from fastapi import FastAPI
from dualconn.fastapi import webhook_router

app = FastAPI()
app.include_router(
    webhook_router(secret=WEBHOOK_SECRET, on_command=handle_command, on_connect=who_is_this),
    prefix="/dualconn",
)
# DUALCONN_COMMAND_WEBHOOK=http://game:8080/dualconn/commands
# DUALCONN_CONNECT_WEBHOOK=http://game:8080/dualconn/connect
```

Each route checks the signature on the raw body (400 when it does not match, so that dualconn
reports a misconfigured secret as a failing backend rather than as a refused player), parses
the body into a typed request and calls the callback. Callbacks may be plain functions (run in
a worker thread) or coroutines.
"""

from __future__ import annotations

import inspect
import json
from typing import Awaitable, Callable, Optional, Sequence, TypeVar, Union

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
    OutboundEvent,
)

T = TypeVar("T")
R = TypeVar("R")
MaybeAwaitable = Union[T, Awaitable[T]]

CommandCallback = Callable[
    [CommandRequest], MaybeAwaitable[Union[CommandReply, Sequence[OutboundEvent], None]]
]
ConnectCallback = Callable[[ConnectRequest], MaybeAwaitable[ConnectGrant]]


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
    commands_path: str = "/commands",
    connect_path: str = "/connect",
) -> APIRouter:
    """Routes for the webhooks whose callbacks are given.

    ``secret`` is the shared webhook secret (``DUALCONN_COMMAND_WEBHOOK_SECRET``, which the
    connect webhook uses too unless ``DUALCONN_CONNECT_WEBHOOK_SECRET`` is set). ``None``
    accepts unsigned bodies, for a local set-up without a secret only.
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

    return router
