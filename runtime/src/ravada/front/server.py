"""rvd_front: serve the broker with gunicorn (gthread workers: long polls never block others)."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from ravada import config as rconfig

THREADS_PER_WORKER = 16  # each long-poll holds a thread for up to ~10 s

log = logging.getLogger(__name__)


def prepare_for_fork(app: Any) -> int:
    """In gunicorn's master, before it forks the workers: compile every template once (each
    worker would compile it at its first page) and move everything made so far into the
    garbage collector's permanent generation (``gc.freeze``). Without it, each worker's first
    full collections walk the whole inherited heap (100-230 ms with the GIL held, measured
    in P4 runs) and copy its pages. Returns the number of templates compiled."""
    env = app.jinja_env
    names = [n for n in env.list_templates() if n.endswith((".html", ".txt", ".xml"))]
    for name in names:
        env.get_template(name)
    gc.collect()
    gc.freeze()
    return len(names)


def warm_worker(app: Any) -> None:
    """gunicorn post_worker_init: open the worker's pooled database connections now (one
    per thread for reads, one for writes) rather than all at once in its first burst."""
    try:
        app.extensions["ravada"].db.warm(THREADS_PER_WORKER, 1)
    except Exception as exc:  # the database may come later: connections are then lazy
        log.warning("database connections not opened at worker start: %s", exc)


class FrontServer(BaseApplication):  # type: ignore[misc]
    """gunicorn run programmatically with an already-built Flask app."""

    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def gunicorn_options(cfg: rconfig.Config, bind: str | None = None,
                     workers: int | None = None) -> dict[str, Any]:
    host, port = rconfig.parse_listen(bind or cfg.front.listen, "front.listen")
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": max(1, workers or cfg.front.workers),
        "worker_class": "gthread",
        "threads": THREADS_PER_WORKER,
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": cfg.log_level.lower(),
        "proc_name": "rvd_front",
        # X-Forwarded-* are handled by TrustedProxyMiddleware with front.trusted_proxies.
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
    }


def main(argv: list[str] | None = None) -> int:
    from ravada.front import create_app

    parser = argparse.ArgumentParser(prog="rvd_front", description="Ravada web broker")
    parser.add_argument("--config", help="configuration file (default /etc/ravada.conf)")
    parser.add_argument("--config-required", action="store_true",
                        help="a missing or empty configuration is an error (the unit passes it)")
    parser.add_argument("--bind", help="HOST:PORT (default front.listen)")
    parser.add_argument("--workers", type=int, help="worker processes (default front.workers)")
    parser.add_argument("--dev", action="store_true",
                        help="single-process werkzeug server with reload off (tests, debugging)")
    opts = parser.parse_args(argv)
    try:
        cfg = rconfig.load(opts.config, required=opts.config_required)
        options = gunicorn_options(cfg, opts.bind, opts.workers)
    except rconfig.ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(name)s %(message)s")
    app = create_app(cfg)
    if opts.dev:
        host, port = rconfig.parse_listen(opts.bind or cfg.front.listen)
        app.run(host=host, port=port, threaded=True, use_reloader=False)
        return 0
    prepare_for_fork(app)
    options["post_worker_init"] = lambda _worker: warm_worker(app)
    FrontServer(app, options).run()
    return 0
