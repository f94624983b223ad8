#!/bin/sh
# devup-local/redis entrypoint: the common cases of the official image's.
set -e

# 'docker run IMAGE --appendonly yes' / 'docker run IMAGE /path/redis.conf'
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = 'redis-server' ]; then
    # Reachable from other containers unless told otherwise (as the official image).
    case " $* " in
        *" --protected-mode "*) ;;
        *)
            if [ -f "${2:-}" ] && grep -q '^protected-mode' "$2"; then :; else
                set -- "$@" --protected-mode no
            fi
            ;;
    esac
fi

exec "$@"
