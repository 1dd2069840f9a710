#!/bin/sh
# The admin status page's screenshot, taken in headless Chromium by its test and kept as
# bench/results/status-page.png (the path the README and the issue point at).
set -eu
cd "$(dirname "$0")/.."
STATUS_PAGE_SCREENSHOT="$PWD/bench/results/status-page.png" PYTHONPATH="$PWD/src" \
    .venv/bin/pytest -q tests/integration/test_status_page.py
echo "saved bench/results/status-page.png"
