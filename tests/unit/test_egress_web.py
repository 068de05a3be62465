"""The web layer: pages render, forms need CSRF, the API follows the same rules, headers are strict."""

from __future__ import annotations

import json

from tests.fixtures_egress import AUTHOR, CHECKER1, CHECKER2, LEAD, PROJECT

P = "/services/egress"


def form(client, path, data, user=AUTHOR):
    return client.post(P + path, data={"_csrf": f"csrf-{user}", **data}, follow_redirects=False)


def test_researcher_flow_through_pages(web):
    eg, _, client = web
    c = client(AUTHOR)
    r = c.get(P + "/requests")
    assert r.status_code == 200 and "New request" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    r = form(c, "/requests", {"project": PROJECT, "title": "Table 1"})
    assert r.status_code == 303
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    assert (
        form(
            c, f"/requests/{rid}/groups", {"name": "tables", "context": "ctx", "controls": "ctl"}
        ).status_code
        == 303
    )
    pick = c.get(P + f"/requests/{rid}/pick?dir=out")
    assert pick.status_code == 200 and "counts.csv" in pick.text
    assert "North" in c.get(P + f"/requests/{rid}/preview", params={"path": "out/counts.csv"}).text
    gid = eg.queries.request_view(AUTHOR, rid)["groups"][0]["id"]
    r = form(c, f"/requests/{rid}/files", {"group_id": gid, "path": "out/counts.csv", "kind": "output"})
    assert r.status_code == 303, r.text
    assert "Run automated checks" in form(c, f"/requests/{rid}/precheck", {}).text
    assert form(c, f"/requests/{rid}/submit", {}).status_code == 303
    page = c.get(P + f"/requests/{rid}")
    assert "submitted" in page.text

    fid = eg.queries.request_view(AUTHOR, rid)["files"][0]["id"]
    k = client(CHECKER1)
    assert f"/requests/{rid}" in k.get(P + "/queue").text
    fp = k.get(P + f"/files/{fid}")
    assert fp.status_code == 200 and '<table class="data">' in fp.text and "Record vote" in fp.text
    vote = {"rid": rid, "decision": "approve", "sha256": eg.sha(fid)}
    assert form(k, f"/files/{fid}/vote", vote, CHECKER1).status_code == 303
    k2 = client(CHECKER2)
    assert form(k2, f"/files/{fid}/vote", vote, CHECKER2).status_code == 303
    assert eg.queries.request_view(AUTHOR, rid)["state"] == "released"
    d = c.get(P + f"/requests/{rid}/download")
    assert d.status_code == 200 and d.headers["content-type"] == "application/zip"
    assert client(LEAD).get(P + f"/requests/{rid}/download").status_code == 200
    assert "Reviewed" in k.get(P + "/history").text


def test_api_and_openapi(web):
    _, _, client = web
    c = client(AUTHOR)
    c.headers["X-Test-Via"] = "token"
    spec = c.get(P + "/api/openapi.json").json()
    assert f"{P}/api/requests" in spec["paths"]
    rid = c.post(P + "/api/requests", json={"project": PROJECT, "title": "API"}).json()["id"]
    gid = c.post(
        P + f"/api/requests/{rid}/groups", json={"name": "g", "context": "c", "controls": "k"}
    ).json()["id"]
    r = c.post(
        P + f"/api/requests/{rid}/files", json={"group_id": gid, "path": "out/counts.csv", "kind": "output"}
    )
    assert r.status_code == 201
    assert c.post(P + f"/api/requests/{rid}/actions/submit").json()["state"] == "submitted"
    assert c.get(P + "/api/requests").json()[0]["id"] == rid
    r = c.post(P + f"/api/requests/{rid}/files", json={"group_id": gid, "path": "../x.csv", "kind": "output"})
    assert r.status_code == 403  # submitted: no more edits


def test_sandboxed_html_and_markdown(web):
    eg, _, client = web
    (eg.home() / "report.html").write_text("<script>alert(1)</script><p>hi</p>")
    (eg.home() / "notes.md").write_text("# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))")
    _, fids = eg.draft(files=(("report.html", "output"), ("notes.md", "supporting")))
    c = client(AUTHOR)
    page = c.get(P + f"/files/{fids[0]}")
    assert "<iframe sandbox" in page.text and "<script>alert" not in page.text
    raw = c.get(P + f"/files/{fids[0]}/raw")
    assert raw.headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    md = c.get(P + f"/files/{fids[1]}")
    assert "<h1>Title</h1>" in md.text
    assert "<script>alert" not in md.text and 'href="javascript:' not in md.text


def test_flagged_cells_are_highlighted_where_the_engine_points(web):
    eg, _, client = web
    _, [fid] = eg.submitted()
    page = client(CHECKER1).get(P + f"/files/{fid}").text
    # South,3 is below the threshold: the engine flags row 1, file column 1
    assert '<td class="flag" title=' in page
    flagged_row = page.split('<td class="flag"')[0].rsplit("<tr>", 1)[1]
    assert "South" in flagged_row


def test_flags_land_on_the_small_cells_of_a_suppressed_table_with_integer_labels(tmp_path):
    """Labels that look like numbers (region codes) and a suppressed cell: the page marks exactly the
    cells the engine flagged, in file coordinates (it used to guess the label columns itself)."""
    from egress.sdc import check_paths
    from egress.web.render import render_table

    text = "region,year,F,M\n11,2024,25,4\n12,2024,,31\n13,2024,40,7\n"
    path = tmp_path / "suppressed.csv"
    path.write_text(text)
    [entry] = check_paths([path])["files"]
    shown = render_table(text.encode(), ",", entry)
    flagged = {(r, c) for r, row in enumerate(shown["rows"]) for c, (_, flag) in enumerate(row) if flag}
    small = {(0, 3), (2, 3)}  # M = 4 and M = 7, under the threshold of 10
    assert small <= flagged
    assert all(shown["rows"][r][c][0] in ("4", "7", "") for r, c in flagged), shown


def test_notebook_image_and_parquet_render(web):
    import base64
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    eg, _, client = web
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    (eg.home() / "plot.png").write_bytes(png)
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Results\n", "<img src=x onerror=alert(1)>"]},
            {
                "cell_type": "code",
                "source": "print(1)",
                "outputs": [
                    {"output_type": "stream", "text": ["1\n"]},
                    {"output_type": "display_data", "data": {"image/png": base64.b64encode(png).decode()}},
                ],
            },
        ]
    }
    (eg.home() / "analysis.ipynb").write_text(json.dumps(nb))
    pq.write_table(pa.table({"region": ["N", "S"], "n": [12, 30]}), eg.home() / "t.parquet")
    files = (("plot.png", "output"), ("analysis.ipynb", "supporting"), ("t.parquet", "output"))
    _, fids = eg.draft(files=files)
    c = client(AUTHOR)
    img = c.get(P + f"/files/{fids[0]}/raw")
    assert img.headers["content-type"] == "image/png" and img.content == png
    nb_page = c.get(P + f"/files/{fids[1]}").text
    assert "<h1>Results</h1>" in nb_page and "<img src=x" not in nb_page
    assert "data:image/png;base64," in nb_page
    pq_page = c.get(P + f"/files/{fids[2]}").text
    assert '<th scope="col">region</th>' in pq_page and ">30<" in pq_page
    lead = client(LEAD).get(P + "/project")
    assert lead.status_code == 200


def test_the_viewer_says_what_it_leaves_out_and_shows_what_jupyter_hides(web):
    """A wide table says how many columns are shown; notebook metadata, attachments and every
    representation of an output are on the page; Parquet metadata too."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    eg, _, client = web
    header = ",".join(["region", *(f"c{i}" for i in range(100))])
    (eg.home() / "wide.csv").write_text(header + "\n" + ",".join(["N", *["12"] * 100]) + "\n")
    nb = {
        "metadata": {"analysis": {"appendix": "HIDDEN-IN-METADATA"}},
        "cells": [
            {
                "cell_type": "markdown",
                "source": "See below.",
                "metadata": {},
                "attachments": {"rows.txt": {"text/plain": "HIDDEN-IN-ATTACHMENT"}},
            },
            {
                "cell_type": "code",
                "source": "df",
                "metadata": {"smuggled": "HIDDEN-IN-CELL-METADATA"},
                "outputs": [
                    {
                        "output_type": "execute_result",
                        "metadata": {},
                        "data": {"text/html": "<p>Done.</p>", "text/plain": "HIDDEN-BEHIND-HTML"},
                    }
                ],
            },
        ],
    }
    (eg.home() / "nb.ipynb").write_text(json.dumps(nb))
    table = pa.table({"region": ["N", "S"], "n": [12, 30]})
    pq.write_table(table.replace_schema_metadata({"notes": "HIDDEN-IN-PARQUET"}), eg.home() / "t.parquet")
    files = (("wide.csv", "output"), ("nb.ipynb", "output"), ("t.parquet", "output"))
    _, fids = eg.draft(files=files)
    c = client(AUTHOR)
    wide = c.get(P + f"/files/{fids[0]}").text
    assert "60 of 101 columns shown" in wide and "Download the raw file" in wide
    page = c.get(P + f"/files/{fids[1]}").text
    for hidden in (
        "HIDDEN-IN-METADATA",
        "HIDDEN-IN-ATTACHMENT",
        "HIDDEN-IN-CELL-METADATA",
        "HIDDEN-BEHIND-HTML",
    ):
        assert hidden in page, hidden
    assert "HIDDEN-IN-PARQUET" in c.get(P + f"/files/{fids[2]}").text


def test_checkers_see_the_authors_code_for_the_requests_period(web):
    from datetime import timedelta

    from hub.kernel import codelog
    from hub.kernel.clock import utcnow
    from hub.kernel.db import session_scope

    eg, _, client = web

    def ran(code: str, user: str = AUTHOR, minutes_ago: float = 0) -> None:
        with session_scope(eg.settings) as s:
            when = utcnow() - timedelta(minutes=minutes_ago)
            codelog.append(s, [codelog.Run(when, user, PROJECT, "k" * 36, "s", code[:10], "execute", code)])

    ran("before_the_first_request = 1")
    first, _ = eg.submitted()
    ran("import pandas as pd\ncounts = pd.read_parquet('/data/patients.parquet').groupby('region').size()")
    ran("someone_else = 1", user=CHECKER1)
    second, _ = eg.submitted()
    ran("after_submission = 1")
    page = client(CHECKER1).get(P + f"/requests/{second}").text
    assert "Code run by the author" in page and "1 run" in page
    assert "groupby(&#39;region&#39;)" in page or "groupby('region')" in page
    for absent in ("before_the_first_request", "someone_else", "after_submission"):
        assert absent not in page, absent
    assert "before_the_first_request" in client(CHECKER1).get(P + f"/requests/{first}").text


def test_an_oversized_body_is_refused_before_it_is_read(web):
    """The egress service takes short texts only: 2 MiB of JSON, declared or streamed, gets 413
    before it is parsed, and no request is created."""
    _, _, client = web
    c = client(AUTHOR)
    c.headers["X-Test-Via"] = "token"
    body = json.dumps({"project": PROJECT, "title": "x" * (2 * 1024 * 1024)}).encode()
    declared = c.post(P + "/api/requests", content=body, headers={"Content-Type": "application/json"})
    streamed = c.post(
        P + "/api/requests",
        content=(body[i : i + 65536] for i in range(0, len(body), 65536)),
        headers={"Content-Type": "application/json"},
    )
    for r in (declared, streamed):
        assert r.status_code == 413, r.status_code
        assert "larger than the 1 MiB" in r.json()["detail"]
    assert c.get(P + "/api/requests").json() == []
