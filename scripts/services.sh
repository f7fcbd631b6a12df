#!/usr/bin/env bash
# scripts/services.sh - make the test databases reachable.
#
# rowferry's integration tests, demo and benchmark need (see DESIGN.md,
# "Databases here"):
#   PostgreSQL at 127.0.0.1:5432, trust auth, superusers postgres and root,
#              database test, ICU collation "und-x-icu" available;
#   MariaDB    at 127.0.0.1:3306, root with an empty password, database test.
#
# What this script does, cheapest case first:
#   1. Both servers answer (and the test login works): nothing. This is the
#      normal case on a development/CI machine and takes well under a second.
#   2. Installed but stopped: start them (systemctl when systemd runs the box,
#      otherwise pg_ctlcluster / start-stop-daemon, the way the dev machines
#      do it) and wait up to ROWFERRY_SERVICES_WAIT seconds (default 30).
#   3. Not installed (fresh Debian 12, run as root): apt-get install the
#      Debian packages, start them, and configure trust auth, the roles and
#      the test databases. Authentication settings (pg_hba.conf, MariaDB's
#      root account) are only ever changed on servers this script installed
#      (it leaves a marker file so a rerun after a failure finishes the job),
#      or when ROWFERRY_SERVICES_CONFIGURE=1 says so explicitly.
#
# ROWFERRY_TEST_PG / ROWFERRY_TEST_MYSQL (same variables the tests read) may
# point elsewhere. A non-local URL is only checked for reachability: we never
# try to start or configure somebody else's server.
#
# Exit status: 0 when both servers are reachable, 1 (with a message saying
# what is wrong and how to fix it) otherwise.
set -euo pipefail

PG_URL=${ROWFERRY_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
MY_URL=${ROWFERRY_TEST_MYSQL:-mysql://root@127.0.0.1:3306/test}
WAIT_SECS=${ROWFERRY_SERVICES_WAIT:-30}
FORCE_CONFIGURE=${ROWFERRY_SERVICES_CONFIGURE:-0}
# Written just before we apt-get install the servers; its presence means "these
# servers are ours, configuring their authentication is allowed".
MARKER_DIR=/var/lib/rowferry-services
MARKER=$MARKER_DIR/installed-by-rowferry

log() { printf '==> services: %s\n' "$*" >&2; }
warn() { printf '==> services: WARNING: %s\n' "$*" >&2; }
die() {
    printf 'services.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
systemd_running() { [[ -d /run/systemd/system ]] && have systemctl; }

# Percent-decode a URL component (user names and passwords may be encoded).
urldecode() { printf '%b' "${1//%/\\x}"; }

# parse_url URL PREFIX: sets PREFIX_HOST PREFIX_PORT PREFIX_USER PREFIX_PASS
# PREFIX_DB from scheme://[user[:pass]@]host[:port][/db][?query].
parse_url() {
    local url=$1 prefix=$2 rest authority path="" userinfo="" hostport host port="" user="" pass=""
    rest=${url#*://}
    authority=${rest%%[/?]*}
    if [[ $rest == */* ]]; then
        path=${rest#*/}
        path=${path%%\?*}
    fi
    if [[ $authority == *@* ]]; then
        userinfo=${authority%@*}
        hostport=${authority##*@}
    else
        hostport=$authority
    fi
    if [[ -n $userinfo ]]; then
        user=$(urldecode "${userinfo%%:*}")
        [[ $userinfo == *:* ]] && pass=$(urldecode "${userinfo#*:}")
    fi
    if [[ $hostport == \[* ]]; then # [ipv6]:port
        host=${hostport#\[}
        host=${host%%\]*}
        [[ $hostport == *\]:* ]] && port=${hostport##*\]:}
    else
        host=${hostport%%:*}
        [[ $hostport == *:* ]] && port=${hostport##*:}
    fi
    printf -v "${prefix}_HOST" '%s' "${host:-127.0.0.1}"
    printf -v "${prefix}_PORT" '%s' "$port"
    printf -v "${prefix}_USER" '%s' "$user"
    printf -v "${prefix}_PASS" '%s' "$pass"
    printf -v "${prefix}_DB" '%s' "$(urldecode "$path")"
}

is_local_host() {
    case $1 in
    127.0.0.1 | localhost | ::1) return 0 ;;
    *) return 1 ;;
    esac
}

# Plain TCP probe, used when the database client tools are not installed.
tcp_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

parse_url "$PG_URL" PG
parse_url "$MY_URL" MY
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
PG_DB=${PG_DB:-$PG_USER}
MY_PORT=${MY_PORT:-3306}
MY_USER=${MY_USER:-root}

# ---------------------------------------------------------------- PostgreSQL

pg_up() {
    if have pg_isready; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3
    else
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}

# Logs in with the test URL and counts the ICU collation in one round trip.
# Prints the count; fails when the login fails. -w: never prompt for a password.
pg_icu_count() {
    PGCONNECT_TIMEOUT=5 psql -w -X -A -t -q -d "$PG_URL" \
        -c "SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'" 2>/dev/null
}

pg_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

pg_newest_version() {
    # shellcheck disable=SC2012
    ls -1 /usr/lib/postgresql | sort -V | tail -n 1
}

# Every cluster configured under /etc/postgresql, as "version cluster" lines.
pg_clusters() {
    local conf dir
    for conf in /etc/postgresql/*/*/postgresql.conf; do
        [[ -f $conf ]] || continue
        dir=${conf%/postgresql.conf}
        printf '%s %s\n' "$(basename "$(dirname "$dir")")" "$(basename "$dir")"
    done
}

start_pg() {
    if systemd_running && systemctl start postgresql 2>/dev/null && wait_for pg_up 10; then
        return 0
    fi
    is_root || [[ $(id -un) == postgres ]] ||
        die "PostgreSQL is installed but not running, and only root (or postgres) can start it here: sudo bash scripts/services.sh"
    if [[ -z $(pg_clusters) ]]; then
        # Packages present but no cluster (postinst skipped it, or it was
        # dropped): create one. C.UTF-8 so the databases are UTF8, not SQL_ASCII.
        local v
        v=$(pg_newest_version)
        log "no PostgreSQL cluster found; creating $v/main on port $PG_PORT"
        pg_createcluster --locale C.UTF-8 --encoding UTF8 -p "$PG_PORT" "$v" main >/dev/null
    fi
    local v c
    while read -r v c; do
        if pg_ctlcluster "$v" "$c" status >/dev/null 2>&1; then
            continue
        fi
        log "starting PostgreSQL cluster $v/$c"
        # --skip-systemctl-redirect: start it directly even when systemctl
        # exists but systemd does not run this machine (containers).
        pg_ctlcluster --skip-systemctl-redirect "$v" "$c" start ||
            warn "pg_ctlcluster $v $c start failed (see /var/log/postgresql/postgresql-$v-$c.log)"
    done < <(pg_clusters)
}

# Trust for local test connections; only on servers this script installed.
configure_pg_hba() {
    local v c hba tmp changed=0
    while read -r v c; do
        hba=/etc/postgresql/$v/$c/pg_hba.conf
        [[ -f $hba ]] || continue
        grep -q 'added by rowferry scripts/services.sh' "$hba" && continue
        log "pg_hba.conf $v/$c: trusting local socket and loopback TCP connections"
        tmp=$(mktemp)
        {
            echo '# added by rowferry scripts/services.sh: trust local test connections'
            echo '# (pg_hba.conf uses the first matching line, so these come first)'
            echo 'local   all   all                  trust'
            echo 'host    all   all   127.0.0.1/32   trust'
            echo 'host    all   all   ::1/128        trust'
            cat "$hba"
        } >"$tmp"
        cat "$tmp" >"$hba" # keeps the file's owner and mode
        rm -f "$tmp"
        changed=1
        pg_ctlcluster --skip-systemctl-redirect "$v" "$c" reload >/dev/null 2>&1 || true
    done < <(pg_clusters)
    if ((changed)); then sleep 1; fi
}

# Roles postgres/root (superusers) and databases test/root, plus the URL's own
# user and database. Additive only: nothing is dropped or altered except
# making sure the roles can log in as superusers.
ensure_pg_roles() {
    is_root || die "cannot create PostgreSQL roles as a non-root user; run as root"
    log "creating PostgreSQL roles postgres/root and database test (if missing)"
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres \
        -v url_user="$PG_USER" -v url_db="$PG_DB" <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN SUPERUSER', r)
  FROM unnest(ARRAY['postgres', 'root', :'url_user']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
 GROUP BY r
\gexec
SELECT format('ALTER ROLE %I LOGIN SUPERUSER', r)
  FROM unnest(ARRAY['postgres', 'root', :'url_user']) AS r
 GROUP BY r
\gexec
-- UTF8 whatever the cluster default is (a cluster created without a locale
-- is SQL_ASCII, which would make every multi-byte test meaningless).
SELECT format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L LOCALE %L', d, 'UTF8', 'C.UTF-8')
  FROM unnest(ARRAY['test', 'root', :'url_db']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
 GROUP BY d
\gexec
SQL
}

# ------------------------------------------------------------------- MariaDB

mariadb_admin_bin() {
    if have mariadb-admin; then echo mariadb-admin; elif have mysqladmin; then echo mysqladmin; fi
}
mariadb_client_bin() {
    if have mariadb; then echo mariadb; elif have mysql; then echo mysql; fi
}

# "Is the server up": mariadb-admin ping exits 0 even on "access denied",
# which is what we want here; the login is checked separately.
my_up() {
    local admin
    admin=$(mariadb_admin_bin)
    if [[ -n $admin ]]; then
        MYSQL_PWD=$MY_PASS "$admin" --protocol=TCP -h"$MY_HOST" -P"$MY_PORT" -u"$MY_USER" \
            --connect-timeout=3 ping >/dev/null 2>&1
    else
        tcp_open "$MY_HOST" "$MY_PORT"
    fi
}

# The login the tests will use (user, password, database from the URL).
my_login_ok() {
    local client
    client=$(mariadb_client_bin)
    [[ -n $client ]] || return 0 # no client to check with; the tests will tell
    MYSQL_PWD=$MY_PASS "$client" --protocol=TCP -h"$MY_HOST" -P"$MY_PORT" -u"$MY_USER" \
        --connect-timeout=5 -N -e 'SELECT 1' ${MY_DB:+"$MY_DB"} >/dev/null 2>&1
}

my_server_bin() {
    if [[ -x /usr/sbin/mariadbd ]]; then
        echo /usr/sbin/mariadbd
    elif [[ -x /usr/sbin/mysqld ]]; then echo /usr/sbin/mysqld; fi
}
my_installed() { [[ -n $(my_server_bin) ]]; }

start_mariadb() {
    if systemd_running && systemctl start mariadb 2>/dev/null && wait_for my_up 10; then
        return 0
    fi
    is_root || die "MariaDB is installed but not running, and only root can start it here: sudo bash scripts/services.sh"
    local bin datadir
    bin=$(my_server_bin)
    datadir=$({ my_print_defaults --mysqld 2>/dev/null || true; } | sed -n 's/^--datadir=//p' | tail -n 1)
    datadir=${datadir:-/var/lib/mysql}
    # The Debian init script normally creates the socket/pid directory.
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    install -d -o mysql -g adm -m 2750 /var/log/mysql
    if [[ ! -d $datadir/mysql ]]; then
        log "initialising the MariaDB data directory $datadir"
        mariadb-install-db --user=mysql --datadir="$datadir" >/dev/null
    fi
    log "starting MariaDB ($bin)"
    # --oknodo: a no-op if it already runs. --user=mysql: mariadbd refuses to
    # run as root. --output keeps its stderr somewhere we can point to.
    start-stop-daemon --start --oknodo --background \
        --output /var/log/mysql/mariadbd.out --exec "$bin" -- --user=mysql
}

# Root over TCP with an empty password and database test; only on servers this
# script installed. Runs through the socket as the Unix root user (Debian's
# root@localhost authenticates with unix_socket on a fresh install).
configure_mariadb() {
    is_root || die "cannot configure MariaDB as a non-root user; run as root"
    local client
    client=$(mariadb_client_bin)
    [[ -n $client ]] || die "the mariadb client is missing; apt-get install -y mariadb-client"
    log "MariaDB: root may log in over TCP with an empty password; creating database test"
    "$client" --protocol=SOCKET -uroot <<'SQL' ||
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
-- with skip-name-resolve a TCP client is 127.0.0.1 / ::1, not localhost
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'root'@'::1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4;
FLUSH PRIVILEGES;
SQL
        die "could not configure MariaDB through its socket as root (does root@localhost have a password?)"
    if [[ -n $MY_DB && $MY_DB != test ]]; then
        "$client" --protocol=SOCKET -uroot -e "CREATE DATABASE IF NOT EXISTS \`${MY_DB//\`/\`\`}\` CHARACTER SET utf8mb4"
    fi
}

# ------------------------------------------------------------------- helpers

# wait_for CHECK [SECONDS]: poll CHECK once a second.
wait_for() {
    local check=$1 secs=${2:-$WAIT_SECS} i
    for ((i = 0; i < secs; i++)); do
        "$check" && return 0
        sleep 1
    done
    "$check"
}

APT_UPDATED=0
apt_install() {
    is_root || die "$* not installed and not running as root; install it (sudo apt-get install -y $*) or run: sudo bash scripts/services.sh"
    have apt-get || die "$* not installed and apt-get is unavailable; install the servers by hand or use docker-compose.yml"
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$MARKER_DIR"
    echo "PostgreSQL/MariaDB installed by rowferry scripts/services.sh on $(date -u +%FT%TZ); it may configure their test logins" >"$MARKER"
    if ((!APT_UPDATED)); then
        log "apt-get update"
        apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # C.UTF-8 so the cluster Debian's postinst creates is UTF8, not SQL_ASCII.
    LANG=C.UTF-8 LC_ALL=C.UTF-8 apt-get install -y -q "$@" >/dev/null
}

may_configure() { [[ $FORCE_CONFIGURE == 1 || -f $MARKER ]]; }

# ------------------------------------------------------------------- main

ensure_postgres() {
    local where="$PG_HOST:$PG_PORT" icu
    if ! is_local_host "$PG_HOST"; then
        pg_up || die "PostgreSQL at $where (ROWFERRY_TEST_PG) is not reachable; this script only starts local servers"
        if have psql; then
            icu=$(pg_icu_count) || die "PostgreSQL at $where answers but the login in ROWFERRY_TEST_PG fails"
            [[ $icu == 1 ]] || warn "PostgreSQL at $where has no ICU collation und-x-icu; collation tests will fail"
        fi
        log "PostgreSQL reachable at $where (remote, not managed)"
        return 0
    fi

    if ! pg_up; then
        if ! pg_installed; then
            # python3-venv: tests/recipes.rs runs the Alembic recipe in a venv.
            apt_install postgresql postgresql-client python3-venv
        fi
        start_pg
        wait_for pg_up ||
            die "PostgreSQL did not become reachable at $where within ${WAIT_SECS}s; see pg_lsclusters and /var/log/postgresql/ (does a cluster use port $PG_PORT?)"
    fi

    if ! have psql; then
        warn "psql not installed: cannot check the test login or the ICU collation (apt-get install -y postgresql-client)"
        log "PostgreSQL reachable at $where"
        return 0
    fi
    if ! icu=$(pg_icu_count); then
        if may_configure; then
            configure_pg_hba
            ensure_pg_roles
            icu=$(pg_icu_count) || die "PostgreSQL at $where is up but the test login ($PG_URL) still fails after configuring it"
        else
            die "PostgreSQL at $where is up but the test login fails (${PG_USER}@${PG_DB}).
  The tests expect trust auth for local connections, superusers postgres and root and a database test.
  Fix it by hand, point ROWFERRY_TEST_PG at a working URL, or let this script configure the server:
  sudo ROWFERRY_SERVICES_CONFIGURE=1 bash scripts/services.sh   (edits pg_hba.conf to trust local connections)"
        fi
    fi
    [[ $icu == 1 ]] || die "PostgreSQL at $where has no ICU collation und-x-icu (server built without ICU); use Debian's postgresql package"
    log "PostgreSQL reachable at $where"
}

ensure_mariadb() {
    local where="$MY_HOST:$MY_PORT"
    if ! is_local_host "$MY_HOST"; then
        my_up || die "MariaDB/MySQL at $where (ROWFERRY_TEST_MYSQL) is not reachable; this script only starts local servers"
        log "MariaDB reachable at $where (remote, not managed)"
        return 0
    fi

    if ! my_up; then
        if ! my_installed; then
            apt_install mariadb-server mariadb-client
        fi
        start_mariadb
        wait_for my_up ||
            die "MariaDB did not become reachable at $where within ${WAIT_SECS}s; see /var/log/mysql/ (is another program using port $MY_PORT, or is skip-networking set?)"
    fi

    if ! my_login_ok; then
        if may_configure; then
            configure_mariadb
            my_login_ok || die "MariaDB at $where is up but the test login ($MY_USER, empty password) still fails after configuring it"
        else
            die "MariaDB at $where is up but '${MY_USER}' cannot log in${MY_DB:+ to database $MY_DB}.
  The tests expect root with an empty password over TCP and a database test.
  Fix it by hand, point ROWFERRY_TEST_MYSQL at a working URL, or let this script configure the server:
  sudo ROWFERRY_SERVICES_CONFIGURE=1 bash scripts/services.sh   (gives root@localhost an empty password)"
        fi
    fi
    log "MariaDB reachable at $where"
}

ensure_postgres
ensure_mariadb
