#!/usr/bin/env bash
# cinfer serve driven by the official `openai` npm package (installed by this
# test into a temp dir): completions and chat, streaming and not, n=2, stop,
# logprobs, seed, error classes. Skips (77) without node/npm or when npm
# cannot reach its registry.
. "$(dirname "$0")/serve_common.bash"
command -v node >/dev/null && command -v npm >/dev/null || { echo "SKIP: node/npm not installed"; exit 77; }
mkdir -p "$tmp/npm"
if ! (cd "$tmp/npm" && timeout 120 npm install --no-audit --no-fund --silent --no-save openai@4 >"$tmp/npm.log" 2>&1); then
    echo "SKIP: npm install openai failed (no network?)"
    tail -n 5 "$tmp/npm.log"
    exit 77
fi

start_server --api-key sekret --served-model-name tiny
cat >"$tmp/npm/t.js" <<'JS'
const OpenAI = require('openai');
const base = process.argv[2];
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'sekret', maxRetries: 0, timeout: 60000 });
let passed = 0, failed = 0;
function check(name, cond, info) {
  if (cond) { passed++; console.log('ok   ' + name); }
  else { failed++; console.log('FAIL ' + name + (info === undefined ? '' : ': ' + JSON.stringify(info))); }
}
(async () => {
  const prompt = 'def fibonacci(n):';
  const models = await client.models.list();
  check('models.list', models.data.length === 1 && models.data[0].id === 'tiny', models.data);

  const c = await client.completions.create({ model: 'tiny', prompt, max_tokens: 16, temperature: 0 });
  const greedy = c.choices[0].text;
  check('completions.create', c.id.startsWith('cmpl-') && greedy.length > 0 && c.usage.completion_tokens > 0, c);

  const n2 = await client.completions.create({ model: 'tiny', prompt, max_tokens: 8, n: 2, temperature: 1, seed: 3 });
  check('completions n=2', n2.choices.length === 2, n2.choices);
  const n2b = await client.completions.create({ model: 'tiny', prompt, max_tokens: 8, n: 2, temperature: 1, seed: 3 });
  check('completions seed reproducible', JSON.stringify(n2.choices.map(x => x.text)) === JSON.stringify(n2b.choices.map(x => x.text)));

  const stop = greedy.slice(3, 6);
  const s = await client.completions.create({ model: 'tiny', prompt, max_tokens: 16, temperature: 0, stop: [stop] });
  check('completions stop', s.choices[0].finish_reason === 'stop' && s.choices[0].text === greedy.slice(0, greedy.indexOf(stop)), s.choices[0]);

  const lp = await client.completions.create({ model: 'tiny', prompt, max_tokens: 4, temperature: 0, logprobs: 2 });
  const L = lp.choices[0].logprobs;
  check('completions logprobs', L && L.tokens.length === 4 && L.token_logprobs.every(x => x <= 0) && L.tokens.join('') === lp.choices[0].text, L);

  let stext = '', chunks = 0, usage = null;
  const st = await client.completions.create({ model: 'tiny', prompt, max_tokens: 16, temperature: 0, stream: true,
                                               stream_options: { include_usage: true } });
  for await (const ch of st) { chunks++; if (ch.choices.length) stext += ch.choices[0].text; if (ch.usage) usage = ch.usage; }
  check('completions stream', stext === greedy && chunks > 2 && usage && usage.completion_tokens > 0, { stext, greedy, usage });

  const messages = [{ role: 'system', content: 'You write code.' }, { role: 'user', content: 'def add(a, b):' }];
  const chat = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 12, temperature: 0,
                                                      logprobs: true, top_logprobs: 2 });
  const msg = chat.choices[0].message;
  check('chat.completions.create', chat.id.startsWith('chatcmpl-') && msg.role === 'assistant' && typeof msg.content === 'string', chat);
  check('chat logprobs', chat.choices[0].logprobs.content.length === chat.usage.completion_tokens &&
        chat.choices[0].logprobs.content[0].top_logprobs.length === 2, chat.choices[0].logprobs);

  let ctext = '', role = null, cusage = null;
  const cs = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 12, temperature: 0, stream: true,
                                                    stream_options: { include_usage: true } });
  for await (const ch of cs) {
    if (ch.choices.length) { if (ch.choices[0].delta.role) role = ch.choices[0].delta.role; ctext += ch.choices[0].delta.content || ''; }
    if (ch.usage) cusage = ch.usage;
  }
  check('chat stream', role === 'assistant' && ctext === msg.content && cusage && cusage.total_tokens > 0, { ctext, role });

  const cn = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 4, n: 2, seed: 1 });
  check('chat n=2', cn.choices.length === 2);

  try { await client.completions.create({ model: 'nope', prompt, max_tokens: 2 }); check('unknown model -> NotFoundError', false); }
  catch (e) { check('unknown model -> NotFoundError', e instanceof OpenAI.NotFoundError && /does not exist/.test(e.message), e.message); }
  try { await client.completions.create({ model: 'tiny', prompt, max_tokens: -1 }); check('bad max_tokens -> BadRequestError', false); }
  catch (e) { check('bad max_tokens -> BadRequestError', e instanceof OpenAI.BadRequestError, e.message); }
  const bad = new OpenAI({ baseURL: base + '/v1', apiKey: 'wrong', maxRetries: 0 });
  try { await bad.models.list(); check('wrong key -> AuthenticationError', false); }
  catch (e) { check('wrong key -> AuthenticationError', e instanceof OpenAI.AuthenticationError, e.message); }

  console.log(`node: passed ${passed}, failed ${failed}`);
  process.exit(failed ? 1 : 0);
})().catch(e => { console.log('FAIL exception: ' + e); process.exit(1); });
JS
if (cd "$tmp/npm" && timeout 180 node t.js "$base"); then ok "openai npm client checks"; else fail "openai npm client checks"; fi
stop_server
finish
