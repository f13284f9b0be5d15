"""Helpers for the end-to-end acceptance test (issue #5).

Everything here runs on the controller (the machine that runs molecule): network
namespaces on the docker bridge, real display clients (remote-viewer under Xvfb,
vncdotool, headless Chromium), the JSON API client and small readers for what the
test looks at inside the container (libvirt save image headers).
"""
