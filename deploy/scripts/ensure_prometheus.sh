#!/usr/bin/env bash
# Make sure the Prometheus server binary (and promtool) are on PATH, for tests/deploy/test_observability.py.
# Idempotent: does nothing when `prometheus` is already installed. Installs Debian's `prometheus` package
# (needs root and the Debian package mirror) without starting its system service.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
    echo "prometheus already installed: $(command -v prometheus)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus is missing and apt-get is not available: install Prometheus >= 2.40 by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Keep the package's post-install step from starting a Prometheus daemon on :9090;
# the tests start their own server on an ephemeral loopback port.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "installed $(prometheus --version 2>&1 | head -n1)"
