"""Display passwords, connection info and .vv files (parsed back as virt-viewer does)."""

from __future__ import annotations

import configparser
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ravada.display import (
    connection_info,
    format_expires,
    new_password,
    render_vv,
    valid_until,
)

CA = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ0x+abc/def==\n"
      "AAAABBBBCCCC\n-----END CERTIFICATE-----\n")
DISPLAY = {"listen": "192.0.2.10", "spice": 5900, "spice_tls": 5901, "vnc": 5902}
EXPIRES = datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC)


def info(**kw: object) -> dict:
    base = connection_info("desk-1", DISPLAY, "vdi.example.org", "Secret0123456789abcd", EXPIRES)
    base.update(kw)
    return base


def parse_ini(text: str) -> dict[str, str]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    assert cp.sections() == ["virt-viewer"]
    return dict(cp["virt-viewer"])


def parse_keyfile(text: str) -> dict[str, str]:
    """Parse with GLib's GKeyFile, the parser remote-viewer uses (unescapes values)."""
    glib = pytest.importorskip("gi.repository.GLib")
    kf = glib.KeyFile()
    kf.load_from_data(text, len(text.encode()), glib.KeyFileFlags.NONE)
    keys, _ = kf.get_keys("virt-viewer")
    return {k: kf.get_string("virt-viewer", k) for k in keys}


# -- passwords and expiry -----------------------------------------------------------------

def test_new_password() -> None:
    pwds = {new_password() for _ in range(500)}
    assert len(pwds) == 500
    for p in pwds:
        assert len(p) == 20
        assert set(p) <= set(string.ascii_letters + string.digits)
    assert len(new_password(32)) == 32
    with pytest.raises(ValueError, match="at least 16"):
        new_password(15)
    with pytest.raises(TypeError):
        new_password(True)  # type: ignore[arg-type]


def test_valid_until() -> None:
    before = datetime.now(UTC)
    until = valid_until(60)
    assert until.tzinfo is not None and until.utcoffset() == timedelta(0)
    assert before + timedelta(seconds=60) <= until <= datetime.now(UTC) + timedelta(seconds=60)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="positive"):
            valid_until(bad)
    with pytest.raises(TypeError):
        valid_until("60")  # type: ignore[arg-type]


def test_format_expires() -> None:
    assert format_expires(EXPIRES) == "2030-01-02T03:04:05Z"
    paris = timezone(timedelta(hours=1))
    assert format_expires(datetime(2030, 1, 2, 4, 4, 5, tzinfo=paris)) == "2030-01-02T03:04:05Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_expires(datetime(2030, 1, 2))


# -- connection info ----------------------------------------------------------------------

def test_connection_info_matches_contract() -> None:
    assert info() == {
        "host": "vdi.example.org",
        "password": "Secret0123456789abcd",
        "expires": "2030-01-02T03:04:05Z",
        "spice": {"port": 5900, "tls_port": 5901},
        "vnc": {"port": 5902, "password": "Secret01"},  # VNC takes 8 characters
        "machine": "desk-1",
    }
    no_tls = connection_info("m", {**DISPLAY, "spice_tls": None}, "h", "p" * 20, EXPIRES)
    assert no_tls["spice"] == {"port": 5900, "tls_port": None}
    no_key = connection_info("m", {"listen": "h", "spice": 5900, "vnc": 5901}, "h", "p" * 20,
                             EXPIRES)
    assert no_key["spice"]["tls_port"] is None
    # SPICE-TLS with defaultMode='secure': libvirt gives the domain no plain port
    secure = connection_info("m", {**DISPLAY, "spice": None}, "h", "p" * 20, EXPIRES)
    assert secure["spice"] == {"port": None, "tls_port": 5901}
    # a node's backend names its own SPICE-TLS certificate for the .vv
    node = connection_info("m", DISPLAY, "h", "p" * 20, EXPIRES, "CN=node1.example.org")
    assert node["spice"]["host_subject"] == "CN=node1.example.org"
    with pytest.raises(ValueError, match="host_subject"):
        connection_info("m", DISPLAY, "h", "p" * 20, EXPIRES, "CN=x\nport=1")


@pytest.mark.parametrize("display, match", [
    ({"spice": 5900}, "missing vnc"),
    ({"spice": "5900", "vnc": 5901}, "display.spice"),
    ({"spice": 0, "vnc": 5901}, "display.spice"),
    ({"spice": None, "vnc": 5901}, "display.spice"),
    ({"spice": 5900, "vnc": 70000}, "display.vnc"),
    ({"spice": 5900, "vnc": 5901, "spice_tls": True}, "display.spice_tls"),
])
def test_connection_info_rejects_bad_display(display: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        connection_info("m", display, "h", "p" * 20, EXPIRES)


def test_connection_info_rejects_naive_expiry_and_newlines() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        connection_info("m", DISPLAY, "h", "p" * 20, datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="host"):
        connection_info("m", DISPLAY, "h\nx", "p" * 20, EXPIRES)
    with pytest.raises(ValueError, match="password"):
        connection_info("m", DISPLAY, "h", "", EXPIRES)


# -- .vv files ----------------------------------------------------------------------------

def test_render_vv_plain() -> None:
    text = render_vv(info(), "Desk 1")
    assert text.startswith("[virt-viewer]\n") and text.endswith("\n")
    expected = {
        "type": "spice", "host": "vdi.example.org", "port": "5900",
        "password": "Secret0123456789abcd", "title": "Desk 1", "delete-this-file": "1",
        "fullscreen": "1", "release-cursor": "shift+f12", "toggle-fullscreen": "shift+f11",
        "enable-usbredir": "1", "enable-usb-autoshare": "1",
    }
    assert parse_ini(text) == expected
    assert parse_keyfile(text) == expected
    assert "tls-port" not in text and "ca=" not in text and "secure-channels" not in text


def test_render_vv_options() -> None:
    vals = parse_ini(render_vv(info(), "t", fullscreen=False, usb_redirect=False))
    assert vals["fullscreen"] == "0"
    assert vals["enable-usbredir"] == "0" and vals["enable-usb-autoshare"] == "0"


def test_render_vv_tls() -> None:
    text = render_vv(info(), "Desk 1", tls=True, ca_pem=CA,
                     host_subject="C=ES,O=Ravada,CN=vdi.example.org")
    ini = parse_ini(text)
    assert ini["tls-port"] == "5901"
    assert "port" not in ini
    assert ini["secure-channels"] == "all"
    assert ini["host-subject"] == "C=ES,O=Ravada,CN=vdi.example.org"
    # one line in the file, newlines written as \n ...
    ca_lines = [ln for ln in text.splitlines() if ln.startswith("ca=")]
    assert ca_lines == ["ca=" + CA.strip().replace("\n", "\\n")]
    # ... which GKeyFile (virt-viewer) turns back into the PEM
    assert parse_keyfile(text)["ca"] == CA.strip()
    assert parse_keyfile(text)["tls-port"] == "5901"


def test_render_vv_tls_crlf_pem_and_no_subject() -> None:
    text = render_vv(info(), "t", tls=True, ca_pem=CA.replace("\n", "\r\n"))
    assert parse_keyfile(text)["ca"] == CA.strip()
    assert "host-subject" not in text
    assert "\r" not in text


@pytest.mark.parametrize("kwargs, match", [
    ({"tls": True, "ca_pem": CA, "_info": {"spice": {"port": 5900, "tls_port": None}}},
     "no SPICE TLS port"),
    ({"tls": True}, "no CA certificate"),
    ({"tls": True, "ca_pem": ""}, "no CA certificate"),
    ({"tls": True, "ca_pem": "not a certificate"}, "no CA certificate"),
    ({"tls": True, "ca_pem": CA + "\\x"}, "ca_pem"),
    ({"tls": True, "ca_pem": CA, "host_subject": "CN=x\nport=1"}, "host_subject"),
])
def test_render_vv_refuses(kwargs: dict, match: str) -> None:
    data = info(**kwargs.pop("_info", {}))
    with pytest.raises(ValueError, match=match):
        render_vv(data, "t", **kwargs)


@pytest.mark.parametrize("field", ["host", "password"])
@pytest.mark.parametrize("evil", ["x\nport=1", "x\rport=1", "x\x00", ""])
def test_render_vv_rejects_injection_in_info(field: str, evil: str) -> None:
    with pytest.raises(ValueError, match=field):
        render_vv(info(**{field: evil}), "t")


@pytest.mark.parametrize("title", ["a\n[virt-viewer]\nhost=evil", "a\rb", "", "a\x00"])
def test_render_vv_rejects_bad_title(title: str) -> None:
    with pytest.raises(ValueError, match="title"):
        render_vv(info(), title)


def test_render_vv_missing_port() -> None:
    with pytest.raises(ValueError, match="spice.port"):
        render_vv(info(spice={"port": None, "tls_port": None}), "t")


def test_render_vv_escapes_for_gkeyfile() -> None:
    title = r" Desk \n 1	ñ é [x] = % ;#"
    text = render_vv(info(), title)
    assert len(text.splitlines()) == len(parse_ini(text)) + 1  # nothing broke a line
    assert parse_keyfile(text)["title"] == title
