"""The zygote's one-time set-up: its namespaces, read-only root and memory cgroup, or the weak fallback.

Stdlib only (ctypes for unshare/setns/mount/prctl); imported by zygote.py, never by the harness.
"""

from __future__ import annotations

import errno
import os
import re
import sys

from .wire import SANDBOX_UID_BASE, SANDBOX_ZYGOTE_UID_BASE

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
# Per-mount options that must be kept when remounting (inside a user namespace they are locked).
_KEPT_MOUNT_OPTIONS = {
    "nosuid": 2,
    "nodev": 4,
    "noexec": 8,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
_DEVICES = ("null", "zero", "full", "random", "urandom")
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR, KEYCTL_GET_PERSISTENT = 1, 7, 22
KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -3, -4, -5


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

    def _keyctl(self, operation: int, *args: int) -> int:
        import platform

        number = {"x86_64": 250, "aarch64": 219, "ppc64le": 289, "s390x": 280}.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, "keyctl: unknown system call number on this machine")
        c_long = self.ctypes.c_long
        result = self.libc.syscall(c_long(number), c_long(operation), *(c_long(a) for a in args))
        if result < 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"keyctl({operation}): {os.strerror(err)}")
        return result

    def join_new_session_keyring(self) -> None:
        """Leave the harness's session keyring (its keys are readable by whoever possesses it)."""
        self._keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0)

    def start_with_clean_keyrings(self) -> None:
        """A sample's own new session keyring, and its user's keyrings emptied: a key one sample
        stored (in any keyring a later sample of this zygote could reach) is gone for the next."""
        try:
            self.join_new_session_keyring()
        except OSError as exc:
            if exc.errno == errno.ENOSYS:  # no keyrings in this kernel: nothing to carry over either
                return
            raise
        for keyring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
            self._keyctl(KEYCTL_CLEAR, keyring)
        try:  # the user's persistent keyring, where the kernel has them
            self._keyctl(KEYCTL_CLEAR, self._keyctl(KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_SESSION_KEYRING))
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise

    def drop_bounding_set(self) -> None:
        """No capability can ever be gained again, even by exec as root (needs CAP_SETPCAP now)."""
        cap = 0
        while self.libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1

    def drop_capabilities(self) -> None:
        """Give up every capability, for good (the bounding set too)."""
        self.drop_bounding_set()
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


def _enter_namespaces(iso: _Isolation, control_fds: tuple[int, int]) -> None:
    """Try every route to strong isolation, the most direct first; raise OSError naming why each failed.

    1. root with CAP_SYS_ADMIN: namespaces of its own; samples switch to an unprivileged uid.
    2. root without it (the usual container): a user namespace whose uids 0 (the zygote, once its
       read-only root is built) and 1 (samples) are, outside, unprivileged uids unique to this
       zygote, mapped by a helper left outside (which needs only CAP_SETUID and CAP_SETGID).
    3. any other user: its own user namespace, its root being that user outside.
    In 2 and 3 the zygote owns its other namespaces; each sample drops every capability."""
    libc = iso.libc
    failures = []
    if os.geteuid() == 0:
        try:
            libc.unshare(CLONE_NEWNS | CLONE_NEWNET)
            iso.uid = SANDBOX_UID_BASE + os.getpid()
            _finish(iso, "unprivileged uid")
            return
        except OSError as exc:  # nothing is irreversible before the chroot, which fails nothing after it
            iso.uid = None
            failures.append(f"as root: {exc.strerror or exc}")
        try:
            sample_uid, zygote_uid = SANDBOX_UID_BASE + os.getpid(), SANDBOX_ZYGOTE_UID_BASE + os.getpid()
            _enter_user_namespace(libc, control_fds, outside=f"0 {zygote_uid} 1\n1 {sample_uid} 1")
            iso.user_ns = True
            iso.uid = 1  # inside the namespace: not its root, and outside, unprivileged and not the zygote's
            _finish(iso, "own user namespace of unprivileged uids", take_mapped_root=True)
            return
        except OSError as exc:
            failures.append(f"user namespace as root: {exc.strerror or exc}")
            raise OSError("; ".join(failures)) from None
    try:
        _enter_user_namespace(libc, control_fds)
        iso.user_ns = True
        iso.extra_processes = 2  # our parent stub and ourselves share the sample's user id
        _finish(iso, "own user namespace, no capabilities")
    except OSError as exc:
        failures.append(f"user namespace: {exc.strerror or exc}")
        raise OSError("; ".join(failures)) from None


def _finish(iso: _Isolation, who: str, take_mapped_root: bool = False) -> None:
    libc = iso.libc
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    iso.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    # Opened in this mount namespace (a bind mount's source must be in it) and before the chroot.
    opened = _open_root_sources()
    if take_mapped_root:
        # From the unmapped uid we kept to open those, to the namespace's root: the unprivileged
        # uid outside. Our capabilities within the namespace stay, for the per-sample set-up;
        # files can be created again (the kernel refuses it to an unmapped uid).
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        libc.prctl(PR_SET_DUMPABLE, 1)
    _build_root(libc, opened)  # ends with chroot, the only step that cannot be undone: nothing fails after it
    _close_root_sources(opened)
    iso.strong = True
    iso.detail = f"pid+mount+net namespaces, read-only chroot, {who}"


def _enter_user_namespace(libc: _Libc, control_fds: tuple[int, int], outside: str | None = None) -> None:
    """Become root of a new user namespace, then PID 1 of a PID namespace it owns.

    A user maps its own uid to 0; root maps `outside` (uid_map and gid_map lines) instead,
    through a helper left in the parent namespace (a process may map only its own uid into its
    namespace itself). Until
    the caller switches to the namespace's uid 0, it keeps its own (unmapped) uid, and so the
    file access it had: enough to open a Python installation under /root.
    Only a PID namespace owned by our user namespace lets us reset, before each sample, the
    namespace our next child will get (setns), so we fork once here; the parent stays behind as
    a stub that lives and dies with us."""
    if outside is None:
        uid, gid = os.getuid(), os.getgid()
        libc.unshare(CLONE_NEWUSER)
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    else:
        _map_from_outside(libc, outside)
    libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
    pid = os.fork()
    if pid != 0:
        for fd in control_fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _map_from_outside(libc: _Libc, mapping: str) -> None:
    me = os.getpid()
    go_r, go_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"1":
                for name in ("uid_map", "gid_map"):
                    with open(f"/proc/{me}/{name}", "w") as f:
                        f.write(mapping)
                os._exit(0)
        finally:
            os._exit(1)
    os.close(go_r)
    failure = None
    try:
        libc.unshare(CLONE_NEWUSER)
    except OSError as exc:
        failure = exc
    os.write(go_w, b"0" if failure else b"1")
    os.close(go_w)
    _, status = os.waitpid(helper, 0)
    if failure is not None:
        raise failure
    if status != 0:
        raise OSError(errno.EPERM, "cannot map the user namespace's uids (needs CAP_SETUID and CAP_SETGID)")


def _python_dirs() -> list[str]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    return sorted(os.path.abspath(d) for d in dirs if d and os.path.isdir(d))


def _open_root_sources() -> tuple[dict, dict]:
    """What the read-only root is made of, opened while we may still reach it (as root: the
    Python installation can sit in a directory only root may enter, such as /root/.pyenv)."""
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
    return sources, devices


def _close_root_sources(opened: tuple[dict, dict]) -> None:
    for table in opened:
        for source in table.values():
            if isinstance(source, int):
                os.close(source)


def _build_root(libc: _Libc, opened: tuple[dict, dict]) -> None:
    """Assemble a read-only root of system and Python directories and chroot into it."""
    sources, devices = opened
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
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")


def _remount_read_only(libc: _Libc, top: str) -> None:
    """Make the mount at `top` and every mount below it read-only, nosuid (and nodev but /dev)."""
    mounts = []  # (id, parent id, mount point, options), in mount order
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            # Spaces and the like are escaped as \040 (octal); no codec lookup: it may import a
            # module, which the unprivileged uid of route 2 cannot read here.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
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
