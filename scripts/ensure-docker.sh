#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
# Installs Debian's docker.io when dockerd is missing and, as the machine has no
# systemd as PID 1, starts dockerd in the background and waits for it.
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/dockerd.log}
timeout=${DOCKERD_TIMEOUT:-60}

if docker info >/dev/null 2>&1; then
    echo "ensure-docker: engine already answering"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "ensure-docker: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "ensure-docker: starting dockerd (log: $log)"
    # setsid: the daemon must outlive the calling shell (make, CI step)
    setsid nohup dockerd >"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$timeout"); do
    if docker info >/dev/null 2>&1; then
        echo "ensure-docker: engine ready"
        exit 0
    fi
    sleep 1
done
echo "ensure-docker: dockerd did not answer within ${timeout}s; last log lines:" >&2
tail -n 30 "$log" >&2 || true
exit 1
