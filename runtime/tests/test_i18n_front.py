# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Which language the front answers in: the user's stored choice, the login page's cookie,
the browser's Accept-Language, else English; the pickers; Spanish pages and messages."""

from __future__ import annotations

import pytest
from test_front_support import PASSWORD, World, csrf_of, login, world  # noqa: F401

from ravada import policy
from ravada.db import User
from ravada.front.i18n import say

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


def _token(w: World, name: str) -> dict[str, str]:
    c = w.app.test_client()
    r = c.post("/api/v1/tokens", json={"name": name, "password": PASSWORD})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def _set_locale(w: World, name: str, lang: str) -> None:
    with w.db.session() as s:
        s.query(User).filter_by(name=name).one().locale = lang


def test_a_spanish_user_gets_spanish_api_errors(world: World) -> None:
    _set_locale(world, "alice", "es")
    es, en = _token(world, "alice"), _token(world, "bob")
    # a refusal of a service (FrontError), whatever the Accept-Language says
    r = world.app.test_client().get("/api/v1/machines/999999", headers={**es, **EN})
    assert r.status_code == 404 and r.json == {"error": "not_found",
                                               "detail": "no existe la máquina 999999"}
    r = world.app.test_client().get("/api/v1/machines/999999", headers=en)
    assert r.json["detail"] == "no machine 999999"
    # a validation message with its values
    r = world.app.test_client().get("/api/v1/requests?limit=99999", headers=es)
    assert r.status_code in (400, 422) and "debe estar entre" in r.json["detail"], r.json
    # werkzeug's own refusals are ours and translated too
    r = world.app.test_client().get("/api/v1/nothing-here", headers=es)
    assert r.status_code == 404 and r.json["detail"].startswith("No hay nada en esta dirección")
    # an anonymous client that asks for Spanish gets the login refusal in Spanish
    r = world.app.test_client().post("/api/v1/tokens", headers=ES,
                                     json={"name": "alice", "password": "wrong"})
    assert r.status_code == 401
    assert r.json["detail"] == "Nombre de usuario o contraseña incorrectos."


def test_a_spanish_admin_gets_spanish_pages_and_flashes(world: World) -> None:
    _set_locale(world, "admin", "es")
    admin = world.client("admin")
    page = admin.get("/admin/machines", headers=EN).get_data(as_text=True)
    assert '<html lang="es">' in page and "Nueva máquina" in page and "en marcha" in page
    assert "New machine" not in page
    r = admin.post("/admin/groups", data={"name": "aula1", "csrf_token": csrf_of(admin)},
                   follow_redirects=True)
    assert "Grupo aula1 creado." in r.get_data(as_text=True)
    r = admin.post("/admin/users", follow_redirects=True, data={
        "name": "alice", "password": "long enough", "csrf_token": csrf_of(admin)})
    assert "ya existe un usuario llamado alice" in r.get_data(as_text=True)
    r = admin.post(f"/admin/machines/{world.alice_vm}", follow_redirects=True,
                   data={"action": "remove", "csrf_token": csrf_of(admin)})
    assert "Eliminar necesita una confirmación" in r.get_data(as_text=True)


def test_refusals_of_the_neutral_modules_are_translated(world: World) -> None:
    """Groups, hardware, policies and 2FA refuse in English (rvd_back logs that); the front
    says them in the reader's language."""
    _set_locale(world, "admin", "es")
    admin = world.client("admin")

    def post(url: str, **data: str) -> str:
        r = admin.post(url, data={**data, "csrf_token": csrf_of(admin)}, follow_redirects=True)
        return r.get_data(as_text=True)

    assert "Grupo aula1 creado." in post("/admin/groups", name="aula1")
    assert "ya existe un grupo llamado aula1" in post("/admin/groups", name="aula1")
    page = post(f"/admin/machines/{world.alice_vm}/hardware/size", memory_mb="1", vcpus="1")
    assert "memory_mb: un número entero de" in page, page[page.find('class="flash'):][:300]
    page = post(f"/admin/machines/{world.base}/policy", pool_size="1", pool_started="2",
                next="machine")
    assert "pool_started (2) no puede superar pool_size (1)" in page
    # the same refusal as rvd_back (and any caller outside a request) sees it: English
    with pytest.raises(policy.PolicyError) as caught:
        policy.check_policy(policy.Policy(), {"pool_size": 1, "pool_started": 2})
    assert str(caught.value) == "pool_started (2) cannot exceed pool_size (1)"
    assert say(caught.value) == str(caught.value)
