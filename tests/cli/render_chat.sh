#!/usr/bin/env bash
# `cinfer render-chat`: one public case per tokenizer through --jsonl, and one
# through plain stdin, compared byte for byte with the golden `rendered`;
# bad input gives one "error: ..." line and exit 1.
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
shared=${CINFER_SHARED_DIR:-$src/../shared}
[ -d "$shared/tokenizers" ] || { echo "SKIP: no $shared/tokenizers"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

for tk in qwen3 llama3 llama3_nobos; do
    dir=$shared/tokenizers/$tk
    # the last case (qwen3: tools) and a middle one, as requests + expected strings
    python3 - "$dir/chat_public.json" "$tmp/$tk" <<'PY'
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
pick = [cases[-1], cases[len(cases) // 2]]
with open(sys.argv[2] + ".in", "w") as f, open(sys.argv[2] + ".want", "w") as g:
    for c in pick:
        req = {k: c[k] for k in ("messages", "add_generation_prompt", "template_kwargs")}
        req["tools"] = c.get("tools")
        f.write(json.dumps(req, ensure_ascii=False) + "\n")
        g.write(json.dumps(c["rendered"]) + "\n")
open(sys.argv[2] + ".one", "w").write(json.dumps({k: pick[0][k] for k in ("messages", "add_generation_prompt", "template_kwargs")} | {"tools": pick[0].get("tools")}))
open(sys.argv[2] + ".onewant", "w").write(pick[0]["rendered"])
PY
    if "$bin" render-chat -m "$dir" --jsonl <"$tmp/$tk.in" >"$tmp/$tk.got" 2>"$tmp/$tk.err" &&
        python3 - "$tmp/$tk.got" "$tmp/$tk.want" <<'PY'; then
import json, sys
got = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
want = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
sys.exit(0 if got == want else 1)
PY
        ok "$tk --jsonl"
    else
        bad "$tk --jsonl: $(cat "$tmp/$tk.err")"
    fi
    if "$bin" render-chat -m "$dir" <"$tmp/$tk.one" >"$tmp/$tk.onegot" 2>"$tmp/$tk.err" &&
        cmp -s "$tmp/$tk.onegot" "$tmp/$tk.onewant"; then
        ok "$tk stdin (exact bytes)"
    else
        bad "$tk stdin: $(cat "$tmp/$tk.err")"
    fi
done

# --chat-template override
printf '{%% for m in messages %%}<{{ m.role }}:{{ m.content }}>{%% endfor %%}{{ bos_token }}' >"$tmp/t.jinja"
got=$(echo '{"messages": [{"role": "user", "content": "hi"}]}' |
    "$bin" render-chat -m "$shared/tokenizers/llama3" --chat-template "$tmp/t.jinja")
[ "$got" = "<user:hi><|begin_of_text|>" ] && ok "--chat-template" || bad "--chat-template: $got"

# errors: one line, "error: ...", exit 1
expect_err() {
    local name=$1 pattern=$2 input=$3
    shift 3
    local err rc lines
    err=$(printf '%s' "$input" | "$bin" render-chat "$@" 2>&1 >/dev/null)
    rc=$?
    lines=$(printf '%s\n' "$err" | grep -c .)
    if [ $rc -eq 1 ] && [ "$lines" = 1 ] && [[ $err == error:* ]] && printf '%s' "$err" | grep -q -- "$pattern"; then
        ok "$name: $err"
    else
        bad "$name (exit $rc, $lines lines, want /$pattern/): $err"
    fi
}
q=$shared/tokenizers/qwen3
expect_err "bad json" "invalid JSON" '{"messages": [' -m "$q"
expect_err "no messages" "messages" '{}' -m "$q"
expect_err "template error" "undefined" '{"messages": [{"role": "user"}]}' -m "$q"
printf '{{ raise_exception("no system messages") }}' >"$tmp/raise.jinja"
expect_err "raise_exception" "no system messages" '{"messages": []}' -m "$q" --chat-template "$tmp/raise.jinja"
printf '{%% for x in messages %%}' >"$tmp/syntax.jinja"
expect_err "syntax error" "line 1" '{"messages": []}' -m "$q" --chat-template "$tmp/syntax.jinja"
expect_err "no template" "chat_template" '{"messages": []}' -m "$shared/tokenizers/mistral"
expect_err "missing dir" "tokenizer_config.json" '{"messages": []}' -m "$tmp/nope"
expect_err "jsonl bad line" "line 2" $'{"messages": []}\nnope' -m "$shared/tokenizers/llama3" --jsonl

echo "render_chat: $passed passed, $failed failed"
[ $failed -eq 0 ]
