"""Running the harness CLI from a test: in-process (click's runner) or as a user runs it (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HARNESS = Path(sys.executable).with_name("harness")  # the installed console script


def invoke(*args, ok_codes=(0,)):
    """Run the harness CLI in-process; the exit code must be one of ok_codes."""
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok_codes, (result.output, result.exception)
    return result


def harness(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a new process: exit status, stdout and stderr as a shell sees them."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_clean_error(proc, *needles):
    """A user error: exit status 2, one line starting with "error: " naming every needle, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]
