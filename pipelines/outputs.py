"""One run's claim on an output directory, and how its results replace the last.

Every run that writes ``--output`` (``autoenc score``, ``autoenc evaluate``):

1. takes the directory's lock (``OutputLock``), so that a second run on the same
   output fails at once with a clear message instead of both overwriting each
   other; the lock dies with its process, so a killed run never blocks the next;
2. deletes the success marker (``summary.json`` / ``evaluation.json``): from
   now until this run succeeds, nothing claims the directory holds a finished
   result (the previous results stay where they are, untouched);
3. writes everything under its own attempt directory ``.attempt-<run id>/``
   (what a killed run left there is deleted by the next run, which holds the
   lock);
4. checks its counts, then ``commit``s: on a local disk each result directory
   is swapped in by two renames (the old one moved aside, the new one moved in,
   the old one deleted), so a reader sees the old directory, briefly none, or the
   new one, never a mix; on object stores, which have no directory rename, the
   old files are deleted and the new ones moved in file by file;
5. writes the success marker last, by a write-then-rename (``io.write_bytes``),
   naming the run and listing every result file with its row count.

On an object store (``gs://``, ``s3://``) the lock is a lease object renewed
every minute by the running process and taken over when it is ten minutes
stale, checked again at commit time; without an atomic create-if-absent in
Beam's filesystem API, two runs starting within the same second could both
take it. Use one output per scheduled job there.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
import threading
import time

from autoenc.errors import BusyError

from . import io

LOCK_FILE = ".lock"
ATTEMPT_PREFIX = ".attempt-"
OLD_PREFIX = ".old-"
# Object stores: the lease is renewed this often and taken over when older.
LEASE_RENEW_S = 60.0
LEASE_STALE_S = 600.0


RUN_ID_LENGTH = len("20260101T000000Z-000000")


def new_run_id() -> str:
    """A run id: UTC time, then a random suffix; sorts by start time."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _owner(run_id: str) -> dict:
    return {
        "run_id": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "renewed": time.time(),
    }


def _busy(directory: str, owner: dict | None, what: str) -> BusyError:
    who = (
        f"run {owner.get('run_id')} (process {owner.get('pid')} on {owner.get('host')}, started "
        f"{owner.get('started_at')})"
        if owner
        else "another run"
    )
    return BusyError(
        f"{directory} is in use by {who}. Two runs writing one {what} would overwrite each "
        f"other's results; wait for that run to finish, or choose another {what}."
    )


class OutputLock:
    """An exclusive claim on a directory, held while a run writes into it.

    Args:
        directory: the directory (created if needed).
        run_id: this run's id, recorded in the lock for the message a second run gets.
        what: how the directory is named to the user (``--output``).
        local: use the local lock (``fcntl.flock``; released by the kernel when
            the process dies); ``None``: for local paths on systems that have it.
    """

    def __init__(self, directory: str, run_id: str, *, what: str = "--output", local: bool | None = None):
        self.directory = directory
        self.run_id = run_id
        self.what = what
        self.path = io.join(directory, LOCK_FILE)
        if local is None:
            local = io.is_local(directory) and _has_flock()
        self.local = local
        self._fd = None
        self._stop = None

    def acquire(self) -> OutputLock:
        io.makedirs(self.directory)
        if self.local:
            self._acquire_local()
        else:
            self._acquire_lease()
        return self

    def _acquire_local(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_json_fd(fd)
            os.close(fd)
            raise _busy(self.directory, owner, self.what) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner(self.run_id)).encode(), 0)
        self._fd = fd

    def _read_lease(self) -> dict | None:
        try:
            return json.loads(io.read_bytes(self.path).decode())
        except Exception:  # absent, or written half by a process that died
            return None

    def _acquire_lease(self) -> None:
        owner = self._read_lease()
        if owner and time.time() - float(owner.get("renewed", 0)) < LEASE_STALE_S:
            raise _busy(self.directory, owner, self.what)
        io.write_bytes(self.path, json.dumps(_owner(self.run_id)).encode())
        owner = self._read_lease()
        if not owner or owner.get("run_id") != self.run_id:
            raise _busy(self.directory, owner, self.what)
        self._stop = threading.Event()
        threading.Thread(target=self._renew, daemon=True, name="autoenc-lease").start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            owner = self._read_lease()
            if not owner or owner.get("run_id") != self.run_id:
                return
            owner["renewed"] = time.time()
            io.write_bytes(self.path, json.dumps(owner).encode())

    def check(self) -> None:
        """Raises ``BusyError`` when this run no longer holds the lock."""
        if self.local:
            if self._fd is None:
                raise _busy(self.directory, None, self.what)
            return
        owner = self._read_lease()
        if not owner or owner.get("run_id") != self.run_id:
            raise _busy(self.directory, owner, self.what)

    def release(self) -> None:
        if self.local:
            if self._fd is not None:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
            return
        if self._stop is not None:
            self._stop.set()
            self._stop = None
            owner = self._read_lease()
            if owner and owner.get("run_id") == self.run_id:
                io.delete_tree(self.path)


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def _read_json_fd(fd) -> dict | None:
    try:
        return json.loads(os.pread(fd, 65536, 0).decode() or "null")
    except (OSError, ValueError):
        return None


def is_free(directory: str) -> bool:
    """True when no live process holds ``directory``'s local lock (also when it
    has none). Remote directories: always False (their leases are not probed)."""
    if not (io.is_local(directory) and _has_flock()):
        return False
    path = io.join(directory, LOCK_FILE)
    if not os.path.exists(path):
        return True
    import fcntl

    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class OutputRun:
    """One run writing ``output`` (see the module docstring). Use as a context
    manager: on an error the attempt directory is deleted and the lock released.

    Args:
        output: the output directory.
        markers: success markers to delete at the start (written by ``finish``).
        local_lock: passed to ``OutputLock`` (tests use False to run the
            object-store lease on a local disk).
    """

    def __init__(self, output: str, *, markers: tuple[str, ...], local_lock: bool | None = None):
        self.output = output.rstrip("/") or output
        self.run_id = new_run_id()
        self.markers = markers
        self.attempt_dir = io.join(self.output, ATTEMPT_PREFIX + self.run_id)
        self.lock = OutputLock(self.output, self.run_id, local=local_lock)

    def __enter__(self) -> OutputRun:
        self.lock.acquire()
        try:
            for marker in self.markers:
                io.delete_tree(io.join(self.output, marker))
            # A marker write killed before its rename left a temporary file.
            io.remove_temporaries(self.output)
            # We hold the lock: attempt directories of other runs are what runs
            # that died left behind. A result moved aside by a run killed
            # between the two renames of its commit is put back.
            for name in _hidden_entries(self.output):
                if name.startswith(ATTEMPT_PREFIX):
                    io.delete_tree(io.join(self.output, name))
                elif name.startswith(OLD_PREFIX):
                    target = io.join(self.output, name[len(OLD_PREFIX) + RUN_ID_LENGTH + 1 :])
                    if io.is_local(target) and not os.path.lexists(target):
                        os.rename(io.join(self.output, name), target)
                    else:
                        io.delete_tree(io.join(self.output, name))
            io.makedirs(self.attempt_dir)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, kind, value, traceback):
        # Whether the run succeeded or failed, its attempt directory goes: what
        # it held was committed, or is not a result.
        try:
            io.delete_tree(self.attempt_dir)
        finally:
            self.lock.release()
        return False

    def attempt(self, *parts: str) -> str:
        """A path under this run's attempt directory."""
        return io.join(self.attempt_dir, *parts)

    def commit(self, names: tuple[str, ...]) -> None:
        """Moves ``attempt/<name>/`` to ``output/<name>/`` for each name,
        replacing what was there (see the module docstring)."""
        self.lock.check()
        for name in names:
            source = self.attempt(name)
            target = io.join(self.output, name)
            io.makedirs(source)
            if io.is_local(target):
                old = io.join(self.output, f"{OLD_PREFIX}{self.run_id}-{name}")
                moved = os.path.lexists(target)
                if moved:
                    os.rename(target, old)
                try:
                    os.rename(source, target)
                except BaseException:
                    if moved:  # put the previous result back
                        os.rename(old, target)
                    raise
                io.delete_tree(old)
            else:
                _replace_remote(source, target)

    def finish(self, marker: str, data: bytes) -> str:
        """Writes the success marker ``output/<marker>`` (last of all); returns its path."""
        self.lock.check()
        path = io.join(self.output, marker)
        io.write_bytes(path, data)
        return path


def _hidden_entries(directory: str) -> list[str]:
    if io.is_local(directory):
        return [e for e in os.listdir(directory) if e.startswith(".")] if os.path.isdir(directory) else []
    from apache_beam.io.filesystems import FileSystems

    names = set()
    for m in FileSystems.match([io.join(io.literal(directory), ".*", "**")])[0].metadata_list:
        names.add(m.path[len(directory.rstrip("/")) + 1 :].split("/", 1)[0])
    return sorted(names)


def _replace_remote(source: str, target: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    old = [path for path, _ in io.list_files(target)]
    if old:
        FileSystems.delete([io.literal(p) for p in old])
    new = [path for path, _ in io.list_files(source)]
    if new:
        FileSystems.rename(new, [io.join(target, p.rsplit("/", 1)[-1]) for p in new])
