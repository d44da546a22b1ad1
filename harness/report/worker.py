"""Worker process that renders a share of a large run's sample pages (python -m harness.report.worker)."""

from __future__ import annotations

# The parent writes a pickled job to stdin and reads the pickled result from the file the job names.
# A plain subprocess, not multiprocessing: it never re-imports the caller's __main__ and never forks
# a process that may hold threads.
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.report.pages import render_cells


class Worker:
    """One running worker: start() returns at once, result() waits for it."""

    def __init__(self, url: str, run_id: str, max_id: int, cells: list, site: Path, counts: dict):
        self.result_path = Path(site) / f".worker-{os.getpid()}.pickle"
        job = dict(
            url=url,
            run_id=run_id,
            max_id=max_id,
            cells=cells,
            site=str(site),
            counts=counts,
            result=str(self.result_path),
        )
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the harness package
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.report.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=env,
        )
        try:
            self.proc.stdin.write(pickle.dumps(job))
            self.proc.stdin.close()
        except OSError:
            pass  # the worker died at once: result() reports it

    def result(self) -> dict:
        code = self.proc.wait()
        try:
            if code != 0 or not self.result_path.exists():
                self.stderr.seek(0)
                tail = self.stderr.read()[-2000:].decode("utf-8", "replace").strip()
                raise RuntimeError(f"report worker exited with {code}: {tail}")
            with open(self.result_path, "rb") as fh:
                return pickle.load(fh)
        finally:
            self.stderr.close()
            self.result_path.unlink(missing_ok=True)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        self.result_path.unlink(missing_ok=True)


def main() -> None:
    job = pickle.loads(sys.stdin.buffer.read())
    result = render_cells(job["url"], job["run_id"], job["max_id"], job["cells"], job["site"], job["counts"])
    tmp = job["result"] + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, job["result"])


if __name__ == "__main__":
    main()
