#!/usr/bin/env bash
# Install what wasmcell's build, demo and tests need, only when missing. Debian 12, as root
# (or with sudo). Safe to run again: it changes nothing once everything is present.
set -euo pipefail

need_pkgs=()
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing system packages: ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

installed=$(rustup target list --installed)
for target in wasm32-wasip1 wasm32-wasip2; do
    if ! grep -qx "$target" <<<"$installed"; then
        echo "installing rust target $target"
        rustup target add "$target"
    fi
done
for comp in rustfmt clippy; do
    rustup component list --installed | grep -q "^$comp" || rustup component add "$comp"
done

# The test guests build offline (inside the workspace's build script): fetch their crates
# (pinned by guests/Cargo.lock) first. Nothing is downloaded when they are already here.
cargo fetch --locked --manifest-path "$(dirname "$0")/../guests/Cargo.toml" >/dev/null
