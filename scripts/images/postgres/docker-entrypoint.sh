#!/usr/bin/env bash
# devup-local/postgres entrypoint: the common cases of the official image's.
#   POSTGRES_USER (postgres), POSTGRES_PASSWORD (optional), POSTGRES_DB (= user),
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (trust), PGDATA,
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz on first start.
set -Eeo pipefail

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

# 'docker run IMAGE -c key=value' runs postgres with those options.
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi
if [ "$1" != 'postgres' ]; then
    exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    chmod 2775 /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-trust}"

    init_args=(--username="$POSTGRES_USER" --pgdata="$PGDATA" --auth-local=trust --auth-host="$auth")
    pwfile=""
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile="$(mktemp)"
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        init_args+=(--pwfile="$pwfile")
    fi
    # shellcheck disable=SC2086
    initdb "${init_args[@]}" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    [ -z "$pwfile" ] || rm -f "$pwfile"

    printf '\nhost all all 0.0.0.0/0 %s\nhost all all ::/0 %s\n' "$auth" "$auth" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    shopt -s nullglob
    init_files=(/docker-entrypoint-initdb.d/*)
    if [ "$POSTGRES_DB" != 'postgres' ] || [ "${#init_files[@]}" -gt 0 ]; then
        # Socket-only temporary server, so nothing reaches it over TCP meanwhile.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >/dev/null
        psql_cmd=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER")
        if [ "$POSTGRES_DB" != 'postgres' ]; then
            "${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
        fi
        export PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB"
        for f in "${init_files[@]}"; do
            case "$f" in
                *.sh)
                    echo "$0: running $f"
                    if [ -x "$f" ]; then "$f"; else
                        # shellcheck disable=SC1090
                        . "$f"
                    fi
                    ;;
                *.sql) echo "$0: running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
                *.sql.gz) echo "$0: running $f"; gzip -dc "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" ;;
                *) echo "$0: ignoring $f" ;;
            esac
        done
        unset PGUSER PGDATABASE
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "$0: PostgreSQL init done (user=$POSTGRES_USER db=$POSTGRES_DB host auth=$auth)"
fi

exec "$@"
