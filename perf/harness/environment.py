"""The machine under the benchmarks: this process's memory, the file system
and block device of the work directory, what a results file records."""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
import tempfile
from typing import Optional

from report import OUT_DIR

from .config import Config

PERF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(PERF_DIR)
TMPFS_TYPES = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}


def proc_status() -> dict:
    """VmRSS, RssAnon, RssFile, VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def fs_type(path: str) -> str:
    """File system type of ``path`` from /proc/mounts (longest mount prefix)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def default_base_dir() -> str:
    """A temporary directory on a real disk: /var/tmp, else /tmp, else perf/out."""
    for cand in ("/var/tmp", "/tmp", OUT_DIR):
        os.makedirs(cand, exist_ok=True) if cand == OUT_DIR else None
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and fs_type(cand) not in TMPFS_TYPES:
            return cand
    return tempfile.gettempdir()


def block_device(path: str) -> Optional[str]:
    """Name of the block device holding ``path`` (``vda``, ``nvme0n1p2``), if any."""
    try:
        st = os.stat(path)
        link = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
        return os.path.basename(link)
    except OSError:
        return None


def environment(cfg: Config) -> dict:
    env = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "dir": cfg.base_dir,
        "fs_type": fs_type(cfg.base_dir),
        "device": block_device(cfg.base_dir),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "workdirs"},
    }
    try:
        import pyraftlog

        env["pyraftlog"] = getattr(pyraftlog, "__version__", "?")
        env["pyraftlog_file"] = getattr(pyraftlog, "__file__", None)
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        env["pyraftlog"] = f"not importable: {e!r}"
    return env


def ensure_importable() -> None:
    """Let ``import pyraftlog`` find the work tree when it is not installed."""
    try:
        import pyraftlog  # noqa: F401
    except ImportError:
        if REPO_DIR not in sys.path:
            sys.path.insert(0, REPO_DIR)
