#!/usr/bin/env bash
# The payflow benchmark in one command, from a fresh clone: bash bench/run.sh [options of bench/run.py]
# Needs PostgreSQL (a role that may CREATE DATABASE; BENCH_PG, default postgresql://postgres@127.0.0.1:5432/postgres)
# and Redis (BENCH_REDIS, default redis://127.0.0.1:6379/0) running; installs what else it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing wrk (Debian package)" >&2
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
  fi
  command -v wrk >/dev/null 2>&1 || {
    echo "bench: wrk is required (Debian/Ubuntu: sudo apt-get install wrk); aborting" >&2
    exit 2
  }
fi

make --no-print-directory install >/dev/null   # .venv with payflow and its dependencies
if [[ " $* " == *" --profile "* ]] && [ ! -x .venv/bin/py-spy ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check py-spy
fi
exec .venv/bin/python bench/run.py "$@"
