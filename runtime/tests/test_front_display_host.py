"""Display info names a host clients can reach, even when the backend only knows 0.0.0.0."""

from __future__ import annotations

from flask import Flask

from ravada.front import web
from ravada.front.displays import display_from_result

INFO = {"host": "0.0.0.0", "password": "p" * 20, "expires": "2030-01-01T00:00:00Z",
        "spice": {"port": 5900, "tls_port": None}, "vnc": {"port": 5901, "password": "pppppppp"},
        "machine": "m"}


def test_unspecified_listen_address_becomes_the_browser_host() -> None:
    assert display_from_result(INFO, "vdi.example.org")["host"] == "vdi.example.org"
    wrapped = {"display": {**INFO, "host": "::"}}  # a clone's result carries it under "display"
    assert display_from_result(wrapped, "10.1.2.3")["host"] == "10.1.2.3"
    assert INFO["host"] == "0.0.0.0"  # the stored result is not modified


def test_a_configured_public_host_is_kept() -> None:
    info = {**INFO, "host": "desktops.example.org"}
    assert display_from_result(info, "10.1.2.3")["host"] == "desktops.example.org"
    assert display_from_result(INFO)["host"] == "0.0.0.0"  # no browser: nothing to substitute


def test_browser_host_drops_the_port() -> None:
    app = Flask(__name__)
    with app.test_request_context("/", base_url="https://vdi.example.org:8443/"):
        assert web.browser_host() == "vdi.example.org"
    with app.test_request_context("/", base_url="http://[2001:db8::7]:8081/"):
        assert web.browser_host() == "2001:db8::7"
