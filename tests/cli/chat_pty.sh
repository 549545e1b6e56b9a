#!/usr/bin/env bash
# `cinfer chat` through a pseudo-terminal (python3's pty module): scripted
# turns; the first reply arrives in several pieces over time (streamed, not
# printed at the end); --verbose-prompt's rendered prompts show the history
# kept (turn 2 holds turn 1's message and reply), /reset clearing it,
# /system adding a system message, '\' continuation and """ blocks joining
# lines; Ctrl-C stops a streaming reply (kept, partial, in the history) and
# the chat goes on; /exit ends with status 0. Then the same without a terminal (stdin
# a pipe, EOF ends it).
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$bin" "$m" "$tmp" <<'PY'
import os, pty, select, sys, time

binary, model, tmp = sys.argv[1:4]
err_path = os.path.join(tmp, "stderr")
argv = [binary, "chat", "-m", model, "--temperature", "0", "-n", "400", "--ignore-eos",
        "--threads", "2", "--verbose-prompt"]
pid, fd = pty.fork()
if pid == 0:
    e = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(e, 2)
    os.execv(binary, argv)

failed = 0
def check(name, ok):
    global failed
    print(("ok   " if ok else "FAIL ") + name)
    failed += 0 if ok else 1

def read_until_prompt(timeout=60.0):
    """Output up to the next '> ' prompt, as (time, chunk) reads."""
    chunks, out, end = [], b"", time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append((time.time(), data))
        out += data
        if out.endswith(b"> ") or out.endswith(b". "):  # the prompt, or a continuation's
            break
    return chunks, out

def say(text):
    os.write(fd, text.encode() + b"\n")
    return read_until_prompt()

read_until_prompt()  # the first prompt (after the model loads)
t_sent = time.time()
chunks, out = say("hello there")
text = out.decode(errors="replace").replace("\r\n", "\n")
reply1 = text.split("\n", 1)[1].rsplit("> ", 1)[0].strip()  # after the terminal's echo
# streamed: reply bytes arrive in pieces spread over the reply's time, not all at its end
echo_len, seen, firsts = len(b"hello there\r\n"), 0, []
for t, data in chunks:
    seen += len(data)
    if seen > echo_len:
        firsts.append(t)
spread = (firsts[-1] - firsts[0]) / max(firsts[-1] - t_sent, 1e-9) if firsts else 0
check(f"turn 1: the reply streams ({len(firsts)} pieces, spread over {spread:.0%} of the turn)",
      len(firsts) >= 3 and spread > 0.25 and len(reply1) > 0)
say("second question")
say("/reset")
say("third")
say("/system Be brief.")
say("fourth")
say("line a\\")
say("line b")
say('"""')
say("block x")
say("")
say("block y")
say('"""')
say("/reset")
os.write(fd, b"stop me\n")  # Ctrl-C once the reply streams: it stops, the chat goes on
got, end = b"", time.time() + 30
while time.time() < end and got.count(b"\n") < 2:  # the echo, then a reply line
    if select.select([fd], [], [], 0.5)[0]:
        got += os.read(fd, 4096)
os.write(fd, b"\x03")
read_until_prompt()
say("after")
os.write(fd, b"/exit\n")
status = None
end = time.time() + 30
while time.time() < end:
    try:
        os.read(fd, 4096)
    except OSError:
        pass
    wpid, st = os.waitpid(pid, os.WNOHANG)
    if wpid:
        status = os.waitstatus_to_exitcode(st)
        break
    time.sleep(0.05)
check(f"/exit: exit status 0 (got {status})", status == 0)

err = open(err_path, encoding="utf-8", errors="replace").read()
prompts = [p.split("[/prompt]")[0] for p in err.split("[prompt: ")[1:]]
check(f"8 turns rendered (got {len(prompts)})", len(prompts) == 8)
if len(prompts) == 8:
    p1, p2, p3, p4, p5, p6, p7, p8 = prompts
    n = [int(p.split(" ")[0]) for p in prompts]
    check("turn 2 holds turn 1's message and reply", "hello there" in p2 and reply1[:40] in p2
          and "second question" in p2 and n[1] > n[0])
    check("/reset: turn 3 has no earlier turn", "hello there" not in p3 and "second" not in p3
          and "third" in p3 and n[2] < n[1])
    check("/system: turn 4 starts with the system message, keeps turn 3",
          "system\nBe brief.<|im_end|>" in p4 and p4.index("Be brief.") < p4.index("third")
          and "fourth" in p4)
    check("'\\' continuation joins lines", "line a\nline b<|im_end|>" in p5)
    check('""" block: one message, its lines kept', "user\nblock x\n\nblock y<|im_end|>" in p6)
    stats = [l for l in err.splitlines() if l.startswith("[") and "tok/s" in l]
    partial = p8.split("stop me<|im_end|>\n<|im_start|>assistant\n")[-1].split("<|im_end|>")[0]
    check(f"Ctrl-C stops the reply ({stats[6] if len(stats) > 6 else '?'}), the partial reply is kept",
          len(stats) == 8 and "interrupted" in stats[6] and "interrupted" not in stats[7]
          and "stop me" in p8 and 0 < len(partial) and int(stats[6][1:].split()[0]) < 400)
check("/reset and /system acknowledged", "[history cleared]" in err and "[system message set]" in err)
sys.exit(1 if failed else 0)
PY
rc=$?

# no terminal: stdin a pipe, EOF ends the chat
printf 'hi\n/system Terse.\nagain\n' |
    "$bin" chat -m "$m" --temperature 0 -n 4 --threads 2 --verbose-prompt >"$tmp/out" 2>"$tmp/err"
prc=$?
if [ $prc = 0 ] && [ "$(grep -c '^\[prompt: ' "$tmp/err")" = 2 ] && grep -q "Terse." "$tmp/err" &&
    [ "$(wc -l <"$tmp/out")" -ge 2 ] && ! grep -q '> ' "$tmp/out"; then
    echo "ok   without a terminal: 2 turns, no prompt marks, exit 0 at EOF"
else
    echo "FAIL without a terminal (rc $prc):"
    cat "$tmp/err" "$tmp/out"
    rc=1
fi
exit $rc
