#!/usr/bin/env bash
# scripts/bench_to_mysql.sh - `rowferry copy --target mysql://...` (PostgreSQL ->
# MariaDB/MySQL, written by LOAD DATA LOCAL INFILE per chunk) next to a
# one-transaction pipe doing the same: psql COPY ... TO STDOUT | mariadb
# LOAD DATA LOCAL INFILE '/dev/stdin'. Run it as
#
#   bash scripts/bench.sh to-mysql                 # ROWS=1000000 ROUNDS=2
#
# Source: the orders fixture (fixtures/orders_pg.sql) in schema rf_bench_tomy
# of ROWFERRY_BENCH_PG. Target: database rf_bench_tomy on ROWFERRY_BENCH_MYSQL's
# server, table orders (bigint key, decimal(12,2), timestamp(6) holding UTC,
# text) with two secondary indexes, created empty before every run. Rounds
# alternate the order. After every run: the row count and a CRC32 checksum of
# every row must equal the first run's, or the script fails. Printed: seconds
# and rows/s per run, medians, and rowferry's ratio to the pipe.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-2}
PG=${ROWFERRY_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}
DB=rf_bench_tomy
MY="mariadb -h $MY_HOST -P $MY_PORT -u root"
command -v mariadb >/dev/null || MY="mysql -h $MY_HOST -P $MY_PORT -u root"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
BIN=target/release/rowferry

echo "==> loading $ROWS rows into $DB.orders on $PG"
psql -qX -v schema=$DB -v rows="$ROWS" -f fixtures/orders_pg.sql "$PG" >/dev/null
$MY -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"

fresh_target() {
    $MY $DB -e "DROP TABLE IF EXISTS orders; CREATE TABLE orders (id bigint PRIMARY KEY,
        customer_id bigint NOT NULL, status varchar(16) NOT NULL, amount decimal(12,2) NOT NULL,
        created_at timestamp(6) NOT NULL, note text, KEY (customer_id), KEY (created_at))
        ENGINE=InnoDB"
}
checksum() {
    $MY -N $DB -e "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, customer_id, status, amount,
        DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'), IFNULL(note, '<null>')))) FROM orders"
}
seconds() { local start=$(date +%s.%N); "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }; echo "$(date +%s.%N) - $start" | bc; }

run_rowferry() {
    rm -f "$WORK/ck"
    "$BIN" copy --source "$PG" --target "mysql://root@$MY_HOST:$MY_PORT/$DB" \
        --table $DB.orders --target-table $DB.orders --checkpoint "$WORK/ck" \
        --progress none --workers 2
}
run_pipe() {
    psql -qX "$PG" -c "COPY (SELECT id, customer_id, status, amount,
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), note
        FROM $DB.orders) TO STDOUT" |
        $MY --local-infile=1 $DB -e "SET time_zone = '+00:00';
            LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE orders CHARACTER SET utf8mb4"
}

want=""
declare -A times
for round in $(seq 1 "$ROUNDS"); do
    order=(rowferry-w2 pipe)
    ((round % 2 == 0)) && order=(pipe rowferry-w2)
    for method in "${order[@]}"; do
        fresh_target
        case $method in
        rowferry-w2) s=$(seconds run_rowferry) ;;
        pipe) s=$(seconds run_pipe) ;;
        esac
        got=$(checksum)
        [[ -z $want ]] && want=$got
        if [[ $got != "$want" ]]; then
            echo "FAILED: $method left '$got' in the target, the first run '$want'" >&2
            exit 1
        fi
        times[$method]+="$s "
        printf '%-12s round %d %8.2f s %10.0f rows/s\n' "$method" "$round" "$s" "$(echo "$ROWS / $s" | bc -l)"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
r=$(median "${times[rowferry-w2]}")
p=$(median "${times[pipe]}")
printf 'median: rowferry-w2 %.2f s, pipe %.2f s: rowferry %.2fx the pipe (checksums equal: %s)\n' \
    "$r" "$p" "$(echo "$p / $r" | bc -l)" "$want"
psql -qX "$PG" -c "DROP SCHEMA $DB CASCADE" 2>/dev/null
$MY -e "DROP DATABASE $DB"
