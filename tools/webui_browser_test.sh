#!/usr/bin/env bash
# The chat page in a real browser: starts `cinfer serve` on the demo model,
# drives GET / in headless Chromium (tools/webui_browser_test.mjs: load, model
# name, send a message, streamed reply, tokens/s, a second turn) and saves a
# screenshot (default docs/img/webui.png). Not part of ctest (it needs a
# browser); run by hand:
#   apt-get install chromium          # Debian's Chromium (/usr/bin/chromium)
#   tools/webui_browser_test.sh [SCREENSHOT.png]
# playwright-core is installed with npm into $PW_DIR (default
# ~/.cache/cinfer-webui-test) the first time.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export CINFER_SOURCE_DIR=$src
shot=${1:-$src/docs/img/webui.png}
export PW_DIR=${PW_DIR:-$HOME/.cache/cinfer-webui-test}
command -v "${CHROMIUM:-chromium}" >/dev/null || { echo "SKIP: no chromium (apt-get install chromium)"; exit 77; }
command -v node >/dev/null || { echo "SKIP: no node"; exit 77; }
if [ ! -d "$PW_DIR/node_modules/playwright-core" ]; then
    mkdir -p "$PW_DIR"
    (cd "$PW_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund playwright-core@1 >/dev/null)
fi
mkdir -p "$(dirname "$shot")"
# start_server (the serve tests' helper): a server on the demo model on a
# free loopback port, stopped on exit
source "$src/tests/cli/serve_common.bash"
start_server
timeout 180 node "$src/tools/webui_browser_test.mjs" "$base" "$shot" || { echo "FAIL"; exit 1; }
echo "passed"
