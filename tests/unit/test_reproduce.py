"""The reproduction rule: byte-identical, equal as tables within a tolerance, the same pixels, or not;
what differs is said without quoting cell values (they may be data)."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from egress.review.reproduce import Outcome, compare

TABLE = b"region,count,mean\nNorth,120,53.1000000001\nSouth,85,55.4\n"


def test_the_same_bytes_are_identical_and_a_missing_file_is_missing():
    assert compare("t.csv", TABLE, TABLE).outcome is Outcome.IDENTICAL
    assert compare("t.csv", TABLE, None).outcome is Outcome.MISSING
    assert not Outcome.MISSING.reproduced and Outcome.EQUAL.reproduced


def test_tables_equal_within_floating_point_noise_and_not_beyond():
    noisy = b"region,count,mean\nNorth,120,53.1000000001000001\nSouth,85,55.40000000000001\n"
    assert compare("t.csv", TABLE, noisy).outcome is Outcome.EQUAL
    changed = b"region,count,mean\nNorth,121,53.1000000001\nSouth,85,55.4\n"
    found = compare("t.csv", TABLE, changed)
    assert found.outcome is Outcome.DIFFERS and "row 1 column 'count'" in found.detail
    assert "121" not in found.detail and "120" not in found.detail, "no cell values in the detail"
    relabelled = b"region,count,mean\nNorth,120,53.1000000001\nEast,85,55.4\n"
    assert compare("t.csv", TABLE, relabelled).outcome is Outcome.DIFFERS
    assert "shape" in compare("t.csv", TABLE, TABLE + b"East,40,50\n").detail


def png(text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", text)  # what differs between two runs of the same plot
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_a_figure_is_compared_by_its_pixels():
    assert compare("f.png", png("matplotlib 3.8"), png("matplotlib 3.9")).outcome is Outcome.EQUAL
    other = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 10, 200)).save(other, format="PNG")
    assert compare("f.png", png("x"), other.getvalue()).outcome is Outcome.DIFFERS


def test_other_files_are_reproduced_only_byte_for_byte():
    assert compare("notes.txt", b"a", b"b").outcome is Outcome.DIFFERS
