/* test_chat_template.c — the Jinja chat-template interpreter: every public
 * chat render of ../shared (qwen3, llama3, llama3_nobos) byte for byte, and
 * unit tests of the interpreter's semantics (expected outputs were checked
 * against Python jinja2 3.1.6 set up as transformers sets it up). */
#include "tokenizer/chat_template.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* renders src with the JSON context text; returns malloc'd output or NULL
 * (then *err holds the message) */
static char *render(const char *src, const char *ctx_json, ci_status *err) {
    ci_chat_template *t = NULL;
    json_error_t je;
    json_t *ctx = json_loads(ctx_json ? ctx_json : "{}", 0, &je);
    char *out = NULL;
    size_t len = 0;
    ci_status s = ci_chat_template_compile(src, &t);
    if (s.code == CI_OK) s = ci_chat_template_render(t, ctx, &out, &len);
    ci_chat_template_free(t);
    json_decref(ctx);
    if (err) *err = s;
    return s.code == CI_OK ? out : NULL;
}

#define CTX                                                                                        \
    "{\"l\": [3, 1, 2], \"d\": {\"b\": 2, \"a\": 1}, \"s\": \"  Hi There  \", \"n\": 5, "          \
    "\"msgs\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "              \
    "\"content\": \"a\"}]}"

static int n_unit;

static void expect(const char *src, const char *want) {
    ci_status s;
    char *got = render(src, CTX, &s);
    n_unit++;
    CHECKF(got && !strcmp(got, want), "template %s\n  want [%s]\n  got  [%s]", src, want,
           got ? got : s.msg);
    free(got);
}

static void expect_err(const char *src, const char *needle) {
    ci_status s;
    char *got = render(src, CTX, &s);
    n_unit++;
    CHECKF(!got && strstr(s.msg, needle), "template %s: want error containing '%s', got [%s]",
           src, needle, got ? got : s.msg);
    free(got);
}

static void unit_tests(void) {
    /* whitespace control, trim_blocks, lstrip_blocks */
    expect("a\n  {% if true %}\n  x\n  {% endif %}\n  b\n", "a\n  x\n  b");
    expect("|{%- if true -%}  y  {%- endif -%}  z", "|yz");
    expect("  {%+ if true %}p{% endif %}", "  p");
    expect("{{ 1 }} {{- 2 -}} {{ 3 }}", "123");
    expect("q {#- c -#} r", "qr");
    expect("{# c #}\nx", "x");
    expect("  {{ 'v' }}\n", "  v");
    expect("a\r\nb\rc\n", "a\nb\nc");
    expect("{% raw %}{{ x }}{% endraw %}", "{{ x }}");
    expect("{% if 1 %}\n  {%- for x in l %}\n    {{- x }}\n  {%- endfor %}\n{% endif %}", "312");
    expect("{% if 1 +%}\nc{% endif %}", "\nc");
    /* loops */
    expect("{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
           "{{ loop.length }}{{ loop.revindex }};{% endfor %}",
           "10TrueFalse33;21FalseFalse32;32FalseTrue31;");
    expect("{% for x in l %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}", "-1,3-2,1-,");
    expect("{% for x in [] %}no{% else %}empty{% endfor %}", "empty");
    expect("{% for x in l if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}", "3/2 2/2 ");
    expect("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", "b=2,a=1,");
    expect("{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}"
           "{% endif %}{{ x }}{% endfor %}",
           "3");
    expect("{% for m in msgs[::-1] %}{{ m.role[0] }}{% endfor %}", "au");
    expect("{% for c in 'hé' %}[{{ c }}]{% endfor %}", "[h][é]");
    expect("{% for i in range(1, 10, 4) %}{{ i }}{% endfor %}", "159");
    expect("{% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}", "aba");
    /* scoping, set, namespace */
    expect("{% set x = 1 %}{% for i in l %}{% set x = i %}{% endfor %}{{ x }}", "1");
    expect("{% set ns = namespace(c=0) %}{% for i in l %}{% set ns.c = ns.c + i %}{% endfor %}"
           "{{ ns.c }}",
           "6");
    expect("{% set x %}b{{ n }}{% endset %}{{ x | upper }}", "B5");
    expect("{% set a, b = 1, 2 %}{{ a }}{{ b }}", "12");
    expect_err("{% set l.x = 1 %}", "non-namespace");
    /* macros */
    expect("{% macro m(a, b=2, c='z') %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{{ m(1) }}"
           "{{ m(1, 3) }}{{ m(1, c=4) }}",
           "[12z][13z][124]");
    expect("{% macro f(k) %}{% if k > 0 %}{{ k }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
           "321");
    expect("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}", "<in>");
    /* expressions */
    expect("{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }}",
           "3.5 3 -4 2 1024 0.30000000000000004");
    expect("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 1e20 }} {{ 1.0 }}",
           "a1None abab [1, 2] 1e+20 1.0");
    expect("{{ 1 < 2 < 3 }}{{ 'a' in 'abc' }}{{ 'z' not in d }}{{ 0 or 'x' }}{{ 1 and 0 }}",
           "TrueTrueTruex0");
    expect("{{ 'y' if n > 3 else 'n' }}{{ 'never' if false }}", "y");
    expect("{{ [1, 'a', none, true, (1,), {'k': 1.5}] }}", "[1, 'a', None, True, (1,), {'k': 1.5}]");
    expect("{{ [\"it's\", 'a\\nb'] }}", "[\"it's\", 'a\\nb']");
    expect("{{ l[0] }}{{ l[-1] }}{{ l[1:] }}{{ 'héllo'[1] }}{{ 'abc'[::-1] }}{{ d.b }}{{ d['a'] }}",
           "32[1, 2]écba21");
    /* tests */
    expect("{{ x is defined }}{{ n is defined }}{{ none is none }}{{ s is string }}"
           "{{ d is mapping }}{{ l is iterable }}{{ n is number }}{{ n is integer }}"
           "{{ n is odd }}{{ 9 is divisibleby 3 }}{{ true is boolean }}{{ n is not none }}",
           "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
    /* filters */
    expect("{{ s | trim }}|{{ s | upper }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}",
           "Hi There|  HI THERE  |Hello World|Hello");
    expect("{{ l | first }}{{ l | last }}{{ l | join(',') }}{{ l | sort | list }}{{ l | min }}"
           "{{ l | max }}{{ l | sum }}{{ l | length }}{{ l | reverse | list }}",
           "323,1,2[1, 2, 3]1363[2, 1, 3]");
    expect("{{ d | items | list }}{{ d | dictsort }}", "[('b', 2), ('a', 1)][('a', 1), ('b', 2)]");
    expect("{{ undefined_x | default('dflt') }}{{ '' | default('e', true) }}{{ none | d('x') }}",
           "dflteNone");
    expect("{{ '42' | int + 1 }}{{ 'x' | int }}{{ '2.5' | float }}{{ 3 | string }}", "4302.53");
    expect("{{ msgs | map(attribute='role') | join(',') }}|"
           "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }}|"
           "{{ msgs | rejectattr('role', 'eq', 'user') | map(attribute='content') | first }}|"
           "{{ [1, 2, 3, 4] | select('odd') | list }}|{{ ['a', 'A', 'b'] | unique | list }}",
           "user,assistant|1|a|[1, 3]|['a', 'b']");
    expect("{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}", "a\n    b\n\n    c|  a\n  b");
    expect("{{ 2.5 | round }}{{ 3.5 | round }}{{ 2.675 | round(2) }}{{ -3 | abs }}", "2.04.02.673");
    expect("{{ '<a href=\"x\">' | e }}{{ '<b>' | safe }}", "&lt;a href=&#34;x&#34;&gt;<b>");
    /* |safe and |escape give markupsafe.Markup: '+' escapes the other side, '~' does not */
    expect("{{ 'a' | safe + '<b>' }}|{{ '<' + ('x' | safe) }}|{{ 'a' | safe ~ '<b>' }}|{{ ['<' | e] }}",
           "a&lt;b&gt;|&lt;x|a<b>|[Markup('&lt;')]");
    expect("{{ s | replace('i', 'I') }}|{{ '%s-%d' % ('a', 3) }}|{{ '{}{}'.format(1, 'x') }}",
           "  HI There  |a-3|1x");
    /* string methods */
    expect("{{ s.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}"
           "|{{ 'a,b,c'.rsplit(',', 1) }}",
           "Hi There|a|['a', 'b', '', 'c']|['a', 'b']|['a,b', 'c']");
    expect("{{ 'abc'.startswith('a') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'abcb'.find('b') }}"
           "{{ 'abcb'.count('b') }}{{ 'ab'.upper() }}{{ 'A'.lower() }}{{ d.get('zz', 9) }}",
           "TrueTrue12ABa9");
    /* tojson: json.dumps(ensure_ascii=False) separators and escaping */
    expect("{{ {'a': 'é\"\\\\\\n\\t\\x01', 'b': [1.5, none, true]} | tojson }}",
           "{\"a\": \"é\\\"\\\\\\n\\t\\u0001\", \"b\": [1.5, null, true]}");
    expect("{{ d | tojson(indent=2) }}", "{\n  \"b\": 2,\n  \"a\": 1\n}");
    expect("{{ d | tojson(sort_keys=true) }}{{ [] | tojson }}{{ 'x😀' | tojson }}",
           "{\"a\": 1, \"b\": 2}[]\"x😀\"");
    /* undefined */
    expect("[{{ nope }}][{{ d.nope }}][{{ nope | length }}][{% for x in nope %}x{% endfor %}]"
           "[{{ nope is undefined }}][{{ 'yes' if not nope }}]",
           "[][][0][][True][yes]");
    expect_err("{{ nope.attr }}", "'nope' is undefined");
    expect_err("{{ nope + 1 }}", "'nope' is undefined");
    /* errors */
    expect_err("{{ raise_exception('Conversation roles must alternate') }}",
               "Conversation roles must alternate");
    expect_err("line1\n{{ raise_exception('boom') }}", "line 2");
    expect_err("{% for x in l %}", "endfor");
    expect_err("{{ 1 / 0 }}", "division by zero");
    expect_err("{{ 'a' + 1 }}", "unsupported operand");
    expect_err("{% include 'x' %}", "unsupported tag");
    expect_err("{{ l | nosuchfilter }}", "no filter named");
    expect_err("{{ f( }}", "line 1");
}

static void limit_tests(void) {
    ci_status s;
    /* a runaway loop stops on the step limit */
    ci_chat_template *t = NULL;
    CHECK_OK(ci_chat_template_compile(
        "{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", &t));
    if (t) {
        ci_chat_template_set_limits(t, 100000, 0, 0, 0);
        char *out = NULL;
        size_t len;
        s = ci_chat_template_render(t, NULL, &out, &len);
        CHECKF(s.code != CI_OK && strstr(s.msg, "steps"), "%s", s.msg);
        free(out);
        ci_chat_template_free(t);
    }
    /* exponential string growth stops on the output/memory limit */
    char *o = render("{% set ns = namespace(s='ab') %}{% for i in range(100) %}"
                     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
                     NULL, &s);
    CHECKF(!o && (strstr(s.msg, "bytes") || strstr(s.msg, "memory")), "%s", s.msg);
    free(o);
    /* unbounded recursion stops on the depth limit */
    o = render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL, &s);
    CHECKF(!o && strstr(s.msg, "recursion"), "%s", s.msg);
    free(o);
    /* deeply nested source is a syntax error, not a stack overflow */
    char deep[4100];
    memset(deep, '(', 2000);
    strcpy(deep + 2000, "1");
    memset(deep + 2001, ')', 2000);
    deep[4001] = '\0';
    char src[4200];
    snprintf(src, sizeof src, "{{ %s }}", deep);
    o = render(src, NULL, &s);
    CHECKF(!o && strstr(s.msg, "nested"), "%s", s.msg);
    free(o);
    o = render("{{ range(100000000) | length }}", NULL, &s);
    CHECKF(!o && strstr(s.msg, "range"), "%s", s.msg);
    free(o);
}

static void big_dict_test(void) {
    /* large mappings from the request are indexed: lookups stay O(1) */
    json_t *ctx = json_object(), *big = json_object();
    char key[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        json_object_set_new(big, key, json_integer(i));
    }
    json_object_set_new(ctx, "big", big);
    ci_chat_template *t = NULL;
    CHECK_OK(ci_chat_template_compile(
        "{{ big.k49999 }} {{ big['k7'] }} {{ big.nope is defined }} {{ big | length }} "
        "{% set ns = namespace(n=0) %}{% for k in big %}{% if big[k] % 1000 == 0 %}"
        "{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.n }}",
        &t));
    char *out = NULL;
    size_t len = 0;
    if (t) CHECK_OK(ci_chat_template_render(t, ctx, &out, &len));
    CHECKF(out && !strcmp(out, "49999 7 False 50000 50"), "%s", out ? out : "(null)");
    free(out);
    ci_chat_template_free(t);
    json_decref(ctx);
}

static void config_tests(void) {
    const char *cfg_text =
        "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\","
        " \"unk_token\": null, \"chat_template\": [{\"name\": \"default\", \"template\": "
        "\"D{{ bos_token }}{{ eos_token }}{{ unk_token is defined }}\"}, {\"name\": \"tool_use\","
        " \"template\": \"T{{ tools | length }}\"}]}";
    ci_chat_config cfg;
    CHECK_OK(ci_chat_config_parse(cfg_text, strlen(cfg_text), &cfg));
    json_error_t je;
    json_t *req = json_loads("{\"messages\": [], \"add_generation_prompt\": true}", 0, &je);
    char *out = NULL;
    size_t len = 0;
    CHECK_OK(ci_chat_render_request(&cfg, NULL, req, &out, &len));
    CHECKF(out && !strcmp(out, "D<s></s>False"), "%s", out ? out : "(null)");
    free(out);
    json_object_set_new(req, "tools", json_loads("[{\"a\": 1}, {\"b\": 2}]", 0, &je));
    CHECK_OK(ci_chat_render_request(&cfg, NULL, req, &out, &len));
    CHECKF(out && !strcmp(out, "T2"), "%s", out ? out : "(null)");
    free(out);
    /* template kwargs override; an explicit template wins */
    json_object_set_new(req, "template_kwargs", json_loads("{\"bos_token\": \"B\"}", 0, &je));
    CHECK_OK(ci_chat_render_request(&cfg, "{{ bos_token }}{{ add_generation_prompt }}", req, &out,
                                    &len));
    CHECKF(out && !strcmp(out, "BTrue"), "%s", out ? out : "(null)");
    free(out);
    json_decref(req);
    ci_chat_config_free(&cfg);
    CHECK(ci_chat_config_parse("{\"chat_template\": 5}", 20, &cfg).code != CI_OK);
    CHECK(ci_chat_config_parse("[", 1, &cfg).code != CI_OK);
}

static void shared_cases(const char *name) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", test_shared_dir(), name);
    snprintf(path, sizeof path, "%s/chat_public.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!root) {
        printf("%s: no chat_public.json (%s)\n", name, je.text);
        return;
    }
    ci_chat_config cfg;
    ci_status s = ci_chat_config_load(dir, &cfg);
    CHECK_OK(s);
    if (s.code) {
        json_decref(root);
        return;
    }
    json_t *cases = json_object_get(root, "cases");
    size_t i, pass = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        char *out = NULL;
        size_t len = 0;
        s = ci_chat_render_request(&cfg, NULL, c, &out, &len);
        json_t *want = json_object_get(c, "rendered");
        bool ok = s.code == CI_OK && json_is_string(want) && len == json_string_length(want) &&
                  !memcmp(out, json_string_value(want), len);
        CHECKF(ok, "%s case %s: %s", name, json_string_value(json_object_get(c, "id")),
               s.code ? s.msg : "output differs");
        if (ok) pass++;
        free(out);
    }
    printf("%s: %zu/%zu\n", name, pass, json_array_size(cases));
    ci_chat_config_free(&cfg);
    json_decref(root);
}

int main(void) {
    unit_tests();
    limit_tests();
    big_dict_test();
    config_tests();
    printf("unit: %d templates\n", n_unit);
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/tokenizers", test_shared_dir());
    FILE *f = fopen(probe, "r");
    if (!f) {
        int rc = test_finish("test_chat_template");
        if (rc) return rc;
        test_skip("no ../shared/tokenizers: public chat cases not run");
    }
    fclose(f);
    shared_cases("qwen3");
    shared_cases("llama3");
    shared_cases("llama3_nobos");
    return test_finish("test_chat_template");
}
