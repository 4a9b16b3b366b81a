"""The log directory: created private, and nothing in it trusted.

New files get `file_mode` (default 0600) and new directories the matching
mode with search bits where the file mode has read bits (0600 -> 0700,
0640 -> 0750); the umask applies as usual.  Existing files and directories
keep their modes.

The bytes of a log directory are not trusted (SECURITY.md), and neither are
its names: every file of the format is opened without following a symbolic
link (O_NOFOLLOW: the last component is the name inside the directory), never
blocking (O_NONBLOCK: a FIFO planted under a segment's name would block an
open for reading forever) and never becoming a controlling terminal
(O_NOCTTY), and is checked to be a regular file before it is used.  Anything
else under a name of the format is a CorruptionError naming it; names that
match no pattern of the format are never opened, written or deleted."""
from __future__ import annotations

import errno
import fcntl
import os
import stat

from .errors import CorruptionError

DEFAULT_FILE_MODE = 0o600

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_file_mode(mode: object) -> int:
    """`file_mode` of `pyraftlog.open`: permission bits, owner read and write
    included (the engine must reopen its own files), no execute or special
    bits."""
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise TypeError(f"file_mode must be an int such as 0o600, not {type(mode).__name__}")
    if mode & ~0o666 or mode & 0o600 != 0o600:
        raise ValueError(f"file_mode must include owner read and write (0o600) and no bits "
                         f"outside 0o666, got {mode:#o}")
    return mode


def dir_mode(file_mode: int) -> int:
    """Directory mode matching `file_mode`: search where it may read."""
    return file_mode | (file_mode & 0o444) >> 2


def kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def not_regular(path: str, mode: int) -> CorruptionError:
    return CorruptionError(path, 0, f"not a regular file ({kind(mode)})")


def check_regular(path: str) -> bool:
    """True if `path` is a regular file (not followed if a link), False if it
    is gone; CorruptionError if it is anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode)
    return True


def open_regular(path: str, flags: int, mode: int = DEFAULT_FILE_MODE,
                 dir_fd: "int | None" = None, shown: "str | None" = None) -> int:
    """os.open of a regular file of the log: no link followed, no blocking,
    no terminal; CorruptionError (naming `shown` or `path`) for anything that
    is not a regular file."""
    name = shown or path
    try:  # looked at first, so that a device is not even opened
        st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(name, st.st_mode)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                     mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptionError(name, 0, "not a regular file (a symbolic link)") from None
        if exc.errno == errno.EISDIR:
            raise CorruptionError(name, 0, "not a regular file (a directory)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(name, st.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_subdir(path: str) -> int:
    """A descriptor of directory `path` (a directory of the format, such as
    snapshots/), refusing a symbolic link or anything not a directory."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            st = os.lstat(path)
            raise CorruptionError(path, 0, f"not a directory ({kind(st.st_mode)})") from None
        raise


def prepare(path: str, file_mode: int) -> None:
    """Creates the log directory if missing (missing parents too, as
    os.makedirs does, with the default mode: they are not the log's), mode
    `dir_mode(file_mode)`; an error naming `path` and the problem if it is
    not a directory."""
    try:
        os.makedirs(path, mode=dir_mode(file_mode), exist_ok=True)
    except FileExistsError:
        pass  # a non-directory: said below
    if not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory (pyraftlog.open needs the "
                                 "path of a log directory, new or existing)", path)
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "the log directory must be readable, writable and "
                              "searchable by this process", path)


__all__ = ["DEFAULT_FILE_MODE", "check_file_mode", "dir_mode", "check_regular", "open_regular",
           "open_subdir", "prepare", "not_regular", "kind"]
