"""The two kernel websocket protocols of jupyter_server, read the way the server reads them.

- legacy (no subprotocol): a text frame is one JSON message with a `channel`; a binary frame is
  a message with buffers: a big-endian u32 count n, n u32 offsets, the JSON message, the buffers.
- `v1.kernel.websocket.jupyter.org`: every frame is binary: a little-endian u64 count n, n u64
  offsets, then the channel name, header, parent header, metadata, content and buffers.

The guard must see what the kernel will see: parsing follows the server's own deserialisers
(Python's json, last duplicate key wins), and a frame the guard cannot parse is not forwarded.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

V1 = "v1.kernel.websocket.jupyter.org"


class WireError(ValueError):
    """A frame that is not a kernel message in the negotiated protocol."""


@dataclass
class Message:
    channel: str
    header: dict[str, Any]
    parent_header: dict[str, Any]
    content: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{what} is not a JSON object")
    return value


def parse(frame: str | bytes, protocol: str) -> Message:
    """The kernel message in one websocket frame of the given protocol ("" = legacy)."""
    try:
        if protocol == V1:
            if not isinstance(frame, bytes | bytearray):
                raise WireError("v1 frames are binary")
            return _parse_v1(bytes(frame))
        if isinstance(frame, str):
            return _from_json(json.loads(frame))
        return _parse_legacy_binary(bytes(frame))
    except (ValueError, UnicodeDecodeError, struct.error, IndexError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"not a kernel message: {exc}") from None


def _from_json(msg: Any) -> Message:
    msg = _obj(msg, "the message")
    channel = msg.get("channel")
    if not isinstance(channel, str):
        raise WireError("the message names no channel")
    return Message(
        channel,
        _obj(msg.get("header"), "header"),
        _obj(msg.get("parent_header") or {}, "parent_header"),
        _obj(msg.get("content") or {}, "content"),
        _obj(msg.get("metadata") or {}, "metadata"),
    )


def _parse_legacy_binary(frame: bytes) -> Message:
    (n,) = struct.unpack("!I", frame[:4])
    if n < 1 or 4 * (n + 1) > len(frame):
        raise WireError("bad buffer count")
    offsets = list(struct.unpack("!" + "I" * n, frame[4 : 4 * (n + 1)]))
    end = offsets[1] if n > 1 else len(frame)
    return _from_json(json.loads(frame[offsets[0] : end].decode("utf-8")))


def _v1_parts(frame: bytes) -> list[bytes]:
    n = int.from_bytes(frame[:8], "little")
    if n < 2 or 8 * (n + 1) > len(frame):
        raise WireError("bad offset count")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(n)]
    return [frame[offsets[i] : offsets[i + 1]] for i in range(n - 1)]


def _parse_v1(frame: bytes) -> Message:
    parts = _v1_parts(frame)
    if len(parts) < 5:
        raise WireError("a v1 message has a channel, header, parent header, metadata and content")
    channel = parts[0].decode("utf-8")
    header, parent, metadata, content = (json.loads(p.decode("utf-8")) for p in parts[1:5])
    return Message(
        channel,
        _obj(header, "header"),
        _obj(parent or {}, "parent_header"),
        _obj(content or {}, "content"),
        _obj(metadata or {}, "metadata"),
    )


def v1_channel(frame: bytes) -> str:
    """The channel of a v1 frame, read without parsing the rest (the hot path)."""
    n = int.from_bytes(frame[:8], "little")
    if n < 2 or 8 * (n + 1) > len(frame):
        raise WireError("bad offset count")
    start = int.from_bytes(frame[8:16], "little")
    end = int.from_bytes(frame[16:24], "little")
    return frame[start:end].decode("utf-8")


def serialize(msg: Message, protocol: str) -> str | bytes:
    """One frame carrying `msg` in the protocol (what the guard sends in place of a cut message)."""
    if protocol != V1:
        return json.dumps(
            {
                "channel": msg.channel,
                "header": msg.header,
                "parent_header": msg.parent_header,
                "metadata": msg.metadata,
                "content": msg.content,
                "buffers": [],
            }
        )
    parts = [
        msg.channel.encode(),
        *(json.dumps(p).encode() for p in (msg.header, msg.parent_header, msg.metadata, msg.content)),
    ]
    offsets = [8 * (1 + len(parts) + 1)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + b"".join(parts)


def reply_like(original: Message, msg_type: str, content: dict[str, Any]) -> Message:
    """A message from the kernel's side answering the same request as `original` (a kernel message)."""
    return _from_kernel(original, original.parent_header, msg_type, content)


def reply_to(request: Message, msg_type: str, content: dict[str, Any]) -> Message:
    """A message from the kernel's side answering `request` (a browser's message)."""
    return _from_kernel(request, request.header, msg_type, content)


def _from_kernel(
    original: Message, parent: dict[str, Any], msg_type: str, content: dict[str, Any]
) -> Message:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": "tre-guard",
        "session": str(original.header.get("session", "")),
        "date": datetime.now(UTC).isoformat(),
        "version": str(original.header.get("version", "5.3")),
    }
    return Message("iopub" if msg_type in OUTPUT_TYPES else original.channel, header, parent, content)


# --- code the browser asks a kernel to run ---------------------------------------------------------


@dataclass(frozen=True)
class CodeRun:
    msg_id: str
    session: str
    kind: str  # "execute" or "debug"
    code: str


def code_in(msg: Message) -> CodeRun | None:
    """The code a browser-to-kernel message asks the kernel to run, if any.

    ipykernel runs an execute_request on the control channel as well as on shell, and the debugger
    evaluates expressions: every channel counts. `user_expressions` are code too.
    """
    header = msg.header
    if msg.msg_type == "execute_request":
        code = msg.content.get("code", "")
        exprs = msg.content.get("user_expressions") or {}
        text = code if isinstance(code, str) else json.dumps(code)
        if isinstance(exprs, dict) and exprs:
            text += "\n# user_expressions: " + json.dumps(exprs, sort_keys=True)
        kind = "execute"
    elif msg.msg_type == "debug_request" and msg.content.get("command") in ("evaluate", "setVariable"):
        args = msg.content.get("arguments") or {}
        text = (
            json.dumps(args, sort_keys=True)
            if not isinstance(args.get("expression"), str)
            else args["expression"]
        )
        kind = "debug"
    else:
        return None
    return CodeRun(str(header.get("msg_id", "")), str(header.get("session", "")), kind, text)


# Kernel-to-browser messages that carry no output and may pass once the budget is spent.
PASS_WHEN_CUT = frozenset(
    {
        "status",
        "execute_input",
        "execute_reply",
        "kernel_info_reply",
        "shutdown_reply",
        "interrupt_reply",
        "is_complete_reply",
        "comm_close",
        "clear_output",
    }
)
# Output messages that are replaced by one notice per request when the budget is spent.
OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "execute_result", "error"})


def stripped(msg: Message) -> Message:
    """An execute_reply without what could carry output (user_expressions, payloads)."""
    if msg.msg_type == "execute_reply":
        content = {k: v for k, v in msg.content.items() if k not in ("user_expressions", "payload")}
        content["user_expressions"], content["payload"] = {}, []
        return Message(msg.channel, msg.header, msg.parent_header, content, msg.metadata)
    return msg
