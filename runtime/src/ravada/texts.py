"""Texts the front can say in the reader's language: an English template and its values.

The neutral modules (hardware, policy, auth.groups, auth.totp) refuse in English for every
caller: rvd_back logs and stores that text. A :class:`Text` *is* that English string, and
also keeps its template and values, so that the front looks the template up in its
catalogue (``ravada.front.i18n.say``) and fills the values in. ``pybabel extract`` finds the
templates through the names of the classes that take them (babel.cfg / ``make messages``).
"""

from __future__ import annotations

from typing import Any


class Text(str):
    """``template % values`` in English, remembering ``template`` and ``values``."""

    template: str
    values: dict[str, Any]

    def __new__(cls, template: str, **values: Any) -> Text:
        self = super().__new__(cls, template % values if values else template)
        self.template, self.values = template, values
        return self


class Refusal(ValueError):
    """A refusal whose message is a :class:`Text` (``exc.text``)."""

    def __init__(self, template: str, **values: Any) -> None:
        self.text = Text(template, **values)
        super().__init__(self.text)
