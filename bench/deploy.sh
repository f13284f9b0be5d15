#!/usr/bin/env bash
# Make the benchmark host and converge it: a Debian 12 systemd container with KVM named
# $RAVADA_BENCH_HOST (default ravada-bench; the docker options of
# ../shared/notes/containers.md, as `make demo` uses), deployed with site.yml and
# bench/inventory (MariaDB, admin password in group_vars), whose host follows the same
# variable: two checkouts bench side by side with two names.
#   export RAVADA_BENCH_HOST=ravada-bench   # or any free container name
#   bench/deploy.sh            # then: RAVADA_BENCH_INVENTORY=bench/inventory bench/run.sh p1 p5 p6
#   docker rm -f "$RAVADA_BENCH_HOST"  # when done
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${RAVADA_BENCH_HOST:-ravada-bench}
case "$NAME" in
    local|ssh:*|*[!A-Za-z0-9_.-]*|"")
        echo "bench/deploy.sh: RAVADA_BENCH_HOST=$NAME is not a container name" >&2; exit 2 ;;
esac
export RAVADA_BENCH_HOST=$NAME  # bench/inventory's host reads it
IMAGE=local/debian-systemd:12
docker image inspect "$IMAGE" >/dev/null 2>&1 || bash scripts/build-image.sh 12
if ! docker container inspect "$NAME" >/dev/null 2>&1; then
    docker run -d --name "$NAME" --hostname "$NAME" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_PTRACE \
        --cap-add IPC_LOCK --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
        --device /dev/kvm --device /dev/net/tun \
        "$IMAGE" /lib/systemd/systemd >/dev/null
fi
docker start "$NAME" >/dev/null
docker exec "$NAME" systemctl is-system-running --wait >/dev/null || true
"${ANSIBLE_PLAYBOOK:-.venv/bin/ansible-playbook}" -i bench/inventory site.yml
