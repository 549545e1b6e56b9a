"""Runs `cinfer generate` on each golden prompt and compares token ids and text."""
import json
import os
import subprocess
import sys

src = os.environ.get("CINFER_SOURCE_DIR", ".")
binary = os.environ.get("CINFER_BIN", os.path.join(src, "build", "cinfer"))
model = os.path.join(src, "models", "tinyqwen2-code")
golden = json.load(open(os.path.join(model, "golden_public.json")))

passed = failed = 0
for p in golden["prompts"]:
    out = subprocess.run(
        [binary, "generate", "-m", model, "-p", p["prompt"], "-n", "48", "--temperature", "0",
         "--ignore-eos", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"FAIL {p['name']}: exit {out.returncode}: {out.stderr.strip()}")
        failed += 1
        continue
    r = json.loads(out.stdout)
    ok = (r["prompt_tokens"] == p["prompt_token_ids"] and r["tokens"] == p["greedy_token_ids"]
          and r["text"] == p["greedy_text"] and r["finish_reason"] == "length")
    if ok:
        passed += 1
    else:
        failed += 1
        first = next((i for i, (a, b) in enumerate(zip(r["tokens"], p["greedy_token_ids"])) if a != b), None)
        print(f"FAIL {p['name']}: first differing token {first}; prompt ids equal: "
              f"{r['prompt_tokens'] == p['prompt_token_ids']}; text equal: {r['text'] == p['greedy_text']}")
print(f"golden continuations: {passed}/{len(golden['prompts'])}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
