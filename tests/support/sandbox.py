"""Programs the sandbox tests run as hostile model-written code."""

from __future__ import annotations

import hashlib
import os
import textwrap


def secret_hunt(secret: str) -> str:
    """A program that looks for `secret` in its environment, /proc and its own memory."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return textwrap.dedent(
        f"""
        import hashlib, os, re
        found = []
        def look(where, data):
            for match in re.findall(rb"sk-[0-9a-f]{{32}}", data):
                if hashlib.sha256(match).hexdigest() == {digest!r}:
                    found.append(where)
        look("os.environ", repr(dict(os.environ)).encode())
        for pid in os.listdir("/proc") + [str(os.getppid()), {str(os.getpid())!r}, "self"]:
            for name in ("environ", "cmdline"):
                try:
                    look(f"/proc/{{pid}}/{{name}}", open(f"/proc/{{pid}}/{{name}}", "rb").read())
                except OSError:
                    pass
        scanned = 0
        mem = open("/proc/self/mem", "rb", buffering=0)  # all memory, much of it the zygote's
        for line in open("/proc/self/maps"):
            span, perms = line.split()[:2]
            if perms.startswith("r"):
                start, end = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(start)
                    data = mem.read(end - start)
                except (OSError, OverflowError, ValueError):
                    continue
                scanned += len(data)
                look("memory", data)
        print(f"found={{sorted(set(found))}}")
        print(f"scanned={{scanned}}")
        print(f"home={{os.environ.get('HOME')}}")
        print(f"names={{sorted(os.environ)}}")
        """
    )
