"""The machine and the versions a benchmark ran with: printed and stored with every result."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def _meminfo_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine() -> dict[str, Any]:
    """uname, CPU count and model, memory."""
    u = platform.uname()
    return {
        "uname": f"{u.system} {u.node} {u.release} {u.version} {u.machine}",
        "hostname": u.node,
        "cpus": cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": _meminfo_mb(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _libvirt_versions(uri: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        import libvirt  # type: ignore[import-not-found]
    except ImportError:
        return {"libvirt_python": "not installed here"}

    def fmt(v: int) -> str:
        return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"

    out["libvirt_python"] = fmt(libvirt.getVersion())
    if uri:
        try:
            conn = libvirt.openReadOnly(uri)
            out["libvirt"] = fmt(conn.getLibVersion())
            out["qemu"] = fmt(conn.getVersion())
            conn.close()
        except libvirt.libvirtError as exc:
            out["libvirt"] = f"unreachable ({str(exc).splitlines()[0]})"
    return out


def _qemu_binary_version() -> str | None:
    exe = shutil.which("qemu-system-x86_64")
    if not exe:
        return None
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"version (\S+)", res.stdout)
    return m.group(1) if m else None


def _ravada_version() -> str:
    """The ravada package importable here, else the one the role installs in /opt/ravada."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ravada")
    except PackageNotFoundError:
        pass
    for meta in sorted(Path("/opt/ravada/venv/lib").glob("python3*/site-packages/"
                                                         "ravada-*.dist-info/METADATA")):
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Version:"):
                return f"{line.split(':', 1)[1].strip()} (/opt/ravada/venv)"
    return "not installed here"


def versions(libvirt_uri: str | None = "qemu:///system", **extra: str) -> dict[str, str]:
    """python, libvirt, qemu and ravada versions; ``extra`` adds or overrides entries."""
    out = {"python": platform.python_version(), "python_executable": sys.executable}
    out.update(_libvirt_versions(libvirt_uri))
    if "qemu" not in out:
        qemu = _qemu_binary_version()
        out["qemu"] = qemu or "not installed here"
    out["ravada"] = _ravada_version()
    out.update({k: v for k, v in extra.items() if v})
    return out


def describe(env: dict[str, Any]) -> str:
    """A few printable lines for the header of a run."""
    m, v = env["machine"], env["versions"]
    lines = [
        f"machine : {m['uname']}",
        f"cpus    : {m['cpus']} x {m['cpu_model']}   memory: {m['memory_mb']} MiB   "
        f"load (1 min) at start: {m.get('loadavg_1m')}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "python_executable"),
    ]
    return "\n".join(lines)
