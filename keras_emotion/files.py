"""File helpers: atomic writes (a file or folder appears under its final name complete, or
not at all) and JSON reading with errors that name the file.

A file is written under a hidden temporary name in its destination folder (the same
filesystem, so the final `os.replace` is atomic) and renamed once complete; when writing it
fails, the temporary file is removed. Its temporary name is fixed (`temp_path`), so a run that
was killed leaves a file a later run overwrites (or recognises, as preprocessing does with its
shards); two processes must not write the same file at the same time.

A folder is filled under a fresh hidden name (`.<name>.partial-<random>`) and renamed.

An output folder has one writer at a time: `OutputDirLock` (a lock file with the owner's
PID and host; a stale one, whose owner died, is taken over with a warning).

Imports neither TensorFlow nor dlib nor OpenCV: configurations and light modules use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from typing import Any, Iterator, Optional

TEMP_SUFFIX = ".tmp"


def temp_path(path: str | os.PathLike, keep_suffix: str = "") -> str:
    """Where `path` is written before it is renamed: `<folder>/.<name>.tmp`.

    The leading dot hides it and ".tmp" ends it, so no glob of finished files (such as
    `train-*.tfrecord`) matches it. Writers that insist on an extension (Keras: ".keras",
    ".weights.h5") name it in `keep_suffix`, which then stays at the end:
    `<folder>/.<name without keep_suffix>.tmp<keep_suffix>`.

    Raises:
        ValueError: the file name of `path` is empty or does not end with `keep_suffix`.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if name == keep_suffix or not name.endswith(keep_suffix):
        raise ValueError(f"{path!r}: needs a file name ending with {keep_suffix!r}")
    stem = name[: len(name) - len(keep_suffix)]
    return os.path.join(folder, f".{stem}{TEMP_SUFFIX}{keep_suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, keep_suffix: str = "") -> Iterator[str]:
    """Yields `temp_path(path, keep_suffix)` to write the file to; renames it to `path` when
    the block completes and removes it when the block raises. Creates the folder of `path`.

        with atomic_write("out/model.keras", keep_suffix=".keras") as temp:
            model.save(temp)
    """
    path = os.fspath(path)
    temp = temp_path(path, keep_suffix)
    os.makedirs(os.path.dirname(path) or os.curdir, exist_ok=True)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def write_json_atomically(path: str | os.PathLike, values) -> str:
    """Writes `values` as indented JSON plus a newline to `path`, atomically. Returns `path`.

    `values` are serialised first, so values that are not JSON write nothing. A path with a
    URL scheme ("gs://...") is written with TensorFlow's `tf.io.gfile` (imported only then),
    also through `temp_path` and a rename.
    """
    path = os.fspath(path)
    text = json.dumps(values, indent=2) + "\n"
    if "://" in path:
        _write_text_with_gfile(path, text)
    else:
        with atomic_write(path) as temp, open(temp, "w", encoding="utf-8") as file:
            file.write(text)
    return path


def read_json(path: str | os.PathLike, format_version: Optional[int | tuple] = None) -> Any:
    """The JSON value stored in the file `path`.

    Args:
        path: the file.
        format_version: when given, the value must be an object whose "format_version" is this
            (or one of these, a tuple).

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it is missing).
        ValueError: not valid JSON, or another format version (the message names the file).
    """
    try:
        with open(path, encoding="utf-8") as file:
            values = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{os.fspath(path)}: not valid JSON ({error})") from error
    if format_version is not None:
        readable = format_version if isinstance(format_version, tuple) else (format_version,)
        found = values.get("format_version") if isinstance(values, dict) else None
        if found not in readable:
            versions = " or ".join(str(version) for version in readable)
            raise ValueError(f"{os.fspath(path)}: format_version={found!r}; this library reads {versions}")
    return values


def _write_text_with_gfile(path: str, text: str) -> None:
    """`text` to `temp_path(path)` on any filesystem TensorFlow knows, then renamed to `path`."""
    import tensorflow as tf

    temp = temp_path(path)
    with tf.io.gfile.GFile(temp, "w") as file:
        file.write(text)
    tf.io.gfile.rename(temp, path, overwrite=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yields a new empty folder beside `path` to fill; renames it to `path` when the block
    completes and deletes it when the block raises.

    Args:
        path: the folder to create (its parent is created if needed). An empty folder there
            is replaced.
        overwrite: replace an existing `path`: it is moved aside, and deleted once the new
            folder is in place (moved back if that rename fails).

    Raises:
        FileExistsError: when the block completes, `path` exists and is not empty (and
            `overwrite` is False), e.g. because another process created it meanwhile; the
            new folder is deleted.
    """
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    try:
        yield partial
        _move_into_place(partial, path, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _move_into_place(partial: str, path: str, overwrite: bool) -> None:
    """Renames the folder `partial` to `path`, first moving an existing `path` aside when
    `overwrite` (deleted afterwards, restored when the rename fails)."""
    replaced = None
    if overwrite and os.path.exists(path):
        replaced = f"{partial}.replaced"
        os.rename(path, replaced)
    try:
        os.rename(partial, path)
    except OSError as error:
        if replaced is not None:
            os.rename(replaced, path)
        raise FileExistsError(
            f"{path}: cannot move the new folder into place ({error}); another process may have written it"
        ) from error
    if replaced is not None:
        shutil.rmtree(replaced)


LOCK_NAME = ".lock"


class OutputDirInUseError(RuntimeError):
    """Another live process holds the lock of an output folder (see `OutputDirLock`)."""


class OutputDirLock:
    """One writer per output folder: a lock file `<folder>/.lock` holding the owner's PID,
    host and command, created atomically (written under a temporary name, then hard-linked
    to its final name, which fails when the name exists).

        with OutputDirLock("runs/ck48", "train"):
            ...   # a second run on runs/ck48 raises OutputDirInUseError at once

    A lock whose owner is dead (same host, no process with its PID, or a process that
    started after the lock was taken) is stale: it is taken over with a warning. A lock of
    another host cannot be checked and counts as held. The lock file is removed on exit.
    """

    def __init__(self, folder: str | os.PathLike, command: str):
        self.folder = os.fspath(folder)
        self.command = command
        self.path = os.path.join(self.folder, LOCK_NAME)

    def __enter__(self) -> "OutputDirLock":
        os.makedirs(self.folder, exist_ok=True)
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "process_start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        candidate = temp_path(f"{self.path}.{os.getpid()}")
        with open(candidate, "w", encoding="utf-8") as file:
            json.dump(owner, file)
        try:
            while True:
                try:
                    os.link(candidate, self.path)
                    return self
                except FileExistsError:
                    self._take_over_if_stale()
        finally:
            os.remove(candidate)

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(FileNotFoundError):
            if _read_lock_owner(self.path).get("pid") == os.getpid():
                os.remove(self.path)

    def _take_over_if_stale(self) -> None:
        """Removes the existing lock file when its owner is dead; raises OutputDirInUseError otherwise."""
        try:
            holder = _read_lock_owner(self.path)
        except FileNotFoundError:
            return  # released meanwhile: try again
        if not _owner_is_dead(holder):
            raise OutputDirInUseError(
                f"{self.folder} is in use by another run ({holder.get('command', '?')}, PID {holder.get('pid')} "
                f"on {holder.get('host')}, since {holder.get('since')}): wait for it to end or use another "
                f"output folder; if that run is gone, delete {self.path}"
            )
        warnings.warn(
            f"{self.path}: taking over the stale lock of PID {holder.get('pid')} on {holder.get('host')} "
            f"({holder.get('command', '?')}, since {holder.get('since')}), which is no longer running",
            stacklevel=3,
        )
        # Renamed aside first, so that of two runs taking over the same stale lock only one
        # removes it (the other's rename fails and it retries against the new owner's lock).
        aside = f"{self.path}.stale-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, aside)
            os.remove(aside)


def _read_lock_owner(path: str) -> dict:
    """The owner recorded in a lock file; {} for a file that is not a lock of this module."""
    try:
        with open(path, encoding="utf-8") as file:
            owner = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _owner_is_dead(owner: dict) -> bool:
    """Whether the process recorded in a lock file is gone (checkable on this host only)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return True  # not a lock of this module
    if owner.get("host") != socket.gethostname():
        return False
    if pid == os.getpid():
        return True  # an earlier run with our PID (e.g. PID 1 of a restarted container)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    started = _process_start(pid)
    return started is not None and owner.get("process_start") not in (None, started)


def _process_start(pid: int) -> Optional[int]:
    """When process `pid` started, in clock ticks since boot (Linux); None where unknown.
    Tells a live owner from a new process that reuses its PID."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])
