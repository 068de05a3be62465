"""hub.kernel.lifecycle: a TRE process never outlives the one that started it."""

from __future__ import annotations

import subprocess
import sys

# A child forks a grandchild and exits at once; the grandchild, orphaned (its parent is now init),
# only then asks to die with its parent, as a service does after its imports.
ORPHAN = """
import os, sys, time
if os.fork():
    os._exit(0)
time.sleep(0.5)
from hub.kernel.lifecycle import die_with_parent
try:
    die_with_parent()
except SystemExit:
    sys.stdout.write("exited")
else:
    sys.stdout.write("kept running")
sys.stdout.flush()
"""


def test_a_process_orphaned_before_it_asks_exits_at_once():
    out = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True, timeout=30)
    assert out.stdout == "exited", out


def test_a_process_whose_parent_lives_keeps_running():
    """The control: started by a live parent (this test), it stays."""
    code = "from hub.kernel.lifecycle import die_with_parent; die_with_parent(); print('kept running')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "kept running", out
