"""What the experiment scripts share: where the binary is, how to launch
ranks on this machine, and running a command that must succeed.

Python 3 standard library only; the scripts import it from their parent
directory (experiments/).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def binary_path():
    """$ORRERY_BINARY, else the README's build: build/cli/orrery."""
    env = os.environ.get("ORRERY_BINARY")
    return env if env else str(REPO_ROOT / "build" / "cli" / "orrery")


def mpirun(ranks):
    """mpirun for `ranks` ranks here: as root it must be allowed, and more
    ranks than cores must be asked for."""
    cmd = ["mpirun", "-np", str(ranks)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if ranks > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd


def run_timed(cmd, timeout=600):
    """Runs `cmd`; exits naming it, with its stderr, when it fails.
    Returns (stdout, wall seconds)."""
    start = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - start
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}")
    return res.stdout, wall


def run(cmd, timeout=600):
    """run_timed's stdout."""
    return run_timed(cmd, timeout)[0]
