"""Shared pieces of the ravada.vdi benchmarks (stdlib only, plus libvirt-python where present).

- :mod:`benchlib.env` -- the machine and the versions each run prints and records.
- :mod:`benchlib.stats` -- medians and percentiles.
- :mod:`benchlib.results` -- JSON results under ``bench/results/`` and the README table.
- :mod:`benchlib.api` -- a small client for rvd_front's ``/api/v1`` (through Apache or direct).
- :mod:`benchlib.loadgen` -- an open-loop HTTP load generator, run as its own process.
"""
