"""rvd_front's app for a plain ``gunicorn`` when ``ravada.front.server`` is not there yet.

``gunicorn benchlib.front_wsgi:app`` with ``RAVADA_CONFIG`` set; P4 prefers the real
``rvd_front`` command and says in its results which one it measured.
"""

from ravada import config
from ravada.front import create_app

app = create_app(config.load(missing_ok=False))
