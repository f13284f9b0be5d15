"""rvd_back: the root daemon that runs queued requests, and the admin CLI.

- :mod:`ravada.back.context` -- what a handler works with (config, db, host, firewall)
- :mod:`ravada.back.handlers` -- one function per request command
- :mod:`ravada.back.machines` -- shared machine helpers (load, state, discard half-made)
- :mod:`ravada.back.sync` -- libvirt -> DB state sync, lifecycle events, firewall reconcile
- :mod:`ravada.back.recovery` -- requests left ``working`` by a killed backend
- :mod:`ravada.back.daemon` -- the main loop, workers, timeouts, heartbeat, signals
- :mod:`ravada.back.admin` / :mod:`ravada.back.cli` -- ``rvd_back --add-user`` & co.
"""
