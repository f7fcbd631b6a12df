#!/usr/bin/env bash
# scripts/bench.sh - how fast is a rowferry copy next to the fastest possible
# copy, a single INSERT ... SELECT inside the server?
#
#   bash scripts/bench.sh                       # ROWS=2000000 ROUNDS=2
#   ROWS=10000000 ROUNDS=3 KEEP=1 bash scripts/bench.sh
#
# Figures are printed, not asserted: they depend on the machine. Each round
# runs, in this order and each time into an empty (TRUNCATEd) orders_copy:
#   baseline    INSERT INTO orders_copy SELECT * FROM orders (one statement, psql)
#   two-halves  two such statements at once, one per half of the key range
#               (the ceiling for two writers on this server)
#   rowferry --workers 2
#   rowferry --workers 4
# Alternating the modes inside every round spreads cache warm-up and
# background noise (autovacuum, checkpoints) over all of them. rowferry runs
# under /usr/bin/time -v for wall time and peak resident memory; after every
# run the row counts of both tables must match, or the script fails.
#
#   bash scripts/bench.sh backfill [mysql]      # one UPDATE vs rowferry backfill
#   bash scripts/bench.sh mysql                 # the copy on MariaDB/MySQL, plus
#                                               # pt-online-schema-change if installable
#
# Environment: ROWFERRY_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test),
# ROWFERRY_BENCH_MYSQL (default mysql://root@127.0.0.1:3306/test),
# ROWS (2000000), ROUNDS (2), KEEP=1 keeps schema rowferry_bench afterwards.
set -euo pipefail
export LC_ALL=C # "." as the decimal point in $EPOCHREALTIME, awk and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=copy
if [[ ${1:-} == backfill ]]; then
    MODE=backfill
    shift
fi
ENGINE=${1:-postgres}
case $ENGINE in
postgres) URL=${ROWFERRY_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test} ;;
mysql) URL=${ROWFERRY_BENCH_MYSQL:-mysql://root@127.0.0.1:3306/test} ;;
*)
    echo "usage: scripts/bench.sh [postgres|mysql]" >&2
    exit 2
    ;;
esac
ROWS=${ROWS:-2000000}
ROUNDS=${ROUNDS:-2}
SCHEMA=rowferry_bench
CKPT=target/bench.ckpt
BIN=target/release/rowferry
WORK=$(mktemp -d)

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
if [[ $ENGINE == mysql ]]; then
    # mysql://user[:password]@host[:port]/db
    [[ $URL =~ ^mysql://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?(/.*)?$ ]] ||
        die "ROWFERRY_BENCH_MYSQL must look like mysql://user:password@host:3306/db"
    MY_USER=${BASH_REMATCH[1]} MY_HOST=${BASH_REMATCH[4]} MY_PORT=${BASH_REMATCH[6]:-3306}
    MY_ARGS=(-h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER")
    export MYSQL_PWD=${BASH_REMATCH[3]} # keeps the password off the command line
    sql() { mariadb "${MY_ARGS[@]}" -N -B -e "$1"; }
    drop_schema() { sql "DROP DATABASE IF EXISTS $SCHEMA"; }
    load_fixture() {
        sql "CREATE DATABASE IF NOT EXISTS $SCHEMA"
        { echo "SET @rows = $ROWS;"; cat fixtures/orders_mysql.sql; } | mariadb "${MY_ARGS[@]}" "$SCHEMA" >/dev/null
    }
    server_version() { sql 'SELECT VERSION()'; }
else
    sql() { psql -w -X -A -t -q -F ' ' -v ON_ERROR_STOP=1 -d "$URL" -c "$1"; }
    drop_schema() { sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; }
    load_fixture() {
        psql -w -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v rows="$ROWS" -d "$URL" -f fixtures/orders_pg.sql
    }
    server_version() { echo "PostgreSQL $(sql 'SHOW server_version')"; }
fi

[[ $ROWS =~ ^[0-9]+$ && $ROWS -gt 0 ]] || die "ROWS must be a positive integer (got '$ROWS')"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -gt 0 ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"

cleanup() {
    rm -rf "$WORK"
    if [[ ${KEEP:-0} == 1 ]]; then
        say "KEEP=1: schema $SCHEMA and $CKPT left in place"
    else
        drop_schema >/dev/null 2>&1 || true
        rm -f "$CKPT"
    fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ tools
if [[ ! -x /usr/bin/time ]]; then
    # GNU time (not the shell keyword) reports the peak resident set size.
    if [[ $(id -u) -ne 0 ]] || ! have apt-get; then
        die "/usr/bin/time is missing; install it: sudo apt-get install time"
    fi
    say "installing GNU time (apt-get install time)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
fi
if [[ $ENGINE == mysql ]]; then
    have mariadb || die "the mariadb client is needed (apt-get install mariadb-client)"
else
    have psql || die "psql is needed (apt-get install postgresql-client)"
fi
have cargo || die "cargo is needed to build rowferry (https://rustup.rs)"
sql 'SELECT 1' >/dev/null || die "cannot connect to $(redact "$URL") (set ROWFERRY_BENCH_PG / ROWFERRY_BENCH_MYSQL, or run scripts/services.sh)"

say "building rowferry (cargo build --release)"
cargo build --release

say "in-process parts (criterion: chunk sizing, ledger, checkpoint fsync, SQL generation)"
cargo bench --bench inprocess -- --warm-up-time 1 --measurement-time 2 2>/dev/null |
    awk '/^[a-z_0-9]+ *time:/ { print "    " $0 } /^[a-z_0-9]+$/ { name = $1 } /^ +time:/ { print "    " name $0 }'

say "loading $ROWS rows into $SCHEMA.orders (fixtures/orders_$([[ $ENGINE == mysql ]] && echo mysql || echo pg).sql)"
t0=$EPOCHREALTIME
load_fixture
say "loaded in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

# pt-online-schema-change, the reference online copier on MySQL, where it can
# be had (Debian's percona-toolkit).
PT_OSC=0
if [[ $ENGINE == mysql ]]; then
    if ! have pt-online-schema-change && [[ $(id -u) -eq 0 ]] && have apt-get; then
        say "installing percona-toolkit (apt-get) for the pt-online-schema-change comparison"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q percona-toolkit >/dev/null 2>&1 || true
    fi
    if have pt-online-schema-change; then PT_OSC=1; else say "pt-online-schema-change unavailable: not compared"; fi
fi

# ------------------------------------------------------------------ runs
RESULTS=$WORK/results # lines: mode round seconds rss_kb ("-" when not measured)

truncate_copy() { sql "TRUNCATE $SCHEMA.orders_copy" >/dev/null; }

check_counts() {
    local counts src dst
    counts=$(sql "SELECT (SELECT count(*) FROM $SCHEMA.orders), (SELECT count(*) FROM $SCHEMA.orders_copy)")
    read -r src dst <<<"$counts"
    [[ $src == "$dst" ]] || die "$1: orders has $src rows but orders_copy has $dst"
}

# backfill mode: every run fills orders.flag from NULL; between runs it is
# reset (and, on PostgreSQL, the table vacuumed) outside the timing.
BACKFILL_SET="flag = (amount > 100)"
reset_flag() {
    sql "UPDATE $SCHEMA.orders SET flag = NULL" >/dev/null
    if [[ $ENGINE == postgres ]]; then sql "VACUUM $SCHEMA.orders" >/dev/null; fi
}
check_flag() {
    local left
    left=$(sql "SELECT count(*) FROM $SCHEMA.orders WHERE flag IS NULL")
    [[ $left == 0 ]] || die "$1: $left rows still have flag NULL"
}
prepare_run() { if [[ $MODE == backfill ]]; then reset_flag; else truncate_copy; fi; }
check_run() { if [[ $MODE == backfill ]]; then check_flag "$1"; else check_counts "$1"; fi; }

run_baseline() {
    local round=$1 t0 secs
    prepare_run
    t0=$EPOCHREALTIME
    if [[ $MODE == backfill ]]; then
        sql "UPDATE $SCHEMA.orders SET $BACKFILL_SET" >/dev/null
    else
        sql "INSERT INTO $SCHEMA.orders_copy SELECT * FROM $SCHEMA.orders" >/dev/null
    fi
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    check_run "baseline"
    echo "baseline $round $secs -" >>"$RESULTS"
    say "round $round  baseline      ${secs}s"
}

# What two writers can reach on this server at all: two INSERT ... SELECT
# statements over the two halves of the key range, at the same time. No
# chunked copier with two workers can beat it; rowferry's gap to it is the
# cost of chunking, checkpoints and throttling.
run_two_halves() {
    local round=$1 t0 secs mid
    truncate_copy
    mid=$(sql "SELECT id FROM $SCHEMA.orders ORDER BY id LIMIT 1 OFFSET $((ROWS / 2))")
    t0=$EPOCHREALTIME
    sql "INSERT INTO $SCHEMA.orders_copy SELECT * FROM $SCHEMA.orders WHERE id <= $mid" >/dev/null &
    sql "INSERT INTO $SCHEMA.orders_copy SELECT * FROM $SCHEMA.orders WHERE id > $mid" >/dev/null
    wait
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    check_counts "two-halves"
    echo "two-halves $round $secs -" >>"$RESULTS"
    say "round $round  two-halves    ${secs}s"
}

# pt-osc rebuilds orders itself (a no-op ALTER copies every row through
# its chunked INSERT ... SELECT, with its triggers installed).
run_pt_osc() {
    local round=$1 t0 secs dsn="h=$MY_HOST,P=$MY_PORT,u=$MY_USER,D=$SCHEMA,t=orders"
    [[ -n $MYSQL_PWD ]] && dsn+=",p=$MYSQL_PWD"
    t0=$EPOCHREALTIME
    if ! pt-online-schema-change --alter "ENGINE=InnoDB" --execute --recursion-method=none \
        --charset utf8mb4 "$dsn" >"$WORK/pt-osc.log" 2>&1; then
        sed "s/$MYSQL_PWD/***/g" "$WORK/pt-osc.log" >&2
        die "pt-online-schema-change failed"
    fi
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    [[ $(sql "SELECT count(*) FROM $SCHEMA.orders") == "$ROWS" ]] || die "pt-osc changed the row count"
    echo "pt-osc $round $secs -" >>"$RESULTS"
    say "round $round  pt-osc        ${secs}s"
}

run_rowferry() {
    local workers=$1 round=$2 mode="rowferry-w$1" rc=0 secs rss json_rows slowest job
    prepare_run
    if [[ $MODE == backfill ]]; then
        job=(backfill --source "$URL" --table "$SCHEMA.orders" --set "$BACKFILL_SET")
    else
        job=(copy --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy")
    fi
    /usr/bin/time -v -o "$WORK/time.txt" \
        "$BIN" "${job[@]}" --workers "$workers" --restart --checkpoint "$CKPT" --progress none --json \
        >"$WORK/summary.json" 2>"$WORK/stderr.txt" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/stderr.txt" >&2
        die "$mode exited with $rc"
    fi
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:03.21" -> seconds
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); t = 0
                for (i = 1; i <= n; i++) t = t * 60 + p[i]; printf "%.3f", t }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$WORK/time.txt")
    [[ -n $secs && -n $rss ]] || die "could not read /usr/bin/time output: $(cat "$WORK/time.txt")"
    check_run "$mode"
    # The longest chunk: how long one transaction held its row locks.
    slowest=$(grep -o '"slowest_chunk_s":[0-9.e+-]*' "$WORK/summary.json" | cut -d: -f2)
    echo "$mode ${slowest:-?}" >>"$WORK/slowest"
    if have jq; then
        json_rows=$(jq -r '.rows // empty' "$WORK/summary.json" 2>/dev/null || true)
        if [[ -n $json_rows && $json_rows != "$ROWS" ]]; then
            say "note: $mode's --json summary reports rows=$json_rows (table has $ROWS)"
        fi
    fi
    echo "$mode $round $secs $rss" >>"$RESULTS"
    say "round $round  $mode  ${secs}s  peak RSS $((rss / 1024)) MB  slowest chunk ${slowest:-?}s"
}

if [[ $MODE == backfill ]]; then
    sql "ALTER TABLE $SCHEMA.orders ADD COLUMN flag boolean NULL" >/dev/null
    PT_OSC=0
    say "$ROUNDS round(s) of: one UPDATE ... SET $BACKFILL_SET, rowferry backfill --workers 2, --workers 4"
else
    say "$ROUNDS round(s) of: baseline, two-halves, rowferry --workers 2, rowferry --workers 4"
fi
for ((round = 1; round <= ROUNDS; round++)); do
    run_baseline "$round"
    if [[ $MODE == copy ]]; then run_two_halves "$round"; fi
    run_rowferry 2 "$round"
    run_rowferry 4 "$round"
    if ((PT_OSC)); then run_pt_osc "$round"; fi
done

# ------------------------------------------------------------------ report
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-";
    else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

BASE=$(awk '$1 == "baseline" { print $3 }' "$RESULTS" | median)

row() { # mode round seconds rss_kb
    awk -v mode="$1" -v round="$2" -v secs="$3" -v rss="$4" -v rows="$ROWS" -v base="$BASE" 'BEGIN {
        mb = (rss == "-") ? "-" : sprintf("%.0f", rss / 1024)
        if (secs <= 0) secs = 0.001
        if (base <= 0) base = 0.001
        printf "%-13s %5s %9.2f %12.0f %12.2fx %11s\n", mode, round, secs, rows / secs, base / secs, mb }'
}

echo
printf 'rowferry %s benchmark: %s rows, %s, %s CPU(s), %s\n' \
    "$MODE" "$ROWS" "$(redact "$URL")" "$(nproc)" "$(server_version)"
printf '(speedup: rows/s divided by the median baseline rows/s; baseline = one %s)\n\n' \
    "$([[ $MODE == backfill ]] && echo "UPDATE ... SET $BACKFILL_SET" || echo "INSERT ... SELECT")"
printf '%-13s %5s %9s %12s %13s %11s\n' mode round seconds rows/s speedup "peak RSS MB"
while read -r mode round secs rss; do
    row "$mode" "$round" "$secs" "$rss"
done <"$RESULTS"
echo
printf '%-13s %5s %9s %12s %13s %11s\n' median "" seconds rows/s speedup "peak RSS MB"
for mode in baseline $([[ $MODE == copy ]] && echo two-halves) rowferry-w2 rowferry-w4 $( ((PT_OSC)) && echo pt-osc); do
    secs=$(awk -v m="$mode" '$1 == m { print $3 }' "$RESULTS" | median)
    rss=$(awk -v m="$mode" '$1 == m && $4 != "-" { print $4 }' "$RESULTS" | median)
    row "$mode" "" "$secs" "$rss"
done
echo
awk '{ if ($2 + 0 > max[$1] + 0) max[$1] = $2 } END { for (m in max) printf "%s: slowest chunk %.3fs (longest lock hold of one transaction)\n", m, max[m] }' "$WORK/slowest" | sort
if ((PT_OSC)); then
    pt=$(awk '$1 == "pt-osc" { print $3 }' "$RESULTS" | median)
    for mode in rowferry-w2 rowferry-w4; do
        secs=$(awk -v m="$mode" '$1 == m { print $3 }' "$RESULTS" | median)
        awk -v m="$mode" -v s="$secs" -v p="$pt" 'BEGIN { printf "%s throughput over pt-online-schema-change: %.2fx\n", m, p / s }'
    done
fi
