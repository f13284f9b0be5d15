"""Console-script entry points; each lives with the layer it starts."""

from __future__ import annotations


def back_main() -> None:
    """rvd_back: the root daemon and the admin CLI (ravada.back.cli)."""
    from ravada.back.cli import main

    raise SystemExit(main())


def front_main() -> None:
    """rvd_front: the web broker under gunicorn (ravada.front.server)."""
    from ravada.front.server import main

    raise SystemExit(main())


def console_main() -> None:
    """rvd_console: the browser-console websocket proxy (ravada.console)."""
    from ravada.console import main

    raise SystemExit(main())
