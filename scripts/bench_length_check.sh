#!/usr/bin/env bash
# scripts/bench_length_check.sh - what the length check of a copy within one
# MariaDB/MySQL database costs. Run it as
#
#   bash scripts/bench.sh length-check            # ROWS=200000 ROUNDS=2
#
# Source: ROWS rows of about 2 KB of text (longtext) in database
# rf_bench_len. Three runs a round, in alternating order, each into an empty
# table:
#   checked    rowferry copy into a TEXT column (limited to 65,535 bytes:
#              every chunk checks every value's length)
#   unchecked  rowferry copy into a LONGTEXT column (nothing to check)
#   baseline   one INSERT ... SELECT in the mariadb client
# After every run the row count and a CRC32 checksum must equal the
# source's, or the script fails. Printed: seconds per run, medians, and the
# checked copy's time over the unchecked one's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${ROWS:-200000}
ROUNDS=${ROUNDS:-2}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}
DB=rf_bench_len
MY="mariadb -h $MY_HOST -P $MY_PORT -u root"
command -v mariadb >/dev/null || MY="mysql -h $MY_HOST -P $MY_PORT -u root"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
BIN=target/release/rowferry

echo "==> loading $ROWS rows of about 2 KB into $DB.src"
$MY -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB CHARACTER SET utf8mb4"
$MY $DB -e "CREATE TABLE src (id bigint PRIMARY KEY, v longtext) ENGINE=InnoDB;
    CREATE TABLE digits (d int); INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
    INSERT INTO src SELECT n, CONCAT(REPEAT(MD5(n), 64), ' ') FROM (
        SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d + 1000000 * h.d AS n
        FROM digits a, digits b, digits c, digits e, digits f, digits g, digits h) t
    WHERE n <= $ROWS; DROP TABLE digits"

checksum() { $MY -N $DB -e "SELECT COUNT(*), SUM(CRC32(CONCAT(id, '|', v))) FROM $1"; }
want=$(checksum src)
fresh() { $MY $DB -e "DROP TABLE IF EXISTS dst; CREATE TABLE dst (id bigint PRIMARY KEY, v $1) ENGINE=InnoDB"; }
seconds() { local start=$(date +%s.%N); "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }; echo "$(date +%s.%N) - $start" | bc; }
copy() {
    rm -f "$WORK/ck"
    "$BIN" copy --source "mysql://root@$MY_HOST:$MY_PORT/$DB" --table $DB.src \
        --target-table $DB.dst --checkpoint "$WORK/ck" --progress none --workers 2
}
baseline() { $MY $DB -e "INSERT INTO dst SELECT * FROM src"; }

declare -A times
for round in $(seq 1 "$ROUNDS"); do
    order=(checked unchecked baseline)
    ((round % 2 == 0)) && order=(baseline unchecked checked)
    for method in "${order[@]}"; do
        case $method in
        checked) fresh text && s=$(seconds copy) ;;
        unchecked) fresh longtext && s=$(seconds copy) ;;
        baseline) fresh longtext && s=$(seconds baseline) ;;
        esac
        got=$(checksum dst)
        if [[ $got != "$want" ]]; then
            echo "FAILED: $method left '$got' in dst, the source holds '$want'" >&2
            exit 1
        fi
        times[$method]+="$s "
        printf '%-10s round %d %8.2f s\n' "$method" "$round" "$s"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
c=$(median "${times[checked]}") u=$(median "${times[unchecked]}") b=$(median "${times[baseline]}")
printf 'median: checked %.2f s, unchecked %.2f s, INSERT ... SELECT %.2f s: the check costs %.0f%% (checksums equal: %s)\n' \
    "$c" "$u" "$b" "$(echo "($c / $u - 1) * 100" | bc -l)" "$want"
$MY -e "DROP DATABASE $DB"
