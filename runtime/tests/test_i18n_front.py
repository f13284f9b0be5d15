# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Which language the front answers in: the user's stored choice, the login page's cookie,
the browser's Accept-Language, else English; the pickers; Spanish pages and messages."""

from __future__ import annotations

from test_front_support import World, csrf_of, login, world  # noqa: F401

from ravada.db import User

ES = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}


def _locale(w: World, name: str) -> str | None:
    with w.db.sessionmaker() as s:
        return s.query(User).filter_by(name=name).one().locale


def test_accept_language_chooses_before_login(world: World) -> None:
    c = world.app.test_client()
    page = c.get("/login", headers=ES).get_data(as_text=True)
    assert '<html lang="es">' in page and "Iniciar sesión" in page and "Log in" not in page
    page = c.get("/login", headers={"Accept-Language": "fr-FR, de;q=0.8"}).get_data(as_text=True)
    assert '<html lang="en">' in page and "Log in" in page  # no Spanish or English wanted: en
    page = c.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in page and "User name" in page


def test_login_page_picker_sets_a_cookie(world: World) -> None:
    c = world.app.test_client()
    page = c.get("/login", headers=EN).get_data(as_text=True)
    assert 'id="language-form"' in page and '<option value="es" lang="es">Español' in page
    r = c.post("/language", data={"lang": "es", "next": "/login?next=/",
                                  "csrf_token": csrf_of(c)}, headers=EN)
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/"
    assert "ravada_lang=es" in r.headers["Set-Cookie"]
    page = c.get("/login", headers=EN).get_data(as_text=True)
    assert '<html lang="es">' in page and "Nombre de usuario" in page
    # a bad choice is refused with a message, and an outside next is not followed
    r = c.post("/language", data={"lang": "xx", "csrf_token": csrf_of(c)})
    assert r.status_code == 422 and "language" in r.get_data(as_text=True)
    r = c.post("/language", data={"lang": "en", "next": "https://evil.example/",
                                  "csrf_token": csrf_of(c)})
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_account_picker_is_stored_on_the_user(world: World) -> None:
    alice = world.client("alice")
    page = alice.get("/account", headers=EN).get_data(as_text=True)
    assert "Change language" in page and _locale(world, "alice") is None
    r = alice.post("/language", data={"lang": "es", "next": "/account",
                                      "csrf_token": csrf_of(alice)}, headers=EN)
    assert r.status_code == 302 and _locale(world, "alice") == "es"
    page = alice.get("/", headers=EN).get_data(as_text=True)
    assert '<html lang="es">' in page and "Escritorios" in page and "Cerrar sesión" in page
    # another browser (no cookie, English Accept-Language): the stored choice wins after login
    other = world.app.test_client()
    assert login(other, "alice", headers=EN).status_code == 302
    page = other.get("/account", headers=EN).get_data(as_text=True)
    assert "Cuenta: alice" in page and '<option value="es" lang="es" selected>' in page
    # bob still reads English
    assert "Desktops" in world.client("bob").get("/", headers=EN).get_data(as_text=True)
