"""What the web account could make root do through /etc/ravada.conf, and a config the
daemons must not start without (issue 9, items 1 and 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ravada import config as rconfig

BIN = Path(sys.executable).parent


def base(**over: object) -> dict[str, object]:
    data: dict[str, object] = {"database": {"url": "sqlite:////tmp/x.db"},
                               "queue": {"socket": "/run/ravada/queue.sock"}}
    data.update(over)
    return data


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(rconfig.RUNTIME_DIR_ENV, "/run/ravada")
    return "/run/ravada"


@pytest.mark.parametrize("uri", [
    "qemu+ext:///system?command=/tmp/evil",
    "qemu+EXT:///system?command=/tmp/evil",
    "qemu+ext:///system",
    "test+ext:///default",
    "qemu+ssh://host/system?command=/tmp/evil",
    "qemu+ssh://host/system?keyfile=/k&Command=/tmp/evil",
    "qemu:///system?command=%2Ftmp%2Fevil",
    "qemu:///system?socket=/run/x&command=",
])
def test_uri_that_runs_a_program_is_refused(uri: str, run_dir: str) -> None:
    with pytest.raises(rconfig.ConfigError, match=r"^libvirt\.uri: .*refused"):
        rconfig.from_dict(base(libvirt={"uri": uri}))


@pytest.mark.parametrize("uri", ["qemu:///system", "test:///default", "qemu+tls://h/system",
                                 "qemu+ssh://root@h/system?keyfile=/root/.ssh/k",
                                 "qemu+unix:///system?socket=/run/libvirt/libvirt-sock"])
def test_ordinary_uris_pass(uri: str, run_dir: str) -> None:
    assert rconfig.from_dict(base(libvirt={"uri": uri})).libvirt.uri == uri


@pytest.mark.parametrize("sock", ["/tmp/queue.sock", "/etc/shadow", "/run/ravada/../x.sock",
                                  "/run/ravada", "run/ravada/queue.sock", "/run/ravadax/q.sock"])
def test_socket_outside_the_runtime_dir_is_refused(sock: str, run_dir: str) -> None:
    with pytest.raises(rconfig.ConfigError, match=r"^queue\.socket: "):
        rconfig.from_dict(base(queue={"socket": sock}))


def test_socket_in_the_runtime_dir_passes(run_dir: str, tmp_path: Path) -> None:
    assert rconfig.from_dict(base()).queue.socket == "/run/ravada/queue.sock"
    conf = tmp_path / "ravada.conf"
    conf.write_text(yaml.safe_dump(base(queue={"socket": "/tmp/q.sock"})))
    with pytest.raises(rconfig.ConfigError, match="queue.socket: must be inside the runtime "
                                                  "directory /run/ravada"):
        rconfig.load(str(conf))


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("log_level: INFO\n", "database.url: missing"),
])
def test_required_config_must_say_something(tmp_path: Path, text: str, message: str,
                                            run_dir: str) -> None:
    conf = tmp_path / "ravada.conf"
    conf.write_text(text)
    rconfig.load(str(conf))  # tools and tests: the defaults
    with pytest.raises(rconfig.ConfigError, match=message):
        rconfig.load(str(conf), required=True)
    with pytest.raises(rconfig.ConfigError, match="no such file"):
        rconfig.load(str(tmp_path / "missing.conf"), required=True)


@pytest.mark.parametrize(("prog", "rc"), [("rvd_back", 1), ("rvd_front", 2), ("rvd_console", 2)])
def test_daemons_refuse_an_empty_or_missing_config(tmp_path: Path, prog: str, rc: int) -> None:
    empty = tmp_path / "ravada.conf"
    empty.write_text("")
    for path, message in ((empty, "the file is empty"), (tmp_path / "none", "no such file")):
        r = subprocess.run([str(BIN / prog), "--config-required", "--config", str(path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == rc, r.stderr
        assert message in r.stderr and str(path) in r.stderr


def test_metrics_settings_are_checked(run_dir: str) -> None:
    with pytest.raises(rconfig.ConfigError, match=r"front\.metrics_allow\[1\]"):
        rconfig.from_dict(base(front={"metrics_allow": ["127.0.0.1", "nope"]}))
    with pytest.raises(rconfig.ConfigError, match=r"front\.metrics_token"):
        rconfig.from_dict(base(front={"metrics_token": "short"}))
    with pytest.raises(rconfig.ConfigError, match=r"front\.max_request_bytes"):
        rconfig.from_dict(base(front={"max_request_bytes": 10}))
