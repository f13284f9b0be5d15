# ruff: noqa: F811  (pytest fixtures imported from test_back)
"""rvd_back (root) re-checks what the web account could have written: ISO names in
machine rows, and the screenshot directory it writes into (issue 9, item 1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import update
from test_back import Running, back, cfg, name  # noqa: F401

from ravada.db import Machine


def _iso(back: Running, file: str = "debian.iso") -> Path:
    path = Path(back.cfg.front.iso_dir) / file
    path.write_bytes(b"\0" * 1024)
    return path


def _machine_with_iso(back: Running, name: str) -> int:
    _iso(back)
    return back.ok("create", {"name": name, "iso": "debian.iso", "disk_gb": 1})["machine_id"]


@pytest.mark.parametrize("planted", ["/etc/passwd", "../../../etc/passwd", "..", "sub/x.iso",
                                     "passwd", "link.iso"])
def test_prepare_base_rechecks_the_iso_name_of_the_row(back: Running, name: str,
                                                       planted: str) -> None:
    """A row's ISO name goes through the request check before root hands it to libvirt."""
    mid = _machine_with_iso(back, name)
    os.symlink("/etc/passwd", Path(back.cfg.front.iso_dir) / "link.iso")
    with back.db.session() as s:  # what a compromised front can write
        s.execute(update(Machine).where(Machine.id == mid).values(iso=planted))
    error = back.fails("prepare_base", machine_id=mid)
    assert "iso" in error.lower() and ("bad iso" in error or "outside" in error), error
    xml = back.host.conn().lookupByName(name).XMLDesc(0)
    assert "/etc/passwd" not in xml
    assert not back.machine(mid).is_base


def test_prepare_base_keeps_working_when_the_iso_was_removed(back: Running, name: str) -> None:
    mid = _machine_with_iso(back, name)
    (Path(back.cfg.front.iso_dir) / "debian.iso").unlink()
    back.ok("prepare_base", machine_id=mid)
    assert back.machine(mid).is_base


def test_create_refuses_a_symlink_out_of_the_iso_dir(back: Running, name: str) -> None:
    os.symlink("/etc/passwd", Path(back.cfg.front.iso_dir) / "evil.iso")
    error = back.fails("create", {"name": name, "iso": "evil.iso", "disk_gb": 1})
    assert "leads outside" in error
    assert name not in back.guests()
    os.symlink(_iso(back, "real.iso"), Path(back.cfg.front.iso_dir) / "alias.iso")
    back.ok("create", {"name": name, "iso": "alias.iso", "disk_gb": 1})


def test_create_refuses_an_iso_dir_others_can_write(back: Running, name: str) -> None:
    _iso(back)
    os.chmod(back.cfg.front.iso_dir, 0o775)
    error = back.fails("create", {"name": name, "iso": "debian.iso", "disk_gb": 1})
    assert "must belong to root and be writable by root only" in error


def test_screenshots_are_not_world_readable(back: Running, name: str, tmp_path: Path) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("start", machine_id=mid)
    shot = Path(back.ok("screenshot", machine_id=mid)["path"])
    assert stat.S_IMODE(shot.stat().st_mode) == 0o640
    shots = shot.parent
    assert stat.S_IMODE(shots.stat().st_mode) == 0o2750
    assert shots.stat().st_gid == tmp_path.stat().st_gid  # the state directory's group
    assert sorted(os.listdir(shots)) == [f"{mid}.png"]  # no temporary left behind


def test_screenshot_dir_swapped_by_the_web_account(back: Running, name: str,
                                                   tmp_path: Path) -> None:
    """A symlink planted where the directory was is never followed by root."""
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("start", machine_id=mid)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "shots").symlink_to(elsewhere)
    error = back.fails("screenshot", machine_id=mid)
    assert "not a plain directory" in error
    assert os.listdir(elsewhere) == []
