// structured_npm.js — run by serve_structured_npm.sh: structured outputs and
// tool calls through the official openai npm client, validated with ajv and
// reference parsers. argv: base URL, N (requests per case).
const OpenAI = require('openai');
const { LengthFinishReasonError } = require('openai/error');
const Ajv = require('ajv');
const base = process.argv[2], N = parseInt(process.argv[3] || '3', 10);
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 600000 });
const ajv = new Ajv({ allErrors: true, strict: false });
// the engine's budget-aware masks end every constrained output within max_tokens (when it holds
// the grammar's shortest text): json_object and any number of parallel tool calls included
const MAXT = 256;
let passed = 0, failed = 0, done = 0, total = 0;
function check(name, cond, info) {
  if (cond) passed++;
  else { failed++; console.log('FAIL ' + name + (info === undefined ? '' : ': ' + JSON.stringify(info).slice(0, 600))); }
}
const messages = [{ role: 'user', content: 'Answer in JSON.' }];
const str = (n) => ({ type: 'string', maxLength: n });
const schemas = [
  ['flat', { type: 'object', properties: { name: str(12), ok: { type: 'boolean' } }, required: ['name', 'ok'], additionalProperties: false }],
  ['nested', { type: 'object', properties: { user: { type: 'object', properties: { id: { type: 'integer', minimum: 1, maximum: 999 }, tag: str(8) }, required: ['id', 'tag'], additionalProperties: false }, active: { type: 'boolean' } }, required: ['user', 'active'], additionalProperties: false }],
  ['array bounds', { type: 'object', properties: { xs: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, minItems: 2, maxItems: 4 } }, required: ['xs'], additionalProperties: false }],
  ['enum', { type: 'object', properties: { color: { enum: ['red', 'green', 'blue'] }, size: { enum: [1, 2, 3] } }, required: ['color', 'size'], additionalProperties: false }],
  ['anyOf', { type: 'object', properties: { v: { anyOf: [{ type: 'integer', minimum: -5, maximum: 5 }, { type: 'boolean' }, str(6)] } }, required: ['v'], additionalProperties: false }],
  ['integer range', { type: 'object', properties: { year: { type: 'integer', minimum: 1900, maximum: 2100 }, neg: { type: 'integer', minimum: -50, maximum: -10 } }, required: ['year', 'neg'], additionalProperties: false }],
  ['$defs', { $defs: { pt: { type: 'object', properties: { x: { type: 'integer', minimum: 0, maximum: 99 }, y: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['x', 'y'], additionalProperties: false } }, type: 'object', properties: { a: { $ref: '#/$defs/pt' }, b: { $ref: '#/$defs/pt' } }, required: ['a', 'b'], additionalProperties: false }],
  ['array of objects', { type: 'object', properties: { items: { type: 'array', minItems: 1, maxItems: 3, items: { type: 'object', properties: { k: str(5), n: { type: 'integer', minimum: 0, maximum: 100 } }, required: ['k', 'n'], additionalProperties: false } } }, required: ['items'], additionalProperties: false }],
  ['const + nullable', { type: 'object', properties: { kind: { const: 'point' }, note: { anyOf: [str(10), { type: 'null' }] } }, required: ['kind', 'note'], additionalProperties: false }],
  ['number + string enum array', { type: 'object', properties: { score: { type: 'number', minimum: 0 }, tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 } }, required: ['score', 'tags'], additionalProperties: false }],
];

async function one(name, fn, validate) {
  total++;
  let r;
  try { r = await fn(); } catch (e) {
    if (e instanceof LengthFinishReasonError) { check(name + ' completes', false, 'length'); return; }
    check(name, false, e.message); return;
  }
  if (r === null) { check(name + ' completes', false, 'length'); return; }
  done++;
  const v = validate(r);
  check(name, v === true, v);
}

function rf(name, schema) {
  return { type: 'json_schema', json_schema: { name: name.replace(/[^a-zA-Z0-9_-]/g, '_'), schema, strict: true } };
}

async function schemaCase(name, schema, i, stream) {
  const validate = ajv.compile(schema);
  const args = { model: 'tiny', messages, max_tokens: MAXT, temperature: 1.0, seed: 100 + i, response_format: rf(name, schema) };
  await one(`schema ${name} #${i}${stream ? ' stream' : ''}`, async () => {
    let msg;
    if (stream) {
      const s = client.beta.chat.completions.stream({ ...args, stream: true });
      const fin = await s.finalChatCompletion();
      if (fin.choices[0].finish_reason !== 'stop') return null;
      msg = fin.choices[0].message;
      // the stream helper parses only zod formats: the reassembled text itself
      return { value: msg.parsed ?? JSON.parse(msg.content) };
    } else {
      const c = await client.beta.chat.completions.parse(args);
      if (c.choices[0].finish_reason !== 'stop') return null;
      msg = c.choices[0].message;
    }
    return { value: msg.parsed };
  }, (p) => validate(p.value) ? true : { parsed: p.value, errors: validate.errors });
}

async function textCase(name, extra, i, ok) {
  await one(`${name} #${i}`, async () => {
    const c = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: MAXT, temperature: 1.0, seed: 200 + i, ...extra });
    return c.choices[0].finish_reason === 'stop' ? c.choices[0].message.content : null;
  }, (t) => ok(t) ? true : { text: t });
}

// reference parsers for the GBNF cases
function arith(s) { // expr ::= term (("+"|"-"|"*") term)* ; term ::= num | "(" expr ")"
  let p = 0;
  const term = () => { if (s[p] === '(') { p++; if (!expr() || s[p] !== ')') return false; p++; return true; }
    const m = /^[0-9]{1,4}/.exec(s.slice(p)); if (!m) return false; p += m[0].length; return true; };
  const expr = () => { if (!term()) return false; while ('+-*'.includes(s[p]) && p < s.length) { p++; if (!term()) return false; } return true; };
  return expr() && p === s.length;
}
const gbnfJson = String.raw`root ::= object
value ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ( string ":" value ("," string ":" value){0,3} )? "}"
array ::= "[" ( value ("," value){0,3} )? "]"
string ::= "\"" [a-z ]{0,8} "\""
number ::= "-"? ("0" | [1-9] [0-9]{0,3})`;
const gbnfArith = String.raw`root ::= expr
expr ::= term (("+" | "-" | "*") term){0,4}
term ::= [0-9]{1,4} | "(" expr ")"`;
const gbnfKv = String.raw`root ::= pair ("\n" pair){0,3}
pair ::= key "=" val
key ::= [a-z] [a-z_]{0,7}
val ::= [0-9]{1,3} | "\"" [a-zA-Z ]{0,10} "\""`;
const regexes = [
  ['[0-9]{3}-[0-9]{4}', /^[0-9]{3}-[0-9]{4}$/],
  ['(yes|no|maybe)', /^(yes|no|maybe)$/],
  ['[A-Z][a-z]{1,8} [A-Z][a-z]{1,8}', /^[A-Z][a-z]{1,8} [A-Z][a-z]{1,8}$/],
  ['[a-z]{1,10}@[a-z]{1,10}\\.(com|org)', /^[a-z]{1,10}@[a-z]{1,10}\.(com|org)$/],
  ['(0|[1-9][0-9]{0,2})\\.[0-9]{2}', /^(0|[1-9][0-9]{0,2})\.[0-9]{2}$/],
];

const tools = [
  { type: 'function', function: { name: 'get_weather', strict: true, parameters: { type: 'object', properties: { city: str(12), days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'], additionalProperties: false } } },
  { type: 'function', function: { name: 'set_alarm', strict: true, parameters: { type: 'object', properties: { hour: { type: 'integer', minimum: 0, maximum: 23 }, label: { enum: ['work', 'gym'] } }, required: ['hour', 'label'], additionalProperties: false } } },
];
const toolValid = Object.fromEntries(tools.map(t => [t.function.name, ajv.compile(t.function.parameters)]));
function callsOk(msg, finish, want) {
  const calls = msg.tool_calls || [];
  if (finish !== 'tool_calls' || calls.length < 1) return { finish, msg };
  for (const c of calls) {
    if (!/^call_/.test(c.id) || c.type !== 'function' || !toolValid[c.function.name]) return { call: c };
    if (want && c.function.name !== want) return { call: c, want };
    let a; try { a = JSON.parse(c.function.arguments); } catch (e) { return { call: c, err: e.message }; }
    if (!toolValid[c.function.name](a)) return { call: c, errors: toolValid[c.function.name].errors };
  }
  return true;
}
async function toolCase(choice, i, stream, parallel) {
  const want = typeof choice === 'object' ? choice.function.name : null;
  const args = { model: 'tiny', messages: [{ role: 'user', content: 'Use a tool.' }], max_tokens: MAXT, temperature: 1.0, seed: 300 + i,
                 tools, tool_choice: choice, parallel_tool_calls: parallel };
  await one(`tools ${want || choice}${parallel ? '' : ' single'} #${i}${stream ? ' stream' : ''}`, async () => {
    const c = stream ? await client.beta.chat.completions.stream({ ...args, stream: true }).finalChatCompletion()
                     : await client.chat.completions.create(args);
    if (c.choices[0].finish_reason === 'length') return null;
    if (!parallel && (c.choices[0].message.tool_calls || []).length !== 1) return { single: false };
    return c.choices[0];
  }, (ch) => ch.single === false ? ch : callsOk(ch.message, ch.finish_reason, want));
}

(async () => {
  const t0 = Date.now();
  const jobs = [];
  for (let i = 0; i < N; i++) {
    for (const [name, schema] of schemas) { jobs.push(() => schemaCase(name, schema, i, false)); jobs.push(() => schemaCase(name, schema, i, true)); }
    jobs.push(() => textCase('json_object', { response_format: { type: 'json_object' } }, i, (t) => { try { const v = JSON.parse(t); return v && typeof v === 'object' && !Array.isArray(v); } catch (e) { return false; } }));
    regexes.forEach(([re, js], k) => jobs.push(() => textCase(`regex ${k}`, { guided_regex: re }, i, (t) => js.test(t))));
    jobs.push(() => textCase('gbnf json', { guided_grammar: gbnfJson }, i, (t) => { try { const v = JSON.parse(t); return typeof v === 'object' && !Array.isArray(v); } catch (e) { return false; } }));
    jobs.push(() => textCase('gbnf arithmetic', { guided_grammar: gbnfArith }, i, arith));
    jobs.push(() => textCase('gbnf key=value', { grammar: gbnfKv }, i, (t) => t.split('\n').every(l => /^[a-z][a-z_]{0,7}=([0-9]{1,3}|"[a-zA-Z ]{0,10}")$/.test(l))));
    jobs.push(() => toolCase('required', i, false, true));
    jobs.push(() => toolCase('required', i, true, false));
    jobs.push(() => toolCase({ type: 'function', function: { name: 'set_alarm' } }, i, false, true));
    jobs.push(() => toolCase({ type: 'function', function: { name: 'get_weather' } }, i, true, true));
  }
  // at most 48 in flight: the server answers 503 past --max-num-seqs + --max-waiting
  let next = 0;
  await Promise.all(Array.from({ length: 48 }, async () => { while (next < jobs.length) await jobs[next++](); }));

  // tool_choice auto: a Hermes call forced by a grammar is parsed out of the text, streamed and not
  const forced = String.raw`root ::= "On it." "\n<tool_call>\n{\"name\": \"set_alarm\", \"arguments\": {\"hour\": " [0-9] ", \"label\": \"gym\"}}\n</tool_call>"`;
  const autoArgs = { model: 'tiny', messages, max_tokens: 200, temperature: 1.0, tools, guided_grammar: forced };
  const a = await client.chat.completions.create(autoArgs);
  check('tools auto', callsOk(a.choices[0].message, a.choices[0].finish_reason, 'set_alarm') === true && a.choices[0].message.content === 'On it.', a.choices[0]);
  let content = '';
  const s = client.beta.chat.completions.stream({ ...autoArgs, stream: true });
  s.on('content', (d) => { content += d; });
  const af = await s.finalChatCompletion();
  check('tools auto stream', callsOk(af.choices[0].message, af.choices[0].finish_reason, 'set_alarm') === true && content.trim() === 'On it.', { content, m: af.choices[0] });
  // the call and its result go back into the history (assistant tool_calls + a tool message)
  const hist = [...messages, a.choices[0].message, { role: 'tool', tool_call_id: (a.choices[0].message.tool_calls || [{}])[0].id, content: '{"ok": true}' }];
  const h = await client.chat.completions.create({ model: 'tiny', messages: hist, max_tokens: 4, tools });
  check('history with tool_calls and a tool message', h.choices.length === 1 && h.usage.prompt_tokens > a.usage.prompt_tokens, h.usage);
  const none = await client.chat.completions.create({ ...autoArgs, tool_choice: 'none' });
  check('tools none: no parsing', !none.choices[0].message.tool_calls && /<tool_call>/.test(none.choices[0].message.content), none.choices[0]);

  // bad constraints: 400 (BadRequestError), never a hang
  const bad = [
    ['unsupported keyword', { response_format: rf('bad', { type: 'object', not: { required: ['a'] } }) }],
    ['unsatisfiable range', { response_format: rf('bad', { type: 'integer', minimum: 5, maximum: 3 }) }],
    ['bad regex', { guided_regex: '(ab' }],
    ['bad gbnf', { guided_grammar: 'root ::= (' }],
    ['two constraints', { guided_regex: 'a', response_format: { type: 'json_object' } }],
    ['named tool not in tools', { tools, tool_choice: { type: 'function', function: { name: 'nope' } } }],
    ['required without tools', { tool_choice: 'required' }],
  ];
  for (const [name, extra] of bad) {
    for (const stream of [false, true]) {
      try {
        const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, stream, ...extra });
        if (stream) for await (const _ of r) { /* drain */ }
        check(`${name}${stream ? ' stream' : ''} -> 400`, false, 'accepted');
      } catch (e) { check(`${name}${stream ? ' stream' : ''} -> 400`, e instanceof OpenAI.BadRequestError, e.message); }
    }
  }
  const secs = (Date.now() - t0) / 1000;
  console.log(`constrained requests: ${done}/${total} completed (${(100 * done / total).toFixed(1)}%) in ${secs.toFixed(1)} s; N = ${N}`);
  console.log(`${passed} passed, ${failed} failed`);
  // a constrained request that ran out of max_tokens counts as a failure above
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log('FAIL ' + e.stack); process.exit(1); });
