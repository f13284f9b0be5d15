#!/usr/bin/env bash
# Run the ravada.vdi benchmarks and refresh bench/README.md:
#   bench/run.sh                 # all: queue p4 p1 p5 p6
#   bench/run.sh p4 p1           # some
# From the repository root on the controller (the machine with .venv). P1 and P5 run ON the
# deployed host (the raw-libvirt baseline needs its libvirtd): bench/ is copied there and
# run with its /usr/bin/python3, then the results are copied back. Where the host is:
#   RAVADA_BENCH_HOST=ravada-demo      a docker container (default: the `make demo` one)
#   RAVADA_BENCH_HOST=ssh:root@host    over ssh/scp
#   RAVADA_BENCH_HOST=local            this machine is the host
# RAVADA_URL (default https://127.0.0.1, as seen from the host), RAVADA_ADMIN_USER (admin),
# RAVADA_ADMIN_PASSWORD (default: rvd_admin_password of the inventory's group_vars/ravada.yml).
# P6 re-runs site.yml with RAVADA_BENCH_INVENTORY (default inventories/local).
# RAVADA_BENCH_PROFILE=1: P1 and P4 also profile when their targets are met.
# bench/deploy.sh makes and converges the container $RAVADA_BENCH_HOST (default ravada-bench;
# inventory bench/inventory, whose host follows the same variable):
#   bench/deploy.sh && RAVADA_BENCH_HOST=ravada-bench RAVADA_BENCH_INVENTORY=bench/inventory \
#       bench/run.sh p1 p5 p6
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
HOST=${RAVADA_BENCH_HOST:-ravada-demo}
INVENTORY=${RAVADA_BENCH_INVENTORY:-inventories/local}
export RAVADA_URL=${RAVADA_URL:-https://127.0.0.1}
export RAVADA_ADMIN_USER=${RAVADA_ADMIN_USER:-admin}
if [ -z "${RAVADA_ADMIN_PASSWORD:-}" ]; then  # the inventory's (demo/bench inventories only)
    RAVADA_ADMIN_PASSWORD=$(awk '/^rvd_admin_password:/ {print $2}' \
        "$INVENTORY/group_vars/ravada.yml" 2>/dev/null || true)
fi
export RAVADA_ADMIN_PASSWORD=${RAVADA_ADMIN_PASSWORD:-}
# The commit measured, recorded in every result (runs on a host have no checkout): HEAD, and
# "+dirty" when runtime/ or bench/ (results and README aside) differ from it.
if [ -z "${RAVADA_BENCH_COMMIT:-}" ]; then
    RAVADA_BENCH_COMMIT=$(git rev-parse HEAD)
    if git status --porcelain -- runtime bench | grep -v -e bench/results/ -e bench/README.md \
            | grep -q .; then
        RAVADA_BENCH_COMMIT="$RAVADA_BENCH_COMMIT+dirty"
    fi
fi
export RAVADA_BENCH_COMMIT

on_host() {  # on_host SCRIPT ARGS... : run bench/SCRIPT on the deployed host, fetch results
    local script=$1; shift
    local envs=(RAVADA_URL="$RAVADA_URL" RAVADA_ADMIN_USER="$RAVADA_ADMIN_USER"
                RAVADA_ADMIN_PASSWORD="$RAVADA_ADMIN_PASSWORD"
                RAVADA_BENCH_COMMIT="$RAVADA_BENCH_COMMIT")
    case "$HOST" in
        local)
            env "${envs[@]}" python3 "bench/$script" "$@" ;;
        ssh:*)
            local target=${HOST#ssh:}
            ssh "$target" 'rm -rf /root/ravada-bench && mkdir -p /root/ravada-bench'
            scp -qr bench/. "$target:/root/ravada-bench/"
            [ -x .venv/bin/py-spy ] && scp -q .venv/bin/py-spy "$target:/root/ravada-bench/py-spy"
            ssh "$target" env "${envs[@]}" python3 "/root/ravada-bench/$script" "$@"
            scp -q "$target:/root/ravada-bench/results/*" bench/results/ ;;
        *)
            docker exec "$HOST" rm -rf /root/ravada-bench
            docker cp bench/. "$HOST:/root/ravada-bench"
            # py-spy is one static binary: the host gets the venv's for the profiles
            [ -x .venv/bin/py-spy ] && docker cp .venv/bin/py-spy "$HOST:/root/ravada-bench/py-spy"
            docker exec "${envs[@]/#/--env=}" "$HOST" python3 "/root/ravada-bench/$script" "$@"
            docker cp "$HOST:/root/ravada-bench/results/." bench/results/ ;;
    esac
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(queue p4 p1 p2 p5 p5pool p6)
status=0
for t in "${targets[@]}"; do
    echo "=== bench $t ==="
    case "$t" in
        queue) [ -f bench/queue_bench.py ] && "$PY" bench/queue_bench.py || status=1 ;;
        p4) "$PY" bench/p4_front.py ${RAVADA_BENCH_PROFILE:+--profile} || status=1
            "$PY" bench/p4_front.py --connect-cost || status=1 ;;
        p1) on_host p1_click.py ${RAVADA_BENCH_PROFILE:+--profile} -n "${RAVADA_BENCH_N:-20}" \
                || status=1 ;;
        p2) on_host p2_pool.py -n "${RAVADA_BENCH_N:-20}" || status=1 ;;
        p5) on_host p5_burst.py --users "${RAVADA_BENCH_USERS:-30}" || status=1 ;;
        p5pool) on_host p5_burst.py --users "${RAVADA_BENCH_USERS:-30}" \
                    --pool "${RAVADA_BENCH_USERS:-30}" || status=1 ;;
        p6) "$PY" bench/p6_rerun.py -i "$INVENTORY" || status=1 ;;
        *) echo "bench: unknown benchmark '$t' (queue p4 p1 p2 p5 p5pool p6)" >&2; exit 2 ;;
    esac
done
"$PY" bench/report.py
exit $status
