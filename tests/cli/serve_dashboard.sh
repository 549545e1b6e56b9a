#!/usr/bin/env bash
# deploy/: every metric the Grafana dashboard (deploy/grafana/cinfer.json)
# and the Helm chart (deploy/helm/cinfer) query is exported by a live
# server's /metrics (with the labels they select on); the chart renders with
# `helm template` where helm is installed, else a structure lint: Chart.yaml
# and values.yaml parse, every template's {{ }} and if/with/range/define ...
# end balance, every .Values path a template reads exists in values.yaml.
source "$(dirname "$0")/serve_common.bash"
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }

start_server
req POST /v1/completions '{"prompt": "def f(x):", "max_tokens": 4}'
check "a completion" [ "$status" = 200 ]
req GET /metrics
check "GET /metrics 200" [ "$status" = 200 ]
cp "$tmp/body" "$tmp/metrics.txt"
stop_server

if python3 - "$src/deploy" "$tmp/metrics.txt" <<'PY'; then ok "dashboard and chart metrics exported"; else fail "dashboard and chart metrics"; fi
import json, os, re, sys
deploy, metrics_file = sys.argv[1], sys.argv[2]
samples = {}  # sample name -> set of label names
TARGET_LABELS = {"namespace", "pod", "instance", "job", "container", "service"}  # added by Prometheus
for line in open(metrics_file):
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
    assert m, "unparsable /metrics line: " + line
    labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
    samples.setdefault(m.group(1), set()).update(labels)

def exprs(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in ("expr", "query", "definition") and isinstance(v, str):
                yield v
            else:
                yield from exprs(v)
    elif isinstance(o, list):
        for v in o:
            yield from exprs(v)

queries = list(exprs(json.load(open(os.path.join(deploy, "grafana", "cinfer.json")))))
for root, _, files in os.walk(os.path.join(deploy, "helm")):
    for f in files:
        queries += re.findall(r"cinfer:[a-zA-Z0-9_:]+\{[^}]*\}|cinfer:[a-zA-Z0-9_:]+", open(os.path.join(root, f)).read())
bad, names = [], set()
for q in queries:
    for name, sel in re.findall(r"(cinfer:[a-zA-Z0-9_:]+)(\{[^}]*\})?", q):
        names.add(name)
        if name not in samples:
            bad.append(f"{name} (in {q[:80]}) is not exported")
            continue
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", sel):
            if label not in samples[name] and label not in TARGET_LABELS:
                bad.append(f"{name} has no label {label}")
    for label in re.findall(r"by \(([^)]*)\)", q):
        for l in (x.strip() for x in label.split(",")):
            if l and not any(l in v for k, v in samples.items() if k.startswith("cinfer:")):
                bad.append(f"no cinfer metric has the label {l} (by clause of {q[:60]})")
print(f"{len(queries)} queries, {len(names)} metrics: {' '.join(sorted(names))}")
for b in bad:
    print("MISSING", b)
sys.exit(1 if bad or len(names) < 10 else 0)
PY

chart=$src/deploy/helm/cinfer
if command -v helm >/dev/null; then
    check "helm lint" helm lint "$chart"
    check "helm template (autoscaling, ServiceMonitor on)" bash -c \
        "helm template t '$chart' --set autoscaling.enabled=true --set metrics.serviceMonitor.enabled=true >'$tmp/rendered.yaml'"
else
    if python3 - "$chart" <<'PY'; then ok "chart lint (no helm here)"; else fail "chart lint"; fi
import os, re, sys
chart = sys.argv[1]
try:
    import yaml
except ImportError:
    yaml = None
def load(path):
    text = open(path).read()
    if yaml:
        return yaml.safe_load(text)
    assert "\t" not in text, path + ": a tab"
    return None
meta = load(os.path.join(chart, "Chart.yaml"))
values = load(os.path.join(chart, "values.yaml"))
bad = []
if yaml:
    for k in ("apiVersion", "name", "version"):
        if k not in meta:
            bad.append("Chart.yaml lacks " + k)
tdir = os.path.join(chart, "templates")
kinds = set()
for f in sorted(os.listdir(tdir)):
    text = open(os.path.join(tdir, f)).read()
    if text.count("{{") != text.count("}}"):
        bad.append(f + ": unbalanced {{ }}")
    opens = len(re.findall(r"\{\{-?\s*(if|with|range|define)\b", text))
    ends = len(re.findall(r"\{\{-?\s*end\b", text))
    if opens != ends:
        bad.append(f"{f}: {opens} if/with/range/define, {ends} end")
    if "\t" in text:
        bad.append(f + ": a tab")
    kinds.update(re.findall(r"^kind: (\w+)", text, re.M))
    for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
        node = values
        if node is None:
            continue
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                bad.append(f"{f}: .Values.{path} is not in values.yaml")
                break
            node = node[part]
for k in ("Deployment", "Service", "HorizontalPodAutoscaler"):
    if k not in kinds:
        bad.append("no " + k)
dep = open(os.path.join(tdir, "deployment.yaml")).read()
for want in ("livenessProbe", "readinessProbe", "path: /health", "nvidia.com/gpu" if False else "resources",
             "prometheus.io/scrape"):
    if want not in dep:
        bad.append("deployment.yaml lacks " + want)
if yaml and "nvidia.com/gpu" not in values["resources"]["limits"]:
    bad.append("values.yaml: no GPU request")
print("kinds:", " ".join(sorted(kinds)), "| yaml parser:", "yes" if yaml else "no")
for b in bad:
    print("LINT", b)
sys.exit(1 if bad else 0)
PY
fi
finish
