# Sourced by .ci/run (and by developers: `source .ci/postgres.sh`): installs
# PostgreSQL from Debian's packages if needed, starts a throwaway cluster
# bound to 127.0.0.1 only, and exports DRYCI_TEST_POSTGRES_URL for the
# server tests (which fail in CI when it is missing).
# Sourced, so no `set -e` here: every step checks and returns on failure.

dryci_pg_setup() {
  local port="${DRYCI_PG_PORT:-54329}"
  local data="${DRYCI_PG_DATA:-/tmp/dryci-postgres}"
  local bindir
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$bindir" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian's packages"
    # No default cluster: ours is created below, bound to 127.0.0.1 only.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/dryci.conf
    apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$bindir" ] || return 1
  fi
  # initdb and postgres refuse to run as root: run them as the postgres user.
  local as_pg=()
  if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
  if ! "${as_pg[@]}" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data" || return 1
      chown -R postgres: "$data" 2>/dev/null || true
      "${as_pg[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null || return 1
    fi
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k /tmp -c fsync=off -c max_connections=200" start >/dev/null || {
      cat "$data/server.log"; return 1; }
  fi
  "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='dryci_test'" | grep -q 1 ||
    "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres dryci_test || return 1
  export DRYCI_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/dryci_test"
  echo "postgres.sh: PostgreSQL ready at $DRYCI_TEST_POSTGRES_URL"
}

dryci_pg_setup || { echo "postgres.sh: could not start PostgreSQL" >&2; return 1 2>/dev/null || exit 1; }
