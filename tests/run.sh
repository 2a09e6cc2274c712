#!/usr/bin/env bash
# README's test command: make sure a Docker daemon answers (installing and starting Debian's
# docker.io when needed: the container tests run for real, never skipped) and the nb2pipe base
# image exists, then run the whole suite: pytest (extra arguments go to it), the JupyterLab
# extension's unit tests (node) and its browser tests (Galata on Debian's chromium, installed with
# apt when missing). NB2PIPE_SKIP_UI=1 leaves the browser tests out (a quick local loop).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q docker.io debootstrap >/dev/null \
      || { apt-get update -q >/dev/null && apt-get install -y -q docker.io debootstrap >/dev/null; }
  fi
  setsid dockerd >/tmp/nb2pipe-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 /tmp/nb2pipe-dockerd.log >&2; exit 1; }
fi
command -v debootstrap >/dev/null 2>&1 || apt-get install -y -q debootstrap >/dev/null

# The air-gapped base image the container tests build on (about a minute, once).
docker image inspect nb2pipe-base:py3.11 >/dev/null 2>&1 || .venv/bin/nb2pipe base-image --python 3.11

# Static checks first: they take seconds, the suite minutes.
.venv/bin/ruff check nb2pipe tests benchmarks examples
.venv/bin/lint-imports
status=0
.venv/bin/python -m pytest -q "$@" || status=$?

# The JupyterLab extension: logic tests without a browser, then the browser tests.
(cd jupyter_extension && ../.venv/bin/jlpm test) || status=$?
if [ "${NB2PIPE_SKIP_UI:-0}" != "1" ]; then
  PATH="$PWD/.venv/bin:$PATH" jupyter_extension/ui-tests/run.sh || status=$?
fi
exit $status
