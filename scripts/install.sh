#!/usr/bin/env bash
# Installs everything bpfstore needs on Debian 12, from nothing: the Debian packages, a .venv made
# with the system python3, and the package (strict editable mode) with every extra.
# Safe to re-run: each step is skipped when already done, so a second run is quick and quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

# Wheels exist for every Python dependency (pyarrow, grpcio, duckdb, ...), so no compiler or
# headers are needed for Python. The eBPF engine compiles its programs with clang-19 (Debian 12
# main) and loads them with libbpf1.
DEB_PACKAGES=(python3 python3-venv ca-certificates clang-19 libbpf1 openjdk-17-jdk-headless)  # JDK: Spark + its extension
# The bcc engine (kernels without SYSCALL programs): Debian's bcc and kernel headers.
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_PACKAGES+=(python3-bpfcc "linux-headers-$ARCH")
DEB_PACKAGES+=(iproute2 util-linux)  # make bench-cluster (ip netns, tc); setpriv in the tests
PYTHON=${PYTHON:-/usr/bin/python3}
VENV=.venv

say() { printf '==> %s\n' "$*"; }

install_debian_packages() {
  command -v dpkg-query >/dev/null || { say "not Debian: skipping system packages"; return; }
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local apt=("${sudo[@]}" apt-get -y -qq -o=Dpkg::Use-Pty=0 install --no-install-recommends "${missing[@]}")
  # Refresh the package lists only when installing from the current ones fails (or there are
  # none, as in a fresh container): apt-get update is the slow part.
  if ! "${apt[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${apt[@]}" >/dev/null
  fi
}

make_venv() {
  # Reuse a working venv of Python >= 3.11; otherwise (re)create it with the system Python.
  if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    return
  fi
  say "creating $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
  local clear=()
  [ -e "$VENV/bin/python" ] && clear=(--clear)  # a broken or too old venv
  "$PYTHON" -m venv "${clear[@]}" "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
}

install_package() {
  # Strict editable mode is the one that maps bpfstore.* onto the repo folders and lets Spark
  # discover pyspark_bpfstore (DESIGN.md); it links files one by one, so re-run it when files
  # are added (the Makefile does).
  say "pip install -e '.[test,demo,dev,spark,dask,bench]' (strict editable)"
  # setuptools warns loudly on every editable build: keep its output for when pip fails.
  local log="$VENV/pip-install.log"
  "$VENV/bin/python" -m pip install --disable-pip-version-check \
    -e '.[test,demo,dev,spark,dask,bench]' --config-settings editable_mode=strict >"$log" 2>&1 \
    || { cat "$log" >&2; echo "pip install failed (log: $log)" >&2; exit 1; }
}

resolve_localhost() {
  # Spark binds its local servers to "localhost". Every Debian install resolves it through
  # /etc/hosts, but a bare root (debootstrap, some containers) has none: add the standard line.
  getent hosts localhost >/dev/null && return 0
  if [ "$(id -u)" -eq 0 ]; then
    say "adding '127.0.0.1 localhost' to /etc/hosts (localhost did not resolve)"
    echo "127.0.0.1 localhost" >>/etc/hosts
  else
    echo "warning: localhost does not resolve; Spark will fail until /etc/hosts has it" >&2
  fi
}

setup_bcc() {
  # bcc from Debian's python3-bpfcc, linked into the venv (never `pip install bcc`: that PyPI
  # name is an unrelated package); kernel headers where bcc looks for them (the newest Debian
  # headers when the running kernel has none: they compile its programs, which use no kernel
  # structs); tracefs for the tracepoints. Each step only when missing. The agent reports
  # precisely what is still missing (GetInfo, engine "bcc").
  local site release modules headers common
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$site/bcc" ]; then
    say "linking Debian's bcc into $site"
    ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
  fi
  [ "$(id -u)" -eq 0 ] || return 0
  release=$(uname -r)
  modules=/lib/modules/$release
  if [ ! -e "$modules/build/include" ]; then
    headers=$(ls -d /usr/src/linux-headers-*-"$ARCH" 2>/dev/null | sort -V | tail -1)
    if [ -n "$headers" ]; then
      say "linking $modules/build to $headers (bcc needs kernel headers)"
      mkdir -p "$modules"
      ln -sfn "$headers" "$modules/build"
      common=${headers%-"$ARCH"}-common
      [ -d "$common" ] && ln -sfn "$common" "$modules/source"
    fi
  fi
  if [ ! -d /sys/kernel/tracing/events ]; then
    say "mounting tracefs at /sys/kernel/tracing"
    mount -t tracefs tracefs /sys/kernel/tracing \
      || echo "warning: could not mount tracefs: the bcc engine stays unavailable" >&2
  fi
}

install_debian_packages
resolve_localhost
make_venv
install_package
setup_bcc
# The Spark extension jar: compiled from connector/spark/java against the pyspark wheel's jars.
say "spark extension: $("$VENV/bin/python" -m bpfstore.connector.spark.jar)"
say "installed: $("$VENV/bin/python" -c 'import bpfstore.v1, sys; print("bpfstore in", sys.prefix)')"
