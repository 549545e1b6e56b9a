#!/usr/bin/env bash
# GET /: the embedded chat page (HTML, no external resources, the pieces the
# page needs: /v1/chat/completions streaming, /v1/models, temperature,
# max_tokens, tokens/s), HEAD too; the API still answers beside it;
# `--no-webui` -> 404. Browser test: tools/webui_browser_test.sh.
source "$(dirname "$0")/serve_common.bash"

start_server
req GET /
check "GET / -> 200" [ "$status" = 200 ]
ctype=$(curl -s -m 10 -o /dev/null -w '%{content_type}' "$base/")
check "text/html ($ctype)" grep -q "^text/html" <<<"$ctype"
check "an HTML page" grep -qi '<!doctype html>' "$tmp/body"
for want in '/v1/chat/completions' '/v1/models' 'getReader' 'stream: true' 'id="temperature"' \
    'id="max_tokens"' 'tok/s'; do
    check "page has $want" grep -qF "$want" "$tmp/body"
done
check "no external resources (works offline)" bash -c "! grep -qiE '(src|href)=\"(https?:)?//' $tmp/body"
check "page size $(wc -c <"$tmp/body") bytes, same as the source" \
    cmp -s "$tmp/body" "$src/src/server/webui/index.html"
req GET /index.html
check "GET /index.html -> 200" [ "$status" = 200 ]
hs=$(curl -s -m 10 -I -o /dev/null -w '%{http_code}' "$base/")
check "HEAD / -> 200" [ "$hs" = 200 ]
expect_error "POST / -> 404" 404 POST / '{}'
req GET /v1/models
check "the API beside it" [ "$status" = 200 ]
stop_server

start_server --no-webui
expect_error "--no-webui: GET / -> 404" 404 GET /
req GET /health
check "--no-webui: /health 200" [ "$status" = 200 ]
stop_server
finish
