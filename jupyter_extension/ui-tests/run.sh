#!/usr/bin/env bash
# nb2pipe's JupyterLab browser tests, non-interactive (CI): Galata + Playwright on Debian's Chromium.
#
# Needs a Python environment with nb2pipe installed (`pip install -e ".[test]"` builds the
# labextension): the active one, else the repository's .venv. Installs chromium with apt when it
# is missing, the test dependencies from the committed yarn.lock, then runs the tests; Playwright's
# webServer starts `jupyter lab` on 127.0.0.1:${NB2PIPE_UI_PORT:-8899} (jupyter_server_test_config.py).
# Extra arguments go to `playwright test` (e.g. `-g cancel`). Screenshots: ui-tests/screenshots/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$HERE"
t() { echo "::: $(date +%T) $*"; }

export CI="${CI:-true}" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if ! command -v chromium >/dev/null 2>&1 && [ ! -x "${CHROMIUM_PATH:-/nonexistent}" ]; then
  t "apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null
fi
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium)}"

if ! command -v jupyter >/dev/null 2>&1 || ! command -v jlpm >/dev/null 2>&1; then
  if [ -x "$REPO/.venv/bin/jupyter" ]; then
    export PATH="$REPO/.venv/bin:$PATH"
  else
    echo "run.sh: no jupyter/jlpm: activate the environment nb2pipe is installed in" >&2
    exit 2
  fi
fi
if ! jupyter labextension list 2>&1 | grep -iqE "nb2pipe.*enabled.*OK"; then
  echo "run.sh: the nb2pipe labextension is not installed (pip install -e \".[test]\" in $REPO)" >&2
  jupyter labextension list 2>&1 | grep -i nb2pipe >&2 || true
  exit 2
fi

t "jlpm install (ui-tests, committed yarn.lock)"
jlpm install --immutable >/dev/null

t "playwright test"
rm -rf test-results
status=0
jlpm playwright test "$@" || status=$?

# A plain summary line for CI tools that do not read Playwright's own.
node -e '
const fs = require("fs");
try {
  const r = JSON.parse(fs.readFileSync("test-results/results.json", "utf-8")).stats;
  console.log(`${r.expected} passed, ${r.unexpected} failed, ${r.skipped} skipped, ${r.flaky} flaky`);
} catch (e) { console.log("0 passed, 1 failed (no Playwright results)"); }
' || true
t "done (exit $status)"
exit $status
