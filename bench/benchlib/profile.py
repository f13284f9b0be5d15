"""Where the time goes: py-spy over a running process tree, summarised as text."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy executable: in bench/ (run.sh copies it there), next to this Python, on PATH."""
    for local in (Path(__file__).resolve().parent.parent / "py-spy",
                  Path(sys.executable).parent / "py-spy"):
        if local.exists():
            return str(local)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out_raw: Path,
           idle: bool = False) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` and its children for ``seconds``; collapsed stacks to ``out_raw``.

    ``idle`` keeps the samples of threads that wait (in a socket, a libvirt call, a child
    process): a wall-clock profile instead of an on-CPU one.
    """
    exe = py_spy()
    if not exe:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "250",
         *(["--idle"] if idle else []),
         "--duration", str(int(seconds)), "--format", "raw", "--output", str(out_raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    if "(" in frame and "site-packages/" in frame:
        fn, _, loc = frame.partition(" (")
        return f"{fn} ({loc.split('site-packages/')[-1]}"
    if "/src/ravada/" in frame:
        fn, _, loc = frame.partition(" (")
        return f"{fn} (ravada/{loc.split('/src/ravada/')[-1]}"
    return frame


def summarise(raw: Path, top: int = 30, focus: str | None = None) -> str:
    """Top frames by inclusive and by self samples from py-spy's collapsed output.

    With ``focus`` only the stacks holding a frame that contains it count (e.g. the worker
    threads while they run a request), and frames above it are dropped.
    """
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f]
        if focus is not None:
            at = next((i for i, f in enumerate(frames) if focus in f), None)
            if at is None:
                continue
            frames = ["(focus)", *frames[at:]]
        if not frames:
            continue
        total += n
        for f in set(frames[1:]):  # skip the process/thread label
            incl[f] += n
        self_[frames[-1]] += n
    if not total:
        return "no samples (is py-spy allowed to ptrace? needs root or CAP_SYS_PTRACE)\n"
    head = f"{total} samples" + (f" in stacks holding {focus!r}" if focus else "")
    lines = [head, "", "inclusive %  frame"]
    lines += [f"{100 * n / total:10.1f}  {f}" for f, n in incl.most_common(top)]
    lines += ["", "self %       frame"]
    lines += [f"{100 * n / total:10.1f}  {f}" for f, n in self_.most_common(top)]
    return "\n".join(lines) + "\n"
