"""Tests for harness.graders.sandbox: every protection is attacked for real, and the host is checked after.

The attacks run as untrusted programs inside the sandbox; the assertions look at the host
(files, processes, a loopback listener, the test process's own environment) and at the verdict.
Protections that need namespaces are skipped, with the reason, where the sandbox has only weak
isolation. The other isolation paths run in child processes: weak (root without CAP_SYS_ADMIN,
via setpriv) and unprivileged user namespaces (uid 65534).
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.sandbox import secret_hunt

from harness.graders.sandbox import Limits, Outcome, Sandbox, default_sandbox, run_tests

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
HUMANEVAL = SHARED / "datasets" / "humaneval" / "HumanEval.jsonl.gz"

SECRET_NAMES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN")
SECRET = "sk-" + secrets.token_hex(16)  # what a leaked key would look like: "sk-" + 32 hex digits


@pytest.fixture(scope="module")
def sandbox():
    """One sandbox for the module, started while the harness process holds API keys."""
    saved = {name: os.environ.get(name) for name in SECRET_NAMES}
    os.environ.update({name: SECRET for name in SECRET_NAMES})
    try:
        with Sandbox(workers=2) as box:
            yield box
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def strong(sandbox):
    """Skip unless samples really run in their own namespaces (PID 1 of their own PID namespace)."""
    probe = sandbox.run("import os", "assert os.getpid() == 1")
    if not probe.passed:
        pytest.skip("sandbox runs with weak isolation here (needs root or user namespaces)")


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def reported(outcome: Outcome, key: str) -> str:
    """A value the sample printed as 'key=value' on its own line."""
    for line in outcome.output.splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"sample did not report {key!r}; output was {outcome.output[:500]!r}")


# ------------------------------------------------------------------------------------------
# Verdicts and the API contract
# ------------------------------------------------------------------------------------------

ADD_RIGHT = "def add(a, b):\n    return a + b\n"
ADD_WRONG = "def add(a, b):\n    return a - b\n"
ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_correct_program_passes_and_output_is_captured(sandbox):
    outcome = sandbox.run(ADD_RIGHT + "print('hello from the program')", ADD_TESTS + "print('tests done')")
    assert outcome.status == "passed" and outcome.passed
    assert outcome.reason == ""
    assert "hello from the program" in outcome.output and "tests done" in outcome.output
    assert outcome.duration_s > 0


def test_failed_assertion_names_the_exception_and_test_line(sandbox):
    outcome = sandbox.run(ADD_WRONG, ADD_TESTS)
    assert outcome.status == "failed" and not outcome.passed
    assert outcome.reason == "AssertionError at test line 1"
    assert "AssertionError" in outcome.output


def test_syntax_error_in_program_is_failed_with_reason(sandbox):
    outcome = sandbox.run("def add(a, b) return a + b", ADD_TESTS)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("SyntaxError") and "program line 1" in outcome.reason


def test_exception_in_tests_is_failed_with_type_and_message(sandbox):
    outcome = sandbox.run(ADD_RIGHT, "assert add(1, 1) == 2\nraise KeyError('missing')")
    assert outcome.status == "failed"
    assert outcome.reason == "KeyError: 'missing' at test line 2"


def test_forked_children_do_not_report_for_the_sample(sandbox):
    # A child that falls off the end of the program runs the tests too; only the sample's own
    # process may report, so the child neither passes nor garbles the verdict.
    program = ADD_RIGHT + "import os\nchild = os.fork()\nif child:\n    os.waitpid(child, 0)\n"
    assert sandbox.run(program, ADD_TESTS).passed
    outcome = sandbox.run(program.replace("a + b", "a - b"), ADD_TESTS)
    assert outcome.reason == "AssertionError at test line 1"


def test_program_and_tests_share_one_module_namespace(sandbox):
    program = "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\nSEEN = []\n"
    tests = "SEEN.append(P(3))\nassert SEEN[0].x == 3\nassert __name__ != '__main__'"
    assert sandbox.run(program, tests).passed


def test_submit_returns_a_future_without_waiting(sandbox):
    future = sandbox.submit("import time\ntime.sleep(0.5)", "pass")
    assert isinstance(future, concurrent.futures.Future)
    assert not future.done()  # the sample sleeps; submit must not have waited for it
    assert future.result().passed


def test_submit_is_thread_safe(sandbox):
    def grade(i: int) -> Outcome:
        return sandbox.submit(f"def f():\n    return {i}\n", f"assert f() == {i}").result()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(grade, range(40)))
    assert all(o.passed for o in outcomes)


def test_limits_defaults_and_per_suite_overrides():
    limits = Limits()
    assert limits.wall_s == 10.0 and limits.memory_bytes == 1 << 30
    suite = limits.merged({"wall_s": 30, "memory_bytes": 512 << 20})
    assert suite.wall_s == 30.0 and isinstance(suite.wall_s, float)
    assert suite.memory_bytes == 512 << 20 and suite.cpu_s == limits.cpu_s
    assert limits.merged(None) == limits and limits.merged({}) == limits
    with pytest.raises(ValueError, match="wall_seconds"):
        limits.merged({"wall_seconds": 3})
    with pytest.raises(ValueError, match="positive"):
        Limits(wall_s=0)
    with pytest.raises(ValueError, match="number"):
        limits.merged({"processes": "many"})


def test_run_tests_uses_one_shared_default_sandbox():
    assert default_sandbox() is default_sandbox()
    assert run_tests(ADD_RIGHT, ADD_TESTS).passed


def test_closed_sandbox_refuses_new_work():
    box = Sandbox(workers=1)
    assert box.run("x = 1", "assert x == 1").passed
    box.close()
    box.close()  # idempotent
    with pytest.raises(RuntimeError):
        box.submit("x = 1", "pass")


# ------------------------------------------------------------------------------------------
# A pass needs the unforgeable completion signal: every exit trick is failed
# ------------------------------------------------------------------------------------------

MARKERS = "[b'P', b'passed', b'PASSED', b'RP', b'OK', b'ok\\n', b'1', b'0', b'{\"passed\": true}', b'RP' + b'0' * 32]"
EXIT_TRICKS = {
    "exit(0)": "exit(0)",
    "sys.exit(0)": "import sys\nsys.exit(0)",
    "raise SystemExit": "raise SystemExit(0)",
    "os._exit(0)": "import os\nos._exit(0)",
    "atexit os._exit(0)": "import atexit, os\natexit.register(os._exit, 0)",
    "atexit prints passed": "import atexit\natexit.register(print, 'passed')",
    "close sys.stdout": "import sys\nsys.stdout.close()\nsys.stderr.close()",
    "close fd 1 and 2": "import os\nos.close(1)\nos.close(2)",
    "print passed": "print('passed')\nprint('OK')\nprint('All tests passed')",
    "print passed then _exit": "import os\nprint('passed', flush=True)\nos._exit(0)",
    "markers to every fd then _exit": (
        "import os\nfor fd in range(64):\n    for m in " + MARKERS + ":\n"
        "        try:\n            os.write(fd, m)\n        except OSError:\n            pass\nos._exit(0)"
    ),
    "exit during the tests": "import sys\n_add = add\ndef add(a, b):\n    sys.exit(0)",
    "_exit during the tests": "import os\ndef add(a, b):\n    os._exit(0)",
    "thread exits mid-test": "import os, threading, time\nthreading.Timer(0, os._exit, (0,)).start()\ntime.sleep(0.1)",
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "kill itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "replace AssertionError": "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})",
}


@pytest.mark.parametrize("trick", sorted(EXIT_TRICKS))
def test_exit_tricks_do_not_pass(sandbox, trick):
    outcome = sandbox.run(ADD_WRONG + EXIT_TRICKS[trick] + "\n", ADD_TESTS)
    assert outcome.status == "failed", (trick, outcome)


def test_the_exit_tricks_cannot_turn_a_failure_around_but_correct_code_still_passes(sandbox):
    # Control for the test above: the same harmless tricks with a correct add() do pass.
    for trick in ("atexit prints passed", "print passed", "close fd 1 and 2"):
        assert sandbox.run(ADD_RIGHT + EXIT_TRICKS[trick] + "\n", ADD_TESTS).passed, trick


# ------------------------------------------------------------------------------------------
# A completion cannot make itself pass: the runner's tools are bound, the nonce is out of reach
# ------------------------------------------------------------------------------------------

STRIP_ASSERTS = textwrap.dedent(
    """
    import ast, builtins
    _compile = builtins.compile
    def compile(source, filename, mode, *args, **kwargs):
        tree = _compile(source, filename, mode, ast.PyCF_ONLY_AST) if isinstance(source, str) else source
        tree.body = [node for node in tree.body if not isinstance(node, ast.Assert)] or [ast.Pass()]
        return _compile(ast.fix_missing_locations(tree), filename, mode)
    builtins.compile = compile
    """
)
# Everything a program can reach by walking frames or the heap: a 32-hex-digit value is taken for
# the nonce and sent as a pass; every lock found is released, in case one of them signals the end.
NONCE_HUNT = textwrap.dedent(
    """
    import gc, os, re, sys, threading
    release_locks = True
    seen, candidates, locks = set(), [], []
    def look(value, depth=0):
        if id(value) in seen or depth > 3:
            return
        seen.add(id(value))
        if isinstance(value, (bytes, str)):
            text = value.encode() if isinstance(value, str) else value
            candidates.extend(re.findall(rb"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", text))
        elif isinstance(value, (list, tuple, set, frozenset)):
            for v in list(value)[:10000]:
                look(v, depth + 1)
        elif isinstance(value, dict):
            for v in list(value.values())[:10000]:
                look(v, depth + 1)
        elif hasattr(value, "release") and hasattr(value, "acquire"):
            locks.append(value)
        elif hasattr(value, "args") and hasattr(value, "func"):  # functools.partial
            look(value.args, depth + 1)
    frames = [sys._getframe()]
    try:
        frames += list(sys._current_frames().values())
    except Exception as exc:
        print("current_frames refused:", type(exc).__name__)
    for frame in frames:
        while frame is not None:
            look(dict(frame.f_locals))
            frame = frame.f_back
    try:
        for obj in gc.get_objects():
            look(obj)
    except Exception as exc:
        print("gc refused:", type(exc).__name__)
    for lock in locks if release_locks else []:
        for _ in range(3):
            try:
                lock.release()
            except RuntimeError:
                pass
    print("candidates", len(candidates), "locks", len(locks), flush=True)
    if candidates:
        os.write(3, b"P" + candidates[0])
        os._exit(0)
    """
)
JUMP_OVER_ASSERTS = textwrap.dedent(
    """
    import sys
    def tracer(frame, event, arg):
        if frame.f_code.co_filename != "<test>":
            return None
        def jump(frame, event, arg):
            if event == "line" and frame.f_lineno < 3:
                frame.f_lineno = 3
            return jump
        return jump
    sys.settrace(tracer)
    """
)
DISARM_THE_AUDIT_HOOK = (
    textwrap.dedent(
        """
    import gc, sys
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if getattr(getattr(value, "__code__", None), "co_name", "") == "_refuse_introspection":
                try:
                    value.__code__ = (lambda event, args: None).__code__
                except Exception as exc:
                    print("disarming refused:", type(exc).__name__)
        frame = frame.f_back
    """
    )
    + NONCE_HUNT
)
SELF_PASS = {
    "disarm the audit hook, then hunt": DISARM_THE_AUDIT_HOOK,
    "replace builtins.exec": "import builtins\nbuiltins.exec = lambda *args, **kwargs: None",
    "compile strips asserts": STRIP_ASSERTS,
    "nonce from frames and heap": NONCE_HUNT,
    "nonce hunt during the tests": "def add(a, b):\n" + textwrap.indent(NONCE_HUNT, "    ") + "    return 0\n",
    "trace jumps over asserts": JUMP_OVER_ASSERTS,
    "replace builtins the tests use": "import builtins\nbuiltins.abs = lambda x: 0",
}


@pytest.mark.parametrize("attack", sorted(SELF_PASS))
def test_a_wrong_program_cannot_make_itself_pass(sandbox, attack):
    tests = "assert abs(add(2, 3) - 5) < 1e-6\nassert abs(add(-1, 1)) < 1e-6\npass\n"
    outcome = sandbox.run(ADD_WRONG + SELF_PASS[attack], tests)
    assert outcome.status == "failed", (attack, outcome)


def test_the_self_pass_attacks_leave_correct_programs_passing(sandbox):
    # Control for the test above: the hunt runs to its end (finding nothing) and a correct add()
    # still passes (unless it releases the locks it found: that ends the sample as failed); a
    # program may use gc, threads and locks of its own.
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\npass\n"
    hunt = sandbox.run(ADD_RIGHT + NONCE_HUNT.replace("release_locks = True", "release_locks = False"), tests)
    assert hunt.passed, hunt
    assert "current_frames refused: PermissionError" in hunt.output and "gc refused: PermissionError" in hunt.output
    assert "candidates 0" in hunt.output
    mine = "import gc, threading\ngc.collect()\nlock = threading.Lock()\nwith lock:\n    pass\n"
    assert sandbox.run(ADD_RIGHT + mine, tests).passed
    assert sandbox.run(ADD_RIGHT + "import builtins\nbuiltins.exec = None", tests).passed


def test_each_sample_starts_with_empty_keyrings():
    # Keys one sample stores in any keyring it can reach are gone for the next sample of its zygote.
    store = textwrap.dedent(
        """
        import ctypes, os, platform
        libc = ctypes.CDLL(None, use_errno=True)
        add_key = {"x86_64": 248, "aarch64": 217}.get(platform.machine())
        for name, ring in (("session", -3), ("user", -4), ("user-session", -5)):
            key = libc.syscall(ctypes.c_long(add_key), b"user", f"harness-{name}".encode(), b"1",
                               ctypes.c_long(1), ctypes.c_long(ring))
            print(name, "stored" if key > 0 else f"refused {os.strerror(ctypes.get_errno())}")
        """
    )
    look = textwrap.dedent(
        """
        import ctypes, os, platform
        libc = ctypes.CDLL(None, use_errno=True)
        keyctl = {"x86_64": 250, "aarch64": 219}.get(platform.machine())
        for name, ring in (("session", -3), ("user", -4), ("user-session", -5)):
            found = libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(10), ctypes.c_long(ring), b"user",
                                 f"harness-{name}".encode(), ctypes.c_long(0))  # KEYCTL_SEARCH
            print(name, "FOUND" if found > 0 else "gone")
        """
    )
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("system call numbers known for x86_64 and aarch64 only")
    with Sandbox(workers=1) as box:  # one zygote: every sample is forked from the same one
        stored = box.run(store, "pass")
        assert stored.passed, stored
        if "stored" not in stored.output:
            pytest.skip(f"the kernel keeps no keys for samples here: {stored.output}")
        found = box.run(look, "pass")
    assert found.passed, found
    for line in stored.output.splitlines():
        if line.endswith("stored"):
            assert f"{line.split()[0]} gone" in found.output, (stored.output, found.output)


def test_an_oversized_program_gets_a_verdict_of_its_own(sandbox):
    from harness.graders.sandbox.wire import MAX_MESSAGE_BYTES

    huge = "x = 1\n" + "#" * (70 << 20) + "\n"
    assert len(huge) > MAX_MESSAGE_BYTES
    pids = [worker.proc.pid for worker in sandbox._pool if worker.proc is not None]
    outcome = sandbox.run(huge, "assert x == 1")
    assert outcome.status == "failed"
    assert "too large" in outcome.reason and str(MAX_MESSAGE_BYTES >> 20) in outcome.reason
    # Non-ASCII is escaped on the way: what counts is the size as sent, not the length in characters.
    wide = "x = '" + "\u20ac" * (MAX_MESSAGE_BYTES // 5) + "'\n"
    assert sandbox.run(wide, "pass").status == "failed"
    assert sandbox.run("x = 1", "assert x == 1").passed
    assert [worker.proc.pid for worker in sandbox._pool if worker.proc is not None][: len(pids)] == pids


# ------------------------------------------------------------------------------------------
# Processes: fork storm, daemonised grandchild, killing the parent
# ------------------------------------------------------------------------------------------


def test_fork_storm_is_contained_and_fully_killed(sandbox, strong):
    bomb = textwrap.dedent(
        """
        import os
        print(f"uid={os.getuid()}", flush=True)
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """
    )
    outcome = sandbox.run(bomb, "pass", Limits(wall_s=1.5, processes=16))
    assert outcome.status == "timeout"
    assert processes_of(int(reported(outcome, "uid"))) == []
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes


def test_process_limit_binds_even_though_harness_is_root(sandbox, strong):
    program = "import os\nfor _ in range(20):\n    if os.fork() == 0:\n        import time; time.sleep(5)"
    outcome = sandbox.run(program, "pass", Limits(processes=8))
    assert outcome.status == "failed"
    assert "BlockingIOError" in outcome.reason


def test_daemonised_grandchild_dies_with_the_sample(sandbox, strong):
    daemon = textwrap.dedent(
        """
        import os, time
        ready_r, ready_w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:                # the grandchild: a classic double-forked daemon
                os.write(ready_w, b"x")
                while True:
                    time.sleep(1)
            os._exit(0)
        os.read(ready_r, 1)                   # the daemon is up and running
        print(f"uid={os.getuid()}")
        """
    )
    outcome = sandbox.run(daemon, "pass")
    assert outcome.passed
    assert processes_of(int(reported(outcome, "uid"))) == []


def test_killing_the_parent_harms_neither_harness_nor_other_samples(sandbox, strong):
    running = {w: w.proc.pid for w in sandbox._pool if w.proc is not None}
    zygotes = list(running.values())
    attack = textwrap.dedent(
        f"""
        import os, signal
        for target in [os.getppid(), {os.getpid()}, *{zygotes!r}, 1]:
            for how in (os.kill, os.killpg):
                try:
                    how(target, signal.SIGKILL)
                except OSError as exc:
                    print(how.__name__, target, exc)
        os.kill(-1, signal.SIGKILL)             # everything this uid may signal
        """
    )
    outcome = sandbox.run(attack, "pass")
    assert outcome.status in ("failed", "passed")  # whatever it did to itself, it is a verdict
    assert all(w.proc is not None and w.proc.pid == pid for w, pid in running.items())  # none was lost
    assert sandbox.run(ADD_RIGHT, ADD_TESTS).passed


HARNESS_DIES_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from harness.graders.sandbox import Limits, Sandbox
    box = Sandbox(workers=1)
    box.run("pass", "pass")
    print(box._pool[0].proc.pid, flush=True)
    future = box.submit("import os, time\\nprint('running', flush=True)\\ntime.sleep(600)", "pass", Limits(wall_s=600))
    while not future.running():
        pass
    import time
    time.sleep(0.5)                                   # the sample is asleep inside the sandbox now
    os.kill(os.getpid(), signal.SIGKILL)              # the harness dies without closing anything
    """
)


def test_sandbox_processes_die_with_the_harness(strong):
    from harness.graders.sandbox import SANDBOX_UID_BASE

    harness = subprocess.run([sys.executable, "-c", HARNESS_DIES_SCRIPT, str(REPO)], capture_output=True, text=True)
    assert harness.returncode == -9, harness.stderr
    zygote = int(harness.stdout.split()[0])
    for _ in range(200):  # the zygote notices within moments; the sample would sleep for 600 s
        if not os.path.exists(f"/proc/{zygote}") and not processes_of(SANDBOX_UID_BASE + zygote):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{zygote}")
    assert processes_of(SANDBOX_UID_BASE + zygote) == []


# ------------------------------------------------------------------------------------------
# Time, memory, files, output
# ------------------------------------------------------------------------------------------


def test_infinite_loop_ignoring_signals_is_killed_from_outside(sandbox):
    program = textwrap.dedent(
        """
        import signal
        for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGXCPU):
            signal.signal(sig, signal.SIG_IGN)
        signal.alarm(0)
        while True:
            pass
        """
    )
    outcome = sandbox.run(program, "pass", Limits(wall_s=1.0))
    assert outcome.status == "timeout"
    assert outcome.reason == "timed out after 1.0 s"


def test_sleeping_forever_hits_the_wall_limit(sandbox):
    outcome = sandbox.run("import time\ntime.sleep(3600)", "pass", Limits(wall_s=1.0))
    assert outcome.status == "timeout"


def test_cpu_limit(sandbox):
    outcome = sandbox.run("while True:\n    pass", "pass", Limits(cpu_s=1, wall_s=60))
    assert outcome.status == "timeout"
    assert "CPU time limit" in outcome.reason


@pytest.mark.parametrize(
    "bomb",
    ["x = bytearray(64 << 30)", "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))"],
    ids=["one huge allocation", "growing until refused"],
)
def test_memory_bomb_is_refused(sandbox, bomb):
    outcome = sandbox.run(bomb, "pass", Limits(memory_bytes=256 << 20))
    assert outcome.status == "failed"
    assert outcome.reason.startswith("memory limit")


def test_memory_bomb_spread_over_processes_is_refused(sandbox, strong):
    if not all(w.hello.get("cgroup") for w in sandbox._pool if w.proc is not None):
        pytest.skip("no writable memory cgroup here: memory is limited per process only")
    bomb = textwrap.dedent(
        """
        import os, time
        children = []
        for _ in range(6):                     # each stays under the per-process limit...
            pid = os.fork()
            if pid == 0:
                ballast = b"x" * (150 << 20)
                time.sleep(0.5)
                os._exit(0)
            children.append(pid)
        codes = [os.waitpid(pid, 0)[1] for pid in children]
        """
    )
    outcome = sandbox.run(bomb, "assert codes == [0] * 6", Limits(memory_bytes=256 << 20))
    assert outcome.status == "failed"  # ...but not all of them together
    assert outcome.reason.startswith("memory limit")


def test_file_size_limit(sandbox):
    program = "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (4 << 20))"
    outcome = sandbox.run(program, "pass", Limits(file_size_bytes=1 << 20))
    assert outcome.status == "failed"
    assert "File too large" in outcome.reason


def test_open_files_limit(sandbox):
    program = "handles = [open('/dev/null') for _ in range(1000)]"
    outcome = sandbox.run(program, "pass", Limits(open_files=32))
    assert outcome.status == "failed"
    assert "Too many open files" in outcome.reason


def test_gigabytes_of_output_are_truncated_and_the_verdict_stands(sandbox):
    program = textwrap.dedent(
        """
        import os
        chunk = b"y" * (1 << 20)
        for _ in range(512):                   # 1 GiB through stdout and stderr
            os.write(1, chunk)
            os.write(2, chunk)
        """
    )
    limits = Limits(output_bytes=8 << 10, wall_s=120)
    outcome = sandbox.run(ADD_RIGHT + program, ADD_TESTS, limits)
    assert outcome.passed
    assert len(outcome.output.encode()) <= limits.output_bytes
    assert outcome.output.startswith("yyyy") and "output truncated" in outcome.output


def test_endless_output_times_out_with_bounded_capture(sandbox):
    program = "import sys\nwhile True:\n    sys.stdout.write('z' * 65536)"
    outcome = sandbox.run(program, "pass", Limits(wall_s=1.0))
    assert outcome.status == "timeout"
    assert len(outcome.output.encode()) <= Limits().output_bytes


# ------------------------------------------------------------------------------------------
# File system, network, environment
# ------------------------------------------------------------------------------------------


@pytest.fixture
def victims(tmp_path):
    """Files the sandbox must neither change nor delete: one it can see (/etc), one it cannot."""
    visible_dir = Path("/etc") / f"harness-sandbox-victim-{secrets.token_hex(4)}"
    try:
        visible_dir.mkdir()
    except PermissionError:
        pytest.skip("needs root to plant a victim file in /etc")
    (visible_dir / "keep.txt").write_text("precious")
    hidden = tmp_path / "keep.txt"
    hidden.write_text("precious")
    yield visible_dir, hidden
    shutil.rmtree(visible_dir, ignore_errors=True)
    for stray in ("/etc/harness-sandbox-evil", "/usr/lib/harness-sandbox-evil"):
        if os.path.exists(stray):
            os.remove(stray)


def test_cannot_write_or_delete_outside_its_directory(sandbox, strong, victims):
    visible_dir, hidden = victims
    attack = textwrap.dedent(
        f"""
        import os, shutil
        attempts = [
            lambda: shutil.rmtree({str(visible_dir)!r}),
            lambda: os.remove({str(visible_dir / "keep.txt")!r}),
            lambda: open({str(visible_dir / "keep.txt")!r}, "w").write("owned"),
            lambda: os.rename({str(visible_dir / "keep.txt")!r}, "/etc/harness-sandbox-evil"),
            lambda: os.chmod({str(visible_dir / "keep.txt")!r}, 0o777),
            lambda: open("/etc/harness-sandbox-evil", "w").write("owned"),
            lambda: open("/usr/lib/harness-sandbox-evil", "w").write("owned"),
            lambda: os.remove({str(hidden)!r}),
            lambda: open({str(hidden)!r}, "w").write("owned"),
            lambda: shutil.rmtree({str(hidden.parent)!r}),
        ]
        for number, attempt in enumerate(attempts):
            try:
                attempt()
                print(f"attempt {{number}} SUCCEEDED")
            except OSError as exc:
                print(f"attempt {{number}} blocked: {{exc.strerror}}")
        with open("mine.txt", "w") as f:     # its own directory is writable
            f.write("fine")
        print(f"cwd={{os.getcwd()}}")
        """
    )
    outcome = sandbox.run(attack, "assert open('mine.txt').read() == 'fine'")
    assert outcome.passed, outcome
    assert "SUCCEEDED" not in outcome.output
    assert outcome.output.count("blocked") == 10
    assert (visible_dir / "keep.txt").read_text() == "precious"
    assert oct((visible_dir / "keep.txt").stat().st_mode & 0o777) != oct(0o777)
    assert hidden.read_text() == "precious"
    assert not os.path.exists("/etc/harness-sandbox-evil")
    assert not os.path.exists("/usr/lib/harness-sandbox-evil")


def test_no_way_back_to_privileges(sandbox, strong):
    attack = textwrap.dedent(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for name, flags in (("user", 0x10000000), ("mount", 0x20000), ("net", 0x40000000)):
            ok = libc.unshare(flags) == 0
            print(name, "UNSHARED" if ok else "refused:", os.strerror(ctypes.get_errno()))
        ok = libc.mount(b"tmpfs", b"/etc", b"tmpfs", 0, None) == 0
        print("mount", "MOUNTED" if ok else "refused")
        for uid in (0, 1000):
            try:
                os.setuid(uid)
                print("setuid", uid, "SWITCHED")
            except OSError:
                print("setuid", uid, "refused")
        """
    )
    outcome = sandbox.run(attack, "pass")
    assert outcome.passed, outcome
    assert outcome.output.count("refused") == 6, outcome.output


def test_sysv_shared_memory_does_not_outlive_the_sample(sandbox, strong):
    import ctypes

    key = 0x5A000000 | secrets.randbelow(1 << 20)
    program = f"import ctypes\nassert ctypes.CDLL(None).shmget({key}, 4096, 0o1666) >= 0"
    assert sandbox.run(program, "pass").passed  # created it, with IPC_CREAT and mode 0666
    assert ctypes.CDLL(None).shmget(key, 0, 0) == -1  # not on the host
    assert sandbox.run("import ctypes", f"assert ctypes.CDLL(None).shmget({key}, 0, 0) == -1").passed


def test_ordinary_programs_still_work_inside(sandbox):
    program = textwrap.dedent(
        """
        import json, os, subprocess, tempfile
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            json.dump({"k": 1}, f)
        open("/dev/null", "w").write("discarded")
        print("a lone surrogate \\udcff and some bytes", b"\\xff")   # printing never fails a sample
        assert len(open("/dev/urandom", "rb").read(16)) == 16
        listing = subprocess.run(["ls", os.path.dirname(f.name)], capture_output=True, text=True).stdout
        """
    )
    assert sandbox.run(program, "assert os.path.basename(f.name) in listing").passed


def test_each_sample_gets_a_private_temporary_directory(sandbox, strong):
    name = f"harness-sandbox-leak-{secrets.token_hex(4)}"
    first = sandbox.run(f"open('/tmp/{name}', 'w').write('x')\nimport os\nprint(f'cwd={{os.getcwd()}}')", "pass")
    assert first.passed
    assert not os.path.exists(f"/tmp/{name}")  # not the host's /tmp
    second = sandbox.run("import os", f"assert not os.path.exists('/tmp/{name}')")
    assert second.passed  # nor the previous sample's


def test_loopback_listener_is_unreachable(sandbox, strong):
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp.settimeout(0.0)
    udp.settimeout(0.0)
    attack = textwrap.dedent(
        f"""
        import socket
        for attempt in ("tcp", "udp", "tcp localhost"):
            try:
                if attempt == "udp":
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.sendto(b"leak", ("127.0.0.1", {udp.getsockname()[1]}))
                else:
                    host = "localhost" if "localhost" in attempt else "127.0.0.1"
                    s = socket.create_connection((host, {tcp.getsockname()[1]}), timeout=2)
                    s.sendall(b"leak")
                print(attempt, "CONNECTED")
            except OSError as exc:
                print(attempt, "unreachable:", exc)
        """
    )
    try:
        outcome = sandbox.run(attack, "pass")
        assert "CONNECTED" not in outcome.output, outcome.output
        assert outcome.output.count("unreachable:") == 3
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)
    finally:
        tcp.close()
        udp.close()


def test_api_keys_are_nowhere_to_be_found(sandbox, strong):
    assert os.environ["OPENAI_API_KEY"] == SECRET  # the harness process does hold the key
    hunt = secret_hunt(SECRET)
    outcome = sandbox.run(hunt, "pass")
    assert outcome.passed, outcome
    assert reported(outcome, "found") == "[]"
    assert int(reported(outcome, "scanned")) > 10 << 20  # it really read its whole memory
    assert SECRET not in outcome.output
    assert not set(SECRET_NAMES) & set(json.loads(reported(outcome, "names").replace("'", '"')))
    assert reported(outcome, "home") == "/tmp"


def test_the_secret_hunt_finds_a_key_where_there_is_one(tmp_path):
    # Control for the test above: the same hunt, run unsandboxed with the key in its environment.
    script = tmp_path / "hunt.py"
    script.write_text(secret_hunt(SECRET))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={"OPENAI_API_KEY": SECRET, "PATH": os.environ.get("PATH", "")},
    )
    found = [line for line in result.stdout.splitlines() if line.startswith("found=")][0]
    assert "os.environ" in found and "/proc/self/environ" in found and "memory" in found


def test_harness_processes_are_invisible(sandbox, strong):
    program = "import os\nprint('pids=' + str(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))"
    tests = f"import pathlib\nassert not pathlib.Path('/proc/{os.getpid()}/environ').exists()"
    outcome = sandbox.run(program, tests)
    assert outcome.passed, outcome
    assert reported(outcome, "pids") == "[1]"  # itself, and nothing of the host


# ------------------------------------------------------------------------------------------
# A grading run mixing attacks and good samples completes, and the good ones pass
# ------------------------------------------------------------------------------------------


def test_mixed_batch_of_attacks_and_good_samples(sandbox, strong):  # kill(-1) is no test for weak mode
    quick = Limits(wall_s=2.0, processes=16)
    attacks = [
        ("while True:\n    pass", "pass"),
        ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", "pass"),
        ("x = bytearray(64 << 30)", "pass"),
        ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", "pass"),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)", "assert False"),
        (ADD_WRONG + "import os\nprint('passed')\nos._exit(0)", ADD_TESTS),
        (ADD_WRONG + "exit(0)", ADD_TESTS),
        ("import os\nos.close(1)\nos.close(2)\n" + ADD_WRONG, ADD_TESTS),
    ]
    good = [("def square(x):\n    return x * x\n", f"assert square({i}) == {i * i}") for i in range(24)]
    batch = [(p, t, False) for p, t in attacks] + [(p, t, True) for p, t in good]
    batch = [batch[(i * 7) % len(batch)] for i in range(len(batch))]  # interleave attacks and good ones
    futures = [(sandbox.submit(p, t, quick), expected) for p, t, expected in batch]
    outcomes = [(f.result(), expected) for f, expected in futures]
    assert len(outcomes) == len(attacks) + len(good)
    assert all(o.passed for o, expected in outcomes if expected)
    assert not any(o.passed for o, expected in outcomes if not expected)
    assert all(o.status in ("passed", "failed", "timeout") for o, _ in outcomes)
    from harness.graders.sandbox import SANDBOX_UID_BASE

    for worker in sandbox._pool:  # nothing of any sample is left running
        assert worker.proc is not None and processes_of(SANDBOX_UID_BASE + worker.proc.pid) == []


def test_humaneval_canonical_solutions_all_pass(sandbox):
    if not HUMANEVAL.exists():
        pytest.skip(f"HumanEval data not found at {HUMANEVAL}")
    with gzip.open(HUMANEVAL, "rt") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    futures = [
        sandbox.submit(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})")
        for p in problems
    ]
    failures = [(p["task_id"], f.result()) for p, f in zip(problems, futures, strict=True) if not f.result().passed]
    assert len(problems) == 164
    assert failures == []


# ------------------------------------------------------------------------------------------
# Root without CAP_SYS_ADMIN gets strong isolation; without any route, untrusted code is refused
# ------------------------------------------------------------------------------------------

WEAK_SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, time
    sys.path.insert(0, sys.argv[1])
    logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(message)s")
    from harness.graders.sandbox import Sandbox
    marker = sys.argv[2]
    daemon = '''
    import os, time
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            print(f"daemon={os.getpid()}", flush=True)
            os.write(w, b"x")
            while True:
                time.sleep(1)
        os._exit(0)
    os.read(r, 1)
    '''
    with Sandbox(workers=2) as box:
        print("refuses", box.refuses())
        program = f"open({marker!r}, 'a').write('ran')\\ndef f():\\n    return 1"
        outcomes = [box.run(program, "assert f() == 1") for _ in range(4)]
        print("statuses", [o.status for o in outcomes])
        print("reason", outcomes[0].reason)
        secret = box.run("import os", "assert 'OPENAI_API_KEY' not in os.environ")
        print("secret", secret.status)
        d = box.run(daemon, "pass")
        if d.passed:
            pid = int([l for l in d.output.splitlines() if l.startswith("daemon=")][0][7:])
            try:
                os.kill(pid, 0)
                print("daemon ALIVE")
            except ProcessLookupError:
                print("daemon dead")
    """
)
# Root without the capabilities of every route to strong isolation: CAP_SYS_ADMIN (route 1) and
# CAP_SETUID/CAP_SETGID (route 2, mapping a user namespace's uids).
WITHOUT_ANY_ROUTE = [
    "setpriv",
    "--bounding-set",
    "-sys_admin,-setuid,-setgid",
    "--inh-caps",
    "-sys_admin,-setuid,-setgid",
]


def run_without_isolation(tmp_path: Path, unsafe: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to take capabilities away from a child process")
    script, marker = tmp_path / "weak.py", tmp_path / "sample-ran.txt"
    script.write_text(WEAK_SCRIPT)
    env = dict(os.environ, OPENAI_API_KEY=SECRET)
    env.pop("HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION", None)
    if unsafe is not None:
        env["HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION"] = unsafe
    command = WITHOUT_ANY_ROUTE + [sys.executable, str(script), str(REPO), str(marker)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120), marker


def test_without_strong_isolation_untrusted_code_is_refused_by_default(tmp_path):
    for unsafe in (None, "0", "yes please"):  # only an explicit 1/true/yes/on opts in
        result, marker = run_without_isolation(tmp_path, unsafe if unsafe != "yes please" else "maybe")
        assert result.returncode == 0, result.stderr
        assert "statuses ['error', 'error', 'error', 'error']" in result.stdout, result.stdout
        assert "secret error" in result.stdout
        reason = reported_line(result.stdout, "reason")
        assert "untrusted code refused" in reason and "HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION=1" in reason
        assert reported_line(result.stdout, "refuses") == reason
        errors = [line for line in result.stderr.splitlines() if line.startswith("LOG ERROR")]
        assert len(errors) == 1 and "untrusted code refused" in errors[0], result.stderr  # said once
        assert not marker.exists()  # not one sample ran


def test_weak_isolation_only_when_asked_for_as_unsafe(tmp_path):
    result, marker = run_without_isolation(tmp_path, "1")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("LOG WARNING")]
    assert len(warnings) == 1 and "WEAK isolation" in warnings[0], result.stderr
    assert "refuses None" in result.stdout
    assert "statuses ['passed', 'passed', 'passed', 'passed']" in result.stdout
    assert "secret passed" in result.stdout
    assert "daemon dead" in result.stdout, result.stdout
    assert marker.read_text() == "ran" * 4


def reported_line(stdout: str, key: str) -> str:
    return next(line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith(key + " "))


# The attacks of this module that need strong isolation, run again by a root process without
# CAP_SYS_ADMIN (the usual container): route 2, a user namespace of unprivileged uids.
CONTAINER_ATTACKS = (
    "api_keys_are_nowhere_to_be_found or harness_processes_are_invisible or cannot_write_or_delete "
    "or loopback_listener or no_way_back or fork_storm or daemonised or killing_the_parent or sysv "
    "or private_temporary or process_limit_binds or empty_keyrings or make_itself_pass or in_a_container"
)


def test_in_a_container_the_user_namespace_route_is_taken(sandbox):
    if not os.environ.get("HARNESS_TEST_WITHOUT_SYS_ADMIN"):
        pytest.skip("run by test_root_without_cap_sys_admin_still_gets_strong_isolation, without CAP_SYS_ADMIN")
    effective = int(next(line for line in open("/proc/self/status") if line.startswith("CapEff:")).split()[1], 16)
    assert os.geteuid() == 0 and not effective & (1 << 21)  # root, and CAP_SYS_ADMIN really is gone
    assert sandbox.isolation() == {"isolation": "strong", "detail": sandbox.isolation()["detail"]}
    assert "own user namespace of unprivileged uids" in sandbox.isolation()["detail"]


def test_root_without_cap_sys_admin_still_gets_strong_isolation():
    if os.environ.get("HARNESS_TEST_WITHOUT_SYS_ADMIN"):
        pytest.skip("already running without CAP_SYS_ADMIN")
    if os.geteuid() != 0 or not shutil.which("capsh"):
        pytest.skip("needs root and capsh (Debian: libcap2-bin) to drop CAP_SYS_ADMIN")
    env = dict(os.environ, HARNESS_TEST_WITHOUT_SYS_ADMIN="1", PYTHONPATH=str(REPO))
    env.pop("HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION", None)
    inner = (
        f"{sys.executable} -m pytest -q -p no:cacheprovider -rs {Path(__file__).resolve()} "
        f"-k '{CONTAINER_ATTACKS}' -o addopts=''"
    )
    result = subprocess.run(
        ["capsh", "--drop=cap_sys_admin", "--", "-c", inner],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "skipped" not in summary and "passed" in summary, result.stdout[-3000:]
    assert int(summary.split(" passed")[0].split()[-1]) >= 19, summary


def test_a_code_suite_is_refused_before_any_request_without_strong_isolation(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to take capabilities away from a child process")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION", None)
    command = WITHOUT_ANY_ROUTE + [
        sys.executable,
        "-m",
        "harness",
        "suites",
        "validate",
        "code-functions",
        "--limit",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "suite 'code-functions' runs model-written code: untrusted code refused" in lines[0]
    assert "HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION=1" in lines[0]
    env["HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION"] = "1"
    allowed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert allowed.returncode == 0, (allowed.stdout, allowed.stderr)
    assert "2/2 reference answers graded correct" in allowed.stdout


USERNS_SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    sys.path.insert(0, sys.argv[1])
    logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(message)s")
    from harness.graders.sandbox import Limits, Sandbox
    refused = "try:\\n    {}\\nexcept OSError as e:\\n    assert e.errno == {}\\nelse:\\n    assert False"
    checks = {
        "pid 1": ("import os", "assert os.getpid() == 1"),
        "no capabilities": ("import os", "assert 'CapEff:\\t0000000000000000' in open('/proc/self/status').read()"),
        "no network": ("import socket", refused.format("socket.create_connection(('127.0.0.1', 9), 1)", 101)),
        "read-only": ("import os", refused.format("open('/etc/evil', 'w')", 30)),
        "no secrets": ("import os", "assert 'OPENAI_API_KEY' not in os.environ"),
        "own /proc": ("import os", "assert [p for p in os.listdir('/proc') if p.isdigit()] == ['1']"),
        "own /tmp": ("open('/tmp/x', 'w').write('x')", "assert open('/tmp/x').read() == 'x'"),
    }
    with Sandbox(workers=2) as box:
        for name, (program, tests) in checks.items():
            print(name, box.run(program, tests).status)
        bomb = "import os\\nfor _ in range(20):\\n    if os.fork() == 0:\\n        import time; time.sleep(3)"
        print("process limit", box.run(bomb, "pass", Limits(processes=4)).status)
    """
)


def unprivileged_python() -> str:
    """An interpreter (3.11+) that uid 65534 may run and that can import this checkout."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a child as an unprivileged user")
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-c",
                "import subprocess, sys; sys.path.insert(0, sys.argv[1]); import harness.graders.sandbox; "
                "subprocess.run([sys.executable, '-c', 'pass'], check=True)",
                str(REPO),
            ],
            capture_output=True,
        )
        if probe.returncode == 0:
            return python
    pytest.skip("no Python 3.11+ that uid 65534 can run with this checkout readable")


def test_unprivileged_user_still_gets_namespaces():
    python = unprivileged_python()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENAI_API_KEY": SECRET, "HOME": "/"}
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", USERNS_SCRIPT, str(REPO)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if "user namespace" in result.stderr and "WEAK" in result.stderr:
        pytest.skip("user namespaces are disabled on this machine")
    assert result.returncode == 0, result.stderr
    assert "WEAK" not in result.stderr
    lines = result.stdout.splitlines()
    for name in ("pid 1", "no capabilities", "no network", "read-only", "no secrets", "own /proc", "own /tmp"):
        assert f"{name} passed" in lines, result.stdout
    assert "process limit failed" in lines


def test_weak_isolation_setting_on_the_constructor(monkeypatch):
    monkeypatch.delenv("HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION", raising=False)
    with Sandbox(workers=1) as box:
        assert box.unsafe_weak_isolation is False  # the documented default: refuse
    monkeypatch.setenv("HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION", "1")
    with Sandbox(workers=1) as box:
        assert box.unsafe_weak_isolation is True
    with Sandbox(workers=1, unsafe_weak_isolation=False) as box:
        assert box.unsafe_weak_isolation is False
    monkeypatch.setenv("HARNESS_SANDBOX_ALLOW_WEAK", "1")  # the old name, which did not say unsafe
    monkeypatch.delenv("HARNESS_SANDBOX_UNSAFE_WEAK_ISOLATION")
    with Sandbox(workers=1) as box:
        assert box.unsafe_weak_isolation is False
        assert box.refuses() is None  # strong isolation here: nothing to refuse
