#!/usr/bin/env bash
# A throwaway PostgreSQL server for the audit-sink tests: Debian's package, a cluster in a temporary directory,
# listening on a free loopback port with trust authentication (nothing but this machine can reach it).
#
# Sourced by .ci/run:        source .ci/postgres.sh; postgres_start; ...; postgres_stop
# By hand, for local tests:  eval "$(bash .ci/postgres.sh start)"     (prints the two export lines)
#                            bash .ci/postgres.sh stop "$GENSDK_TEST_POSTGRES_DIR"
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the Debian package
# creates (created here when missing); as anyone else it runs as that user.

postgres_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true
}

postgres_install() {
    if [ -n "$(postgres_bin_dir)" ]; then
        return 0
    fi
    echo "postgres: installing Debian's postgresql package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
}

_postgres_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_postgres_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

postgres_start() {
    postgres_install || return 1
    local bin port dir
    bin=$(postgres_bin_dir)
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    dir=$(mktemp -d /tmp/gensdk-postgres.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    port=$(_postgres_free_port)
    _postgres_as_owner "$bin/initdb" -D "$dir/data" -U gensdk --auth=trust --encoding=UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    # The socket goes in the cluster's own directory: /var/run/postgresql may not exist or not be ours.
    _postgres_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >&2 \
        || { cat "$dir/server.log" >&2; return 1; }
    _postgres_as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U gensdk gensdk_test || return 1
    export GENSDK_TEST_POSTGRES_DIR="$dir"
    export GENSDK_TEST_POSTGRES_URL="postgresql://gensdk@127.0.0.1:$port/gensdk_test"
    echo "postgres: $("$bin/postgres" --version) at $GENSDK_TEST_POSTGRES_URL (cluster in $dir)" >&2
}

postgres_stop() {
    local dir="${1:-${GENSDK_TEST_POSTGRES_DIR:-}}"
    if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
        return 0
    fi
    _postgres_as_owner "$(postgres_bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        start)
            postgres_start
            echo "export GENSDK_TEST_POSTGRES_URL=$GENSDK_TEST_POSTGRES_URL"
            echo "export GENSDK_TEST_POSTGRES_DIR=$GENSDK_TEST_POSTGRES_DIR"
            ;;
        stop) postgres_stop "${2:-}" ;;
        *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
    esac
fi
