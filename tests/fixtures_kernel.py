"""A kernel's websocket channel through the public proxy and the guard, in both Jupyter protocols
(JSON text frames and `v1.kernel.websocket.jupyter.org`), packed here independently of the guard's
own code."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
import uuid

from websockets.sync.client import connect

from tests.fixtures_hub import Hub

V1 = "v1.kernel.websocket.jupyter.org"
# jupyter_server answers a kernel websocket's handshake only once the new kernel replies to
# kernel_info (it waits up to 60 s); a browser waits that long too, and a loaded machine can take
# over 10 s.
HANDSHAKE_SECONDS = 90


def legacy_frame(msg: dict) -> str:
    return json.dumps(msg)


def v1_frame(msg: dict) -> bytes:
    """The v1 wire format, packed here independently of the guard's own code."""
    parts = [msg["channel"].encode()] + [
        json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")
    ]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def v1_message(frame: bytes) -> dict:
    n = struct.unpack("<Q", frame[:8])[0]
    offsets = struct.unpack(f"<{n}Q", frame[8 : 8 * (n + 1)])
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(n - 1)]
    return {
        "channel": parts[0].decode(),
        "header": json.loads(parts[1]),
        "parent_header": json.loads(parts[2]),
        "content": json.loads(parts[4]),
    }


def kernel_channel(
    hub: Hub,
    user: str,
    project: str,
    token: str,
    protocol: str,
    kernel: str | None = None,
    wait: float = HANDSHAKE_SECONDS,
):
    """A websocket to a kernel of the workspace (a new one unless `kernel` names one), through the
    public proxy and the guard, as a browser's JupyterLab reaches it. `wait`: seconds for the handshake
    (a poll that retries passes less, so one stuck attempt does not outlast its window)."""
    base = hub.user_url(user, project)
    if kernel is None:
        with hub.client(headers={"Authorization": f"token {token}"}) as client:
            kernel = client.post(base + "api/kernels", json={"name": "python3"}).json()["id"]
    host = f"{user}.{hub.settings.domain}"
    context = ssl.create_default_context(cafile=str(hub.settings.keys_dir / "tls" / "ca.crt"))
    sock = socket.create_connection(("127.0.0.1", hub.settings.public_port))
    url = f"wss://{host}:{hub.settings.public_port}/user/{user}/{project}/api/kernels/{kernel}/channels"
    ws = connect(
        url,
        sock=sock,
        ssl=context,
        server_hostname=host,
        subprotocols=[protocol] if protocol else None,
        additional_headers={"Authorization": f"token {token}"},
        max_size=None,
        open_timeout=wait,
    )
    return ws, kernel


def execute(ws, code: str, protocol: str, seconds: float = 60) -> dict:
    """Send an execute_request and return the kernel's execute_reply content (within `seconds`)."""
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "session": uuid.uuid4().hex,
        "username": "test",
        "version": "5.3",
        "date": "2026-12-02T00:00:00Z",
    }
    msg = {
        "channel": "shell",
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }
    ws.send(v1_frame(msg) if protocol == V1 else legacy_frame(msg))
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        frame = ws.recv(timeout=left)
        reply = v1_message(frame) if protocol == V1 else json.loads(frame)
        if (
            reply["header"]["msg_type"] == "execute_reply"
            and reply["parent_header"].get("msg_id") == header["msg_id"]
        ):
            return reply["content"]
    raise AssertionError("no execute_reply")


def notebook_bytes(*cells: str, parameters: str = "") -> bytes:
    """A notebook file of code cells (the first tagged `parameters` when given), as papermill reads it."""

    def cell(source: str, tags: list[str] | None = None) -> dict:
        return {
            "cell_type": "code",
            "source": source,
            "metadata": {"tags": tags or []},
            "outputs": [],
            "execution_count": None,
        }

    body = ([cell(parameters, ["parameters"])] if parameters else []) + [cell(c) for c in cells]
    return json.dumps(
        {
            "cells": body,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ).encode()
