"""What the harness and its zygotes must agree on: the pipe protocol, the sandbox uids and the environment.

Stdlib only. The harness imports it as harness.graders.sandbox.wire, the zygote as zygote.py describes.
Messages are JSON objects, each framed by its length as a 4-byte big-endian unsigned integer.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

SANDBOX_UID_BASE = 0x5A000000  # far above real users; one uid per zygote's samples (base + its pid)
SANDBOX_ZYGOTE_UID_BASE = SANDBOX_UID_BASE + 0x1000000  # the zygote's own, where it gives up root (pids < 2**22)


# The largest message a zygote reads: a job is its program, tests and limits as JSON (non-ASCII
# characters escaped, so up to 12 bytes each). The harness refuses a larger job itself.
MAX_MESSAGE_BYTES = 1 << 26


def too_large_reason(size: int) -> str:
    return (
        f"program too large for the sandbox: {size} bytes with its tests as sent, "
        f"at most {MAX_MESSAGE_BYTES} ({MAX_MESSAGE_BYTES >> 20} MiB)"
    )


def _encode(message: dict) -> bytes:
    return json.dumps(message).encode()


def _send_encoded(fd: int, data: bytes) -> None:
    view = memoryview(struct.pack("!I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _send(fd: int, message: dict) -> None:
    _send_encoded(fd, _encode(message))


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


def _recv(fd: int, deadline: float | None = None, max_bytes: int = MAX_MESSAGE_BYTES) -> dict | None:
    header = _recv_exact(fd, 4, deadline)
    if header is None:
        return None
    (size,) = struct.unpack("!I", header)
    if size > max_bytes:
        raise ValueError(f"oversized message from sandbox zygote ({size} bytes)")
    body = _recv_exact(fd, size, deadline)
    return None if body is None else json.loads(body)


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
