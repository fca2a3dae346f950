#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The end-to-end pipeline (jobs/dml-pipeline) on the local 3-node cluster
# with the real Fashion-MNIST, short MLP variants so that it takes minutes:
#  (a) 3 variants and one that fails (its loss diverges): every step runs as
#      a Slurm job; selection on the validation split picks the most
#      accurate survivor (each figure checked against dml-train's own
#      evaluation of the validation split in its metrics) and names the
#      failed variant with dml-train's error; the winner is registered with
#      its lineage and, with no production model yet, promoted; batch
#      inference of production over the test set completes; the report's
#      plots are valid PNG and SVG, each plot's data file equals the metrics,
#      the confusion matrix equals the inference report's, and index.html
#      shows them; each variant's effective configuration (dml-train
#      --print-config=json) is in the run record and the training record,
#      and the report shows its lr, batch, epochs, optimizer and seed;
#  (b) without the failing variant: no training job (every variant
#      memoized), selection runs again (its inputs changed);
#  (c) the same again: every step memoized, nothing submitted;
#  (d) one hyperparameter of one variant changed: only that variant trains,
#      the steps after it run again;
#  (e) a worse candidate (its own config, same registry): not promoted, both
#      figures reported, production unchanged; a better one: promoted;
#  (f) configs with an unknown model, a bad hyperparameter, a key the
#      pipeline owns, a variant given twice or a key given twice in
#      [defaults] (both lines named), a --registry that is a file and a
#      16-hex-digit --alias: refused, exit 2, before any job is submitted; a
#      submission sbatch refuses: nothing of it left queued;
#  (g) a later step that fails names its cause in the run's status:
#      production's model file replaced by another version's is refused at
#      promotion, the status naming the version, the file and both hashes.
. "$(dirname "$0")/lib.sh"
cluster_start 3
work=$CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"
fm=${DML_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -e "$fm/train-images-idx3-ubyte.gz" ] || skip_or_fail "Fashion-MNIST is not installed in $fm (package dataset-fashion-mnist)"
for p in jq gnuplot; do command -v "$p" >/dev/null || skip_or_fail "$p is not installed (run scripts/install-deps)"; done
export PATH=$abs_top_builddir/io:$abs_top_builddir/trainer:$abs_top_builddir/serve-batch:$abs_top_builddir/registry:$PATH
pipeline=$abs_top_srcdir/jobs/dml-pipeline
pipe=$work/pipe
reg=$work/reg

# runs the pipeline, waits for it; the run's directory in $rd
run_pipeline() { # name config [options]
    local name=$1 config=$2
    shift 2
    "$pipeline" --dir "$pipe" --registry "$reg" --config "$config" --fashion-mnist "$fm" --parts 2 \
        --wait --timeout 900 "$@" >"$name.out" 2>&1 || fail_logs "pipeline run $name failed" "$name.out" \
        "$(ls -d "$pipe"/runs/* | tail -n 1)"/*.out
    rd=$(ls -d "$pipe"/runs/* | tail -n 1)
}
prod() { "$registry" --registry "$reg" alias production | jq -r .version; }

cat >a.ini <<'EOF'
[defaults]
batch = 64
lr = 0.05
seed = 1
[variant small]
model = mlp:784-16-10
epochs = 1
[variant wide]
model = mlp:784-64-10
epochs = 1
[variant deep]
model = mlp:784-32-16-10
epochs = 1
[variant diverges]
model = mlp:784-32-10
lr = 1e6
EOF
grep -v -e '^\[variant diverges\]' -e '^lr = 1e6' -e '^model = mlp:784-32-10$' a.ini >b.ini

# ---- (a) the whole pipeline with a failing variant --------------------------------
run_pipeline a a.ini
grep -q "ingest: job" a.out && grep -q "train: array job" a.out || fail_logs "run a did not submit ingest and training" a.out
[ "$(cat "$rd/variants.train")" = "$(printf 'small\nwide\ndeep\ndiverges')" ] || fail "run a did not train all 4 variants"
sel=$rd/selection.json
json "$sel" >/dev/null
[ "$(json "$sel" '[f["variant"] for f in d["outputs"]["failed"]]')" = "['diverges']" ] ||
    fail_logs "the failed variants are $(json "$sel" 'd["outputs"]["failed"]'), not diverges alone" "$rd/fanin.out" "$sel"
json "$sel" 'd["outputs"]["failed"][0]["reason"]' | grep -q "loss became nan" ||
    fail "the failure is not named by dml-train's error: $(json "$sel" 'd["outputs"]["failed"][0]["reason"]')"
# each figure against dml-train's own evaluation of the validation split (its
# --test), and the winner is the most accurate
/usr/bin/python3 - "$sel" "$pipe" <<'PY' || fail "selection is not the best of the survivors (above)"
import glob, json, sys
sel = json.load(open(sys.argv[1]))["outputs"]
best = max(sel["variants"], key=lambda v: v["val_accuracy"])
assert sel["winner"] == best["variant"], "winner %s, best %s" % (sel["winner"], best)
assert len(sel["variants"]) == 3, sel["variants"]
for v in sel["variants"]:
    (m,) = glob.glob("%s/variants/%s-%s/metrics.jsonl" % (sys.argv[2], v["variant"], v["train_key"][:12]))
    last = [json.loads(l) for l in open(m) if '"epoch"' in l and json.loads(l)["type"] == "epoch"][-1]
    assert abs(last["test_accuracy"] - v["val_accuracy"]) < 1e-4, (v, last)
print("selection:", [(v["variant"], v["val_accuracy"]) for v in sel["variants"]], "->", sel["winner"])
PY
winner=$(json "$sel" 'd["outputs"]["winner"]')
p1=$(prod)
[ "$(json "$rd/promotion.json" 'd["outputs"]["promoted"], d["outputs"]["candidate"]')" = "(True, '$p1')" ] ||
    fail "the winner was not promoted (no production yet): $(cat "$rd/promotion.json")"
"$registry" --registry "$reg" show production >show.json
[ "$(json show.json 'd["name"], d["dataset"]["hash"] == d["data"]["train"], d["metrics"]["val_accuracy"] > 0.5, d["params"]["model"], d["pipeline"]["run"], d["job"] != ""')" = \
  "('$winner', True, True, '$(grep -A3 "^\[variant $winner\]" a.ini | sed -n 's/^model = //p')', '$(basename "$rd")', True)" ] || fail "the registered lineage is wrong: $(cat show.json)"
inf=$(ls -d "$pipe"/infer/"$p1"-*)
[ "$(json "$inf/report.json" 'd["model"]["hash"], d["samples"]')" = "('$p1', 10000)" ] ||
    fail "batch inference did not run production $p1 over the 10000 test samples"
rep=$(cat "$pipe/report/latest")
/usr/bin/python3 - "$rep" "$inf/report.json" "$pipe" "$rd" <<'PY' || fail "the report's plots or data are wrong (above)"
import json, os, struct, sys, xml.etree.ElementTree as ET, glob
rep, infrep, pipe, rd = sys.argv[1:5]
def png_ok(p):
    b = open(p, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", p
    w, h = struct.unpack(">II", b[16:24])
    assert w > 100 and h > 100 and b.rstrip()[-8:-4] == b"IEND", p
def svg_ok(p):
    assert ET.parse(p).getroot().tag.endswith("svg"), p
sel = json.load(open(os.path.join(rd, "selection.json")))["outputs"]
html = open(os.path.join(rep, "index.html")).read()
plots = ["throughput", "confusion", "promotion"] + ["curves-" + v["variant"] for v in sel["variants"]]
for b in plots:
    png_ok(os.path.join(rep, b + ".png")); svg_ok(os.path.join(rep, b + ".svg"))
    assert b + ".png" in html, "index.html does not show " + b
for v in sel["variants"]:
    (m,) = glob.glob("%s/variants/%s-%s/metrics.jsonl" % (pipe, v["variant"], v["train_key"][:12]))
    ep = [r for r in map(json.loads, open(m)) if r["type"] == "epoch"]
    rows = [l.split() for l in open(os.path.join(rep, "curves-%s.dat" % v["variant"])) if not l.startswith("#")]
    assert len(rows) == len(ep), (v, rows)
    for r, e in zip(rows, ep):
        assert int(r[0]) == e["epoch"] and [float(x) for x in r[1:]] == [e["loss"], e["accuracy"], e["test_loss"], e["test_accuracy"]], (r, e)
blocks = open(os.path.join(rep, "throughput.dat")).read().split("\n\n\n")
steps = {v["variant"]: [r for r in map(json.loads, open(glob.glob("%s/variants/%s-*/metrics.jsonl" % (pipe, v["variant"]))[0])) if r["type"] == "step"] for v in sel["variants"]}
for b, v in zip(blocks, sel["variants"]):
    got = [tuple(map(float, l.split())) for l in b.splitlines() if l and not l.startswith("#")]
    assert got == [(s["step"], s["samples_per_s"]) for s in steps[v["variant"]]], v["variant"]
cm = json.load(open(infrep))["confusion"]
cells = [tuple(map(int, l.split())) for l in open(os.path.join(rep, "confusion.dat")) if l.strip() and not l.startswith("#")]
assert cells == [(i, j, cm[i][j]) for i in range(len(cm)) for j in range(len(cm))], "confusion.dat"
assert "diverges" in html and "loss became nan" in html, "the page does not name the failed variant"
print("report: %d plots as PNG and SVG, their data equal to the metrics and the inference report" % len(plots))
PY
# the effective configuration of each variant: dml-train's own account,
# recorded for the run and with the model, shown on the report
/usr/bin/python3 - "$rd" "$pipe" "$rep" <<'PY' || fail "the variants' effective configurations are not recorded or shown (above)"
import glob, json, os, sys
rd, pipe, rep = sys.argv[1:4]
want = {"small": (0.05, 64, 1, 1), "wide": (0.05, 64, 1, 1), "deep": (0.05, 64, 1, 1), "diverges": (1e6, 64, 3, 1)}
summary = open(os.path.join(rep, "summary.txt")).read()
for v, (lr, batch, epochs, seed) in want.items():
    c = json.load(open(os.path.join(rd, "variants", v + ".config.json")))
    assert (c["lr"], c["batch"], c["epochs"], c["seed"]) == (lr, batch, epochs, seed), (v, c)
    assert c["train"].endswith("/train") and c["test"].endswith("/val"), (v, c)
    line = [l.split() for l in summary.splitlines() if l.split()[:1] == [v]][-1]
    shown = "%g" % c["lr"] if isinstance(c["lr"], float) else str(c["lr"])
    assert line[1:] == [c["optimizer"], shown, str(batch), str(epochs), str(seed)], (v, line)
for v in ("small", "wide", "deep"):
    recs = [json.load(open(f)) for f in glob.glob(pipe + "/memo/train/*.json")]
    (r,) = [r for r in recs if r["variant"] == v]
    assert r["config"] == json.load(open(os.path.join(rd, "variants", v + ".config.json"))), (v, r)
print("configurations recorded and shown:", {v: w[0] for v, w in want.items()})
PY
echo "ok: (a) ingest, 4 variants as an array (1 failed, named), selection on validation, registration, promotion, inference, report"

# ---- (b) the failing variant left out: training memoized ---------------------------
run_pipeline b b.ini
! grep -q "train: array job\|ingest: job" b.out || fail_logs "run b trained or ingested again" b.out
for v in small wide deep; do grep -q "train $v: memoized, skipped" b.out || fail_logs "run b did not skip $v" b.out; done
[ "$(prod)" = "$p1" ] || fail "production changed in run b"
echo "ok: (b) unchanged variants are not trained again"

# ---- (c) unchanged: every step memoized ---------------------------------------------
t0=$SECONDS
run_pipeline c b.ini
tc=$((SECONDS - t0))
grep -q "every step memoized: nothing submitted" c.out || fail_logs "run c submitted work" c.out
[ ! -e "$rd/jobs" ] || fail "run c submitted jobs: $(cat "$rd/jobs")"
for s in ingest "train small" "train wide" "train deep" select register promote infer report; do
    grep -q "$s: memoized, skipped" c.out || fail_logs "run c does not say $s was skipped" c.out
done
echo "ok: (c) an unchanged pipeline skips every step and submits nothing ($tc s)"

# ---- (d) one hyperparameter changed ---------------------------------------------------
sed '/^\[variant wide\]/,/^\[/ s/^epochs = 1$/epochs = 2/' b.ini >d.ini
cmp -s b.ini d.ini && fail "d.ini does not differ"
run_pipeline d d.ini
[ "$(cat "$rd/variants.train")" = wide ] || fail "run d trained $(cat "$rd/variants.train"), not wide alone"
for v in small deep; do grep -q "train $v: memoized, skipped" d.out || fail_logs "run d did not skip $v" d.out; done
grep -q "ingest: memoized" d.out || fail_logs "run d ingested again" d.out
grep -q "select: .* validation accuracy" "$rd/fanin.out" || fail_logs "run d did not select again" "$rd/fanin.out"
echo "ok: (d) a changed hyperparameter trains only its variant, then selects again"

# ---- (e) promotion refused for a worse candidate, accepted for a better one -----------
cur=$(prod)
cur_acc=$("$registry" --registry "$reg" show "$cur" | jq -r .metrics.val_accuracy)
printf '[variant weak]\nmodel = mlp:784-4-10\nepochs = 1\nlr = 0.001\nbatch = 256\n' >weak.ini
run_pipeline e1 weak.ini
[ "$(prod)" = "$cur" ] || fail "a worse candidate replaced production"
[ "$(json "$rd/promotion.json" 'd["outputs"]["promoted"]')" = False ] || fail "promotion.json says promoted"
/usr/bin/python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))["outputs"]
assert o["candidate_val_accuracy"] < o["current_val_accuracy"], o
assert abs(o["current_val_accuracy"] - float(sys.argv[2])) < 1e-9, (o, sys.argv[2])
' "$rd/promotion.json" "$cur_acc" || fail "the refusal does not report both figures: $(cat "$rd/promotion.json")"
grep -q "not promoted; production stays $cur" "$rd/fanin.out" || fail_logs "the refusal is not reported" "$rd/fanin.out"
printf '[variant strong]\nmodel = mlp:784-256-128-10\nepochs = 4\nlr = 0.05\nbatch = 64\n' >strong.ini
run_pipeline e2 strong.ini
new=$(prod)
[ "$new" != "$cur" ] && [ "$(json "$rd/promotion.json" 'd["outputs"]["promoted"], d["outputs"]["candidate"]')" = "(True, '$new')" ] ||
    fail "a better candidate was not promoted: $(cat "$rd/promotion.json")"
"$registry" --registry "$reg" alias production | jq -e --arg c "$cur" '.history[-2].version == $c' >/dev/null ||
    fail "production's history does not show the version before"
"$registry" --registry "$reg" verify >/dev/null || fail "the registry does not verify"
echo "ok: (e) a worse candidate is refused with both figures, a better one promoted"

# ---- (f) bad configs: refused before any job ---------------------------------------------
before=$(squeue -h -t all | wc -l)
printf '[variant x]\nmodel = cnnx\n' >bad1.ini
printf '[variant x]\nmodel = cnn\nlr = -1\n' >bad2.ini
printf '[variant x]\nmodel = cnn\noutput = /tmp/elsewhere.h5\n' >bad3.ini
printf '[variant x]\nmodel = cnn\nepochs = 1\n[variant x]\nmodel = cnn\n' >bad4.ini
printf '[defaults]\nlr = 0.1\nbatch = 64\nlr = 0.2\n[variant x]\nmodel = cnn\n' >bad5.ini
for b in bad1:'unknown layer "cnnx"' bad2:'variant x: lr = -1' bad3:'set by the pipeline' bad4:'given twice' \
    bad5:'bad5.ini:4: key "lr" given twice in [defaults] (first at line 2)'; do
    rc=0
    "$pipeline" --dir "$pipe" --registry "$reg" --config "${b%%:*}.ini" --fashion-mnist "$fm" >"${b%%:*}.out" 2>&1 || rc=$?
    [ $rc -eq 2 ] && grep -qF -- "${b#*:}" "${b%%:*}.out" && grep -q "nothing was submitted" "${b%%:*}.out" ||
        fail_logs "config ${b%%:*}: exit $rc, not refused naming '${b#*:}'" "${b%%:*}.out"
done
runs=$(ls "$pipe/runs" | wc -l)
touch regfile
rc=0; "$pipeline" --dir "$pipe" --registry "$work/regfile" --config b.ini --fashion-mnist "$fm" >regf.out 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -qF -- "--registry $work/regfile: not a directory" regf.out ||
    fail_logs "--registry that is a file: exit $rc, not refused naming the cause" regf.out
rc=0; "$pipeline" --dir "$pipe" --registry "$reg" --alias 0123456789abcdef --config b.ini --fashion-mnist "$fm" \
    >aliasf.out 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -qF -- "--alias '0123456789abcdef': 16 hex digits name a registry version" aliasf.out ||
    fail_logs "a 16-hex-digit --alias: exit $rc, not refused naming the cause" aliasf.out
[ "$(ls "$pipe/runs" | wc -l)" -eq "$runs" ] || fail "a refused --registry or --alias made a run"
[ "$(squeue -h -t all | wc -l)" -eq "$before" ] || fail "a refused config, --registry or --alias submitted jobs"
# a submission sbatch refuses half-way: nothing of it stays queued
rc=0
"$pipeline" --dir "$work/pipe-f" --config a.ini --fashion-mnist "$fm" --sbatch "--partition=nosuch" >subf.out 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "invalid partition" subf.out && grep -q "failed: submission" "$work"/pipe-f/runs/*/status ||
    fail_logs "a submission sbatch refused: exit $rc" subf.out
[ "$(squeue -h | wc -l)" -eq 0 ] || fail "a failed submission left jobs queued: $(squeue)"
echo "ok: (f) bad configs, registry and alias refused before anything is submitted; a failed submission leaves nothing queued"

# ---- (g) a later step's failure named in the status ------------------------------------
# production ($new) with the model file of the version before ($cur): weak's
# promotion must compare against production, and the registry refuses it
cp "$reg/versions/$new/model.h5" saved.h5
cp "$reg/versions/$cur/model.h5" "$reg/versions/$new/model.h5"
rc=0
"$pipeline" --dir "$pipe" --registry "$reg" --config weak.ini --fashion-mnist "$fm" --parts 2 --wait --timeout 900 \
    >g.out 2>&1 || rc=$?
rd=$(ls -d "$pipe"/runs/* | tail -n 1)
[ $rc -eq 1 ] && grep -q "^failed: promote: the current production model $new: version $new: its model file .*/versions/$new/model.h5 has hash $cur, not $new" "$rd/status" ||
    fail_logs "a replaced production model: exit $rc, status '$(cat "$rd/status" 2>/dev/null)'" g.out "$rd"/*.out
cp saved.h5 "$reg/versions/$new/model.h5"
[ "$(prod)" = "$new" ] && "$registry" --registry "$reg" verify >/dev/null || fail "the registry changed or does not verify after (g)"
echo "ok: (g) a later step's failure names its cause in the run's status"
