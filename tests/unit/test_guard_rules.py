"""The guard's pure rules: routes, contents, kernel messages in both protocols, the byte budget."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta

import pytest

from hub.guard import kernel_wire as wire
from hub.guard.budget import OVERDRAFT, Budget, BudgetState
from hub.guard.routes import Kind, classify, is_control, parse_target, read_decision, suffix_refusal

KID = "0b5e1c9e-2c1f-4d3b-9a3e-7e8f9a0b1c2d"


def test_only_workspace_paths_with_valid_names_are_targets():
    t = parse_target("/user/alice/proj-a/lab/tree/x.ipynb")
    assert (t.user, t.project, t.rest) == ("alice", "proj-a", "lab/tree/x.ipynb")
    assert parse_target("/user/alice/proj-a").rest == ""
    for path in ("/hub/home", "/user/alice", "/user/Alice/p/", "/user/a--b/p/", "/user/a/p--q/x"):
        assert parse_target(path) is None, path


@pytest.mark.parametrize(
    ("method", "rest", "kind"),
    [
        ("GET", "lab", Kind.PAGE),
        ("GET", "", Kind.PAGE),
        ("GET", "lab/tree/notebooks/a.ipynb", Kind.PAGE),
        ("GET", "static/lab/main.js", Kind.STATIC),
        ("GET", "lab/extensions/@jupyter/x/static/remoteEntry.js", Kind.STATIC),
        ("GET", "kernelspecs/python3/logo-64x64.png", Kind.STATIC),
        ("GET", "api/contents/a/b.ipynb", Kind.CONTENTS),
        ("PUT", "api/contents/a.ipynb", Kind.CONTENTS),
        ("GET", f"api/kernels/{KID}/channels", Kind.KERNEL_CHANNELS),
        ("POST", f"api/kernels/{KID}/restart", Kind.API),
        ("GET", "api/sessions", Kind.API),
        ("GET", "lab/api/settings/@jupyterlab/notebook-extension:tracker", Kind.API),
        ("PUT", "lab/api/workspaces/default", Kind.API),
        ("GET", "api/events/subscribe", Kind.EVENTS),
        ("GET", "oauth_callback", Kind.PAGE),
        ("GET", "api/contents/a.ipynb/checkpoints", Kind.API),
        ("POST", "api/contents/a.ipynb/checkpoints/checkpoint", Kind.API),
        ("GET", "api/nbconvert", Kind.NO_EXPORTERS),
        ("GET", "lab/api/build", Kind.API),
        ("GET", "lsp/status", Kind.API),
    ],
)
def test_what_jupyterlab_needs_passes(method, rest, kind):
    assert classify(method, rest).kind is kind


@pytest.mark.parametrize(
    ("method", "rest", "reason"),
    [
        ("GET", "files/data.csv", "downloading files"),
        ("GET", "view/report.html", "downloading files"),
        ("GET", "nbconvert/html/a.ipynb", "exporting notebooks"),
        ("GET", "api/nbconvert/html", "exporting notebooks"),
        ("POST", "api/terminals", "terminals"),
        ("GET", "terminals/websocket/1", "terminals"),
        ("POST", "lab/api/extensions", "managing JupyterLab extensions"),
        ("GET", "api/contents/../../etc/passwd", "'.' or '..'"),
        ("GET", "static/..%2F/x", "encoded"),
        ("GET", "api/contents/data.parq%2Euet", "encoded"),
        ("POST", "static/lab/main.js", "POST on this path"),
        ("GET", "metrics", "does not use"),
        ("GET", "edit/a.py", "does not use"),
    ],
)
def test_everything_else_is_refused_with_its_reason(method, rest, reason):
    route = classify(method, rest)
    assert route.kind is None and reason in route.reason


def test_only_bookkeeping_passes_once_the_budget_is_spent():
    assert is_control("api/kernels") and is_control(f"api/kernels/{KID}") and is_control("api/sessions")
    assert not is_control("api/contents/a.txt") and not is_control("lab/api/workspaces/default")


def test_data_formats_are_refused_by_name_whatever_their_case():
    for name in ("a.parquet", "x/b.DUCKDB", "c.tar.gz", "d.feather", "e.sqlite3", "f.xlsx", "g.zip"):
        assert suffix_refusal(name), name
    assert suffix_refusal("notes.txt") is None and suffix_refusal("analysis.ipynb") is None


def model(**kw):
    return {"type": "file", "format": "text", "path": "a.txt", "content": "x", "size": 1, **kw}


def test_contents_reads_are_decided_on_what_the_server_sent():
    limit = 1000
    assert read_decision(model(), limit).allowed
    assert read_decision({"type": "directory", "content": [], "path": ""}, limit).allowed
    assert read_decision(model(content=None), limit).allowed  # metadata only
    assert read_decision({"type": "notebook", "format": "json", "content": {}, "size": 900}, limit).allowed
    too_big = read_decision({"type": "notebook", "format": "json", "content": {}, "size": 1001}, limit)
    assert not too_big.allowed and "more than" in too_big.reason
    # The server's `size` can be a lie: the bytes that came count too.
    assert not read_decision(model(content="y" * 1001, size=3), limit).allowed
    assert not read_decision(model(format="base64", mimetype="application/octet-stream"), limit).allowed
    assert read_decision(model(format="base64", mimetype="image/png"), limit).allowed
    assert not read_decision(model(path="data.parquet"), limit).allowed  # renamed back: still by name
    assert not read_decision("not a model", limit).allowed
    assert not read_decision(model(type="unknown"), limit).allowed


# --- kernel messages --------------------------------------------------------------------------------


def message(msg_type="execute_request", channel="shell", **content):
    return wire.Message(
        channel,
        {"msg_id": "m1", "msg_type": msg_type, "session": "s1", "username": "u", "version": "5.3"},
        {},
        content or {"code": "print(1)", "silent": False},
    )


@pytest.mark.parametrize("protocol", ["", wire.V1])
def test_both_protocols_round_trip(protocol):
    msg = message(code="x = 1\nprint(x)")
    back = wire.parse(wire.serialize(msg, protocol), protocol)
    assert (back.channel, back.msg_type, back.content["code"]) == (
        "shell",
        "execute_request",
        "x = 1\nprint(x)",
    )
    if protocol == wire.V1:
        assert wire.v1_channel(wire.serialize(msg, protocol)) == "shell"


def test_legacy_binary_frames_with_buffers_are_read():
    body = json.dumps(
        {
            "channel": "shell",
            "header": {"msg_id": "m", "msg_type": "comm_msg"},
            "parent_header": {},
            "content": {},
        }
    ).encode()
    buffer = b"\x00\x01binary"
    offsets = [4 * 3, 4 * 3 + len(body)]
    frame = struct.pack("!III", 2, *offsets) + body + buffer
    assert wire.parse(frame, "").msg_type == "comm_msg"


@pytest.mark.parametrize(
    ("frame", "protocol"),
    [
        ("not json", ""),
        ('{"header": {}}', ""),  # no channel
        ('{"channel": "shell", "header": []}', ""),
        (b"\x05\x00\x00\x00", ""),
        ("text frame", wire.V1),
        (b"\x02" + b"\x00" * 7, wire.V1),
        (b"\xff" * 64, wire.V1),
    ],
)
def test_unreadable_frames_are_refused_not_guessed(frame, protocol):
    with pytest.raises(wire.WireError):
        wire.parse(frame, protocol)


def test_last_duplicate_key_wins_as_in_the_kernel():
    frame = (
        '{"channel": "shell", "header": {"msg_type": "execute_request", "msg_id": "a"}, "parent_header": {},'
    )
    frame += ' "content": {"code": "harmless()", "code": "exfiltrate()"}}'
    assert wire.code_in(wire.parse(frame, "")).code == "exfiltrate()"


def test_code_is_found_on_every_channel_and_in_the_debugger():
    assert wire.code_in(message()).code == "print(1)"
    assert wire.code_in(message(channel="control")).kind == "execute"  # ipykernel runs it there too
    with_exprs = wire.code_in(message(code="1", user_expressions={"x": "open('/data/a').read()"}))
    assert "open('/data/a').read()" in with_exprs.code
    debug = message("debug_request", "control", command="evaluate", arguments={"expression": "secret"})
    assert (wire.code_in(debug).kind, wire.code_in(debug).code) == ("debug", "secret")
    assert wire.code_in(message("complete_request", code="pri", cursor_pos=3)) is None


def test_a_notice_answers_the_request_it_replaces():
    request = message()
    notice = wire.reply_to(request, "stream", {"name": "stderr", "text": "cut"})
    assert notice.channel == "iopub" and notice.parent_header == request.header
    output = wire.Message("iopub", {"msg_id": "o", "msg_type": "stream"}, request.header, {})
    assert wire.reply_like(output, "stream", {}).parent_header == request.header


def test_an_execute_reply_loses_what_could_carry_output():
    reply = message(
        "execute_reply", status="ok", execution_count=3, user_expressions={"x": "data"}, payload=[1]
    )
    clean = wire.stripped(reply)
    assert clean.content == {"status": "ok", "execution_count": 3, "user_expressions": {}, "payload": []}


# --- budget -----------------------------------------------------------------------------------------

NOON = datetime(2026, 12, 2, 12, tzinfo=UTC)
WS = ("alice", "proj-a")


def test_the_budget_counts_bytes_per_workspace_per_utc_day():
    budget = Budget()
    assert budget.admit(WS, 600, 1000, NOON)
    assert budget.state(WS, 1000, NOON) is BudgetState.OPEN
    assert not budget.admit(WS, 401, 1000, NOON)  # would overspend: refused, not counted
    assert budget.admit(WS, 400, 1000, NOON)
    assert budget.state(WS, 1000, NOON) is BudgetState.SPENT
    assert budget.state(("alice", "proj-b"), 1000, NOON) is BudgetState.OPEN
    assert not budget.admit(WS, 1, 1000, NOON)  # output: nothing more today
    assert budget.admit(WS, int(1000 * OVERDRAFT), 1000, NOON, control=True)  # bookkeeping: the overdraft
    assert not budget.admit(WS, 1, 1000, NOON, control=True)
    assert budget.state(WS, 1000, NOON) is BudgetState.CLOSED
    assert budget.state(WS, 1000, NOON + timedelta(hours=12)) is BudgetState.OPEN  # a new UTC day


def test_an_unchanged_answer_counts_once():
    budget = Budget()
    key = "GET /api/contents/"
    assert budget.admit_answer(WS, key, b"listing", 100, NOON)
    assert budget.admit_answer(WS, key, b"listing", 100, NOON)  # free
    assert budget.admit_answer(WS, key, b"listing2", 100, NOON)
    assert budget.admit_answer(WS, key, b"listing", 100, NOON)  # changed back: new again
    assert budget.usage(WS, NOON).sent == 22
    assert not budget.admit_answer(WS, key, b"x" * 79, 100, NOON)
    assert budget.admit_answer(WS, key, b"listing", 100, NOON)  # still the last one admitted


def test_the_first_cut_of_the_day_is_the_one_audited():
    budget = Budget()
    assert budget.note_cut(WS, NOON) is True
    assert budget.note_cut(WS, NOON) is False
    assert budget.usage(WS, NOON).cut == 2
    assert budget.note_cut(WS, NOON + timedelta(days=1)) is True
    saved = Budget()
    saved.load(WS, NOON.date(), 5000, 3)  # restarted after a cut: not audited again
    assert saved.note_cut(WS, NOON) is False and saved.usage(WS, NOON).sent == 5000
