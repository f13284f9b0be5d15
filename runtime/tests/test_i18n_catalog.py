"""Every user-visible string of the front's templates is marked for translation, and the
Spanish catalogue is complete and compiled.

The template check lexes each template with Jinja (so ``{{ … }}`` and ``{% … %}`` are
recognised exactly), drops what is inside ``{% trans %}`` blocks and replaces every tag with
a placeholder, then reads the rest as HTML: a text node, or a title / aria-label /
placeholder / alt / label / data-confirm attribute, or the value of an input button, that
holds a word outside a tag is an unmarked string. Symbols, numbers and a few names (product
names, protocol names, units) are allowed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

FRONT = Path(__file__).resolve().parents[1] / "src" / "ravada" / "front"
TEMPLATES = FRONT / "templates"
TRANSLATIONS = FRONT / "translations"
PLACEHOLDER = "\ue000"  # stands for a {{ … }} or {% … %}: never a word
VISIBLE_ATTRS = {"title", "aria-label", "placeholder", "alt", "label", "data-confirm"}
BUTTON_INPUTS = {"submit", "button", "reset"}
# Words that read the same in every language: names of products, protocols and units.
ALLOWED = {"SPICE", "VNC", "TLS", "ISO", "ISOs", "SHA", "URL", "MB", "GiB", "Ctrl", "Alt",
           "Del", "Ravada", "UDF", "vv", "s", "Bearer", "Authorization", "YYYY", "MM", "DD",
           "HH", "T", "https", "debian", "iso"}
WORD = re.compile(r"[^\W\d_]+")


def _flatten(source: str) -> str:
    """The template's text with every Jinja tag replaced by PLACEHOLDER (line breaks kept)
    and the inside of {% trans %} … {% endtrans %} removed."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    out: list[str] = []
    depth = 0  # inside a trans block
    in_tag = False
    tag: list[str] = []
    for _lineno, kind, value in env.lex(source):
        if kind in ("block_begin", "variable_begin"):
            in_tag, tag = True, []
            out.append(PLACEHOLDER)
            continue
        if kind in ("block_end", "variable_end"):
            in_tag = False
            words = [t for t in tag if t.strip()]
            if words and words[0] == "trans":
                depth += 1
            elif words and words[0] == "endtrans":
                depth -= 1
            continue
        if in_tag:
            tag.append(value)
            out.append("\n" * value.count("\n"))
            continue
        if kind in ("comment_begin", "comment", "comment_end", "linecomment"):
            out.append("\n" * value.count("\n"))
            continue
        if kind == "data":
            out.append("\n" * value.count("\n") if depth else value)
    return "".join(out)


def _words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.replace(PLACEHOLDER, " ")) if w not in ALLOWED]


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._skip = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        values = dict(attrs)
        for name, value in attrs:
            visible = name in VISIBLE_ATTRS or (
                name == "value" and tag == "input"
                and (values.get("type") or "").lower() in BUTTON_INPUTS)
            if visible and value and _words(value):
                self.found.append((self.getpos()[0], f'{tag} {name}="{value.strip()}"'))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and _words(data):
            self.found.append((self.getpos()[0], data.strip().replace(PLACEHOLDER, "…")))


def unmarked(source: str) -> list[tuple[int, str]]:
    """(line, text) of each user-visible string of a template that is not marked."""
    finder = _Finder()
    finder.feed(_flatten(source))
    finder.close()
    return finder.found


def _templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


def test_the_checker_finds_unmarked_text_and_attributes() -> None:
    """The check itself: each kind of unmarked string is found, marked ones are not."""
    source = """{% extends "base.html" %}{# a comment with words #}
<h1>Machines</h1>
<p>{{ _("Marked") }} {{ name }} · 42 GiB</p>
<input placeholder="Name" title="{{ _('Fine') }}">
<img alt="Screenshot of {{ m }}">
<button aria-label="{{ _('Ok') }}">×</button>
<input type="submit" value="Save"><input type="hidden" name="x" value="not shown">
<form data-confirm="Delete {{ x }}?"></form>
{% trans %}Inside a trans block{% endtrans %}
<script>const words = "in a script";</script>
<p>{% if x %}On{% else %}{{ _("Off") }}{% endif %}</p>
"""
    found = unmarked(source)
    assert [line for line, _text in found] == [2, 4, 5, 7, 8, 11], found
    assert found[0][1] == "Machines"


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_every_template_string_is_marked(path: Path) -> None:
    found = unmarked(path.read_text(encoding="utf-8"))
    assert not found, f"unmarked strings in {path.relative_to(TEMPLATES)}: " + "; ".join(
        f"line {line}: {text!r}" for line, text in found)


def _catalog(lang: str):  # type: ignore[no-untyped-def]
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=lang)


def test_spanish_catalogue_is_complete() -> None:
    """Every message of the template (messages.pot) is in es/messages.po, translated, not
    fuzzy, with the same placeholders."""
    with open(TRANSLATIONS / "messages.pot", "rb") as fh:
        template = read_po(fh)
    es = _catalog("es")
    assert len(template) > 250
    problems = []
    for msg in template:
        if not msg.id:
            continue
        got = es.get(msg.id, msg.context)
        if got is None:
            problems.append(f"missing: {msg.id!r}")
            continue
        strings = got.string if isinstance(got.string, tuple) else (got.string,)
        if not all(strings):
            problems.append(f"untranslated: {msg.id!r}")
        if got.fuzzy:
            problems.append(f"fuzzy: {msg.id!r}")
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        wanted = set(re.findall(r"%\(\w+\)[sd]", " ".join(ids)))
        for s in strings:
            if set(re.findall(r"%\(\w+\)[sd]", s)) - wanted:
                problems.append(f"placeholders differ: {msg.id!r} -> {s!r}")
    assert not problems, "\n".join(problems)


def test_compiled_catalogue_matches_the_po() -> None:
    """The committed .mo is the compiled .po (pybabel compile was not forgotten)."""
    es = _catalog("es")
    with open(TRANSLATIONS / "es" / "LC_MESSAGES" / "messages.mo", "rb") as fh:
        mo = read_mo(fh)
    def norm(value):  # type: ignore[no-untyped-def]
        return tuple(value) if isinstance(value, (list, tuple)) else value

    po = {norm(m.id): norm(m.string) for m in es if m.id and not m.fuzzy}
    compiled = {norm(m.id): norm(m.string) for m in mo if m.id}
    assert compiled == po


STATIC = FRONT / "static"
T_CALL = re.compile(r"""\bt\(\s*"((?:[^"\\]|\\.)*)\"""")
# a text handed straight to the page: say(el, "…"), show("…"), .textContent = "…",
# new Error("…") (shown as the reason), a template literal in any of those
SHOWN_RAW = re.compile(r"""(?:\bsay\([^,()]*,\s*|\bsay\(\s*|\bshow\(\s*|\.textContent\s*=\s*|"""
                       r"""new Error\(\s*|document\.title\s*=\s*)(["`'])((?:[^\\]|\\.)*?)\1""")


def _raw_texts(source: str) -> list[str]:
    """Literals shown as they are: words outside ${…} (a unit like "s" is not a word)."""
    return [m.group(0) for m in SHOWN_RAW.finditer(source)
            if re.search(r"[A-Za-z]{3}", re.sub(r"\$\{[^}]*\}", "", m.group(2)))]


def test_checker_of_scripts_finds_raw_texts() -> None:
    sample = """say(progress, "Starting…");
show(t("Connected"));
say(el, `Request ${id} failed`);
say(p, `${data.command}: ${label} (${secs} s)`);
throw new Error(data.detail || `HTTP ${status}`);"""
    assert _raw_texts(sample) == ['say(progress, "Starting…"', "say(el, `Request ${id} failed`"]


@pytest.mark.parametrize("path", sorted(STATIC.glob("*.js")), ids=lambda p: p.name)
def test_every_script_text_is_marked_and_listed(path: Path) -> None:
    """Scripts show texts through t("…") only, and each is in SCRIPT_TEXTS (so the page
    carries its translation)."""
    from ravada.front.i18n import SCRIPT_TEXTS

    source = path.read_text(encoding="utf-8")
    raw = _raw_texts(source)
    assert not raw, f"texts shown without t() in {path.name}: {raw}"
    unlisted = [text for text in T_CALL.findall(source) if text not in SCRIPT_TEXTS]
    assert not unlisted, f"t() texts of {path.name} missing from i18n.SCRIPT_TEXTS: {unlisted}"


def test_the_wheel_carries_the_compiled_catalogues(tmp_path: Path) -> None:
    """The rvd role installs a wheel built from runtime/ on servers without Babel: the
    committed .mo files (and the scripts' i18n.js) must be inside it."""
    import subprocess
    import sys
    import zipfile

    runtime = FRONT.parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "-w", str(tmp_path),
                    str(runtime)], check=True, capture_output=True, timeout=240)
    (wheel,) = tmp_path.glob("ravada-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ravada/front/translations/es/LC_MESSAGES/messages.mo" in names
    assert "ravada/front/static/i18n.js" in names
