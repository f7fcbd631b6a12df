#!/usr/bin/env bash
# scripts/bench_throttle.sh - what a copy costs a concurrent OLTP writer, and
# how far a replica falls behind, with and without throttling (issue 7).
# Run it as `scripts/bench.sh throttle`. Figures are printed, never asserted.
#
# PostgreSQL (the local server), ROWS rows of fixtures/orders_pg.sql, the
# writer (examples/writer.rs, WRITER_CONNECTIONS connections) running:
#   writer-alone        the writer alone for WRITER_SECONDS
#   copy-unthrottled    during `rowferry copy --max-load none`
#   copy-throttled      during `rowferry copy --max-load active=$MAX_LOAD
#                       --max-rows-per-sec $RATE`
# then replica lag, sampled every 100 ms on the replica while a copy runs
# (scripts/replicas.sh builds the replicas):
#   PostgreSQL: the streaming replica on 5433, copy without and with
#               --replica ... --max-lag 1s
#   MariaDB:    the primary/replica pair on 3307/3308 (Seconds_Behind_Master,
#               whole seconds), copy without and with --replica ... --max-lag 1s
# The target: with --max-lag 1s the peak lag stays within 1s plus one
# chunk's worth of time (--chunk-time, 500ms).
#
# Environment: ROWS (1000000), WRITER_SECONDS (10), WRITER_CONNECTIONS (4),
# MAX_LOAD (6), RATE (150000).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${ROWS:-1000000}
WRITER_SECONDS=${WRITER_SECONDS:-10}
WRITER_CONNECTIONS=${WRITER_CONNECTIONS:-4}
MAX_LOAD=${MAX_LOAD:-6}
RATE=${RATE:-150000}
PG=${ROWFERRY_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
PG_REPLICA=postgres://postgres@127.0.0.1:${PG_REPLICA_PORT:-5433}/test
MY_PRIMARY_PORT=${MY_PRIMARY_PORT:-3307}
MY_REPLICA_PORT=${MY_REPLICA_PORT:-3308}
MY_PRIMARY=mysql://root@127.0.0.1:$MY_PRIMARY_PORT/test
MY_REPLICA=mysql://root@127.0.0.1:$MY_REPLICA_PORT/test
SCHEMA=rowferry_bench
BIN=target/release/rowferry
WRITER=target/release/examples/writer
WORK=$(mktemp -d)
WRITER_PID=
SAMPLER_PID=

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench_throttle.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
pg() { psql -w -X -A -t -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
my() { mariadb -h 127.0.0.1 -P "$1" -u root -N -B -e "$2"; }
cleanup() {
    for pid in $WRITER_PID $SAMPLER_PID; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pg "$PG" "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    my "$MY_PRIMARY_PORT" "DROP DATABASE IF EXISTS $SCHEMA" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
say "building rowferry and the writer (release)"
cargo build --release --quiet
cargo build --release --quiet --example writer
say "starting the replicas (scripts/replicas.sh start)"
bash scripts/replicas.sh start >&2

load_pg() {
    pg "$PG" "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null
    psql -w -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v rows="$ROWS" -d "$PG" -f fixtures/orders_pg.sql
}
truncate_pg() { pg "$PG" "TRUNCATE $SCHEMA.orders_copy" >/dev/null; }
copy_pg() { # extra flags...; prints the copy's seconds
    local t0 rc=0
    rm -f "$WORK/ckpt"
    t0=$EPOCHREALTIME
    "$BIN" copy --source "$PG" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy" \
        --checkpoint "$WORK/ckpt" --workers 2 --progress none "$@" 2>"$WORK/copy.err" || rc=$?
    ((rc == 0)) || { cat "$WORK/copy.err" >&2; die "copy $* exited with $rc"; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

# ------------------------------------------------------------ writer latency
LAT=$WORK/latency # scenario p50 p99 max ops/s errors copy_s
writer_start() {
    rm -f "$WORK/w.stop" "$WORK/w.ready"
    "$WRITER" --url "$PG" --table "$SCHEMA.orders" --connections "$WRITER_CONNECTIONS" \
        --seconds "${1:-0}" --stop-file "$WORK/w.stop" --ready-file "$WORK/w.ready" --seed 7 \
        >"$WORK/w.json" 2>"$WORK/w.err" &
    WRITER_PID=$!
    until [[ -e $WORK/w.ready ]]; do
        kill -0 "$WRITER_PID" 2>/dev/null || { cat "$WORK/w.err" >&2; die "the writer did not start"; }
        sleep 0.05
    done
}
writer_stop() {
    touch "$WORK/w.stop"
    wait "$WRITER_PID" || die "the writer failed: $(cat "$WORK/w.err")"
    WRITER_PID=
}
record() { # scenario copy_s
    echo "$1 $(jq -r '"\(.p50_ms) \(.p99_ms) \(.max_ms) \(.ops_per_sec | floor) \(.errors.total)"' "$WORK/w.json") $2" >>"$LAT"
    say "$(tail -1 "$LAT")"
}

say "loading $ROWS rows into $SCHEMA.orders (PostgreSQL)"
load_pg
say "writer alone, ${WRITER_SECONDS}s"
writer_start 0
sleep "$WRITER_SECONDS"
writer_stop
record writer-alone -
for scenario in copy-unthrottled copy-throttled; do
    truncate_pg
    writer_start 0
    case $scenario in
    copy-unthrottled) secs=$(copy_pg --max-load none) ;;
    copy-throttled) secs=$(copy_pg --max-load "active=$MAX_LOAD" --max-rows-per-sec "$RATE") ;;
    esac
    writer_stop
    record "$scenario" "$secs"
done

# ------------------------------------------------------------ replica lag
PEAKS=$WORK/peaks # engine scenario peak_s copy_s
sample_lag() { # command producing one number (seconds) per call; writes the max to $WORK/peak
    echo 0 >"$WORK/peak"
    (
        peak=0
        while :; do
            v=$("$@" 2>/dev/null || echo 0)
            [[ $v =~ ^[0-9.]+$ ]] || v=0
            peak=$(awk -v a="$peak" -v b="$v" 'BEGIN { print (b > a) ? b : a }')
            echo "$peak" >"$WORK/peak"
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!
}
stop_sampling() {
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    cat "$WORK/peak"
}
pg_lag() {
    pg "$PG_REPLICA" "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
                       ELSE round(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::numeric, 2) END"
}
my_lag() { mariadb -h 127.0.0.1 -P "$MY_REPLICA_PORT" -u root -e 'SHOW REPLICA STATUS\G' | awk '/Seconds_Behind_Master:/ { print $2 }'; }

for scenario in unthrottled max-lag-1s; do
    truncate_pg
    # Let the replica catch up with the truncate first.
    sleep 1
    sample_lag pg_lag
    if [[ $scenario == unthrottled ]]; then
        secs=$(copy_pg --max-load none)
    else
        secs=$(copy_pg --max-load none --replica "$PG_REPLICA" --max-lag 1s)
    fi
    echo "postgres $scenario $(stop_sampling) $secs" >>"$PEAKS"
    say "$(tail -1 "$PEAKS")"
done

say "loading $ROWS rows into $SCHEMA.orders on the MariaDB primary ($MY_PRIMARY_PORT)"
my "$MY_PRIMARY_PORT" "DROP DATABASE IF EXISTS $SCHEMA; CREATE DATABASE $SCHEMA"
{ echo "SET @rows = $ROWS;"; cat fixtures/orders_mysql.sql; } | mariadb -h 127.0.0.1 -P "$MY_PRIMARY_PORT" -u root "$SCHEMA" >/dev/null
until [[ $(my "$MY_REPLICA_PORT" "SELECT COUNT(*) FROM $SCHEMA.orders" 2>/dev/null || echo 0) == "$ROWS" ]]; do sleep 0.5; done
for scenario in unthrottled max-lag-1s; do
    my "$MY_PRIMARY_PORT" "TRUNCATE $SCHEMA.orders_copy"
    until [[ $(my_lag) == 0 ]]; do sleep 0.2; done
    rm -f "$WORK/ckpt"
    sample_lag my_lag
    t0=$EPOCHREALTIME
    extra=()
    [[ $scenario == max-lag-1s ]] && extra=(--replica "$MY_REPLICA" --max-lag 1s)
    "$BIN" copy --source "$MY_PRIMARY" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy" \
        --checkpoint "$WORK/ckpt" --workers 2 --progress none --max-load none "${extra[@]}" 2>"$WORK/copy.err" ||
        { cat "$WORK/copy.err" >&2; die "MariaDB copy ($scenario) failed"; }
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    # The replica goes on applying after the copy: sample until it is back.
    until [[ $(my_lag) == 0 ]]; do sleep 0.2; done
    echo "mariadb $scenario $(stop_sampling) $secs" >>"$PEAKS"
    say "$(tail -1 "$PEAKS")"
done

echo
printf 'rowferry throttle benchmark: %s rows, %s CPU(s), writer %s connection(s)\n\n' "$ROWS" "$(nproc)" "$WRITER_CONNECTIONS"
printf '%-18s %8s %8s %9s %8s %7s %8s\n' scenario p50_ms p99_ms max_ms ops/s errors copy_s
while read -r s p50 p99 max ops err copy; do
    printf '%-18s %8s %8s %9s %8s %7s %8s\n' "$s" "$p50" "$p99" "$max" "$ops" "$err" "$copy"
done <"$LAT"
echo
printf '%-9s %-12s %13s %8s\n' engine copy "peak lag (s)" copy_s
while read -r e s peak copy; do printf '%-9s %-12s %13s %8s\n' "$e" "$s" "$peak" "$copy"; done <"$PEAKS"
