#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The model registry used by many jobs at once on the local cluster: an
# 8-task array job whose tasks (spread over 3 nodes) each register their own
# model and then, all at the same moment, move the same aliases:
#  - `latest`, set by every task unconditionally: its history holds all 8
#    updates (none lost), and it names the version of the last of them;
#  - `chain`, moved by compare-and-set (--expect the version read, retried
#    when another task moved it first): 8 updates, each made from the
#    version the one before it set, so no decision was applied to a stale
#    alias;
#  - every version is listed with its job (the array task) and the registry
#    verifies.
. "$(dirname "$0")/lib.sh"
cluster_start 3
work=$CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"
reg=$work/reg
export PATH=$abs_top_builddir/registry:$PATH

"$data" synth --out ds --samples 400 --shape 10 --classes 3 --seed 1 >/dev/null 2>&1 || fail "dml-data synth failed"
for s in 0 1 2 3 4 5 6 7 8; do
    "$train" --train ds --model mlp:10-6-3 --epochs 1 --batch 32 --seed "$((s + 1))" --log-every 0 \
        --output "m$s.h5" >/dev/null 2>&1 || fail "training model $s failed"
done
# the registry and the chain's start, made before the jobs
v8=$("$registry" --registry "$reg" register m8.h5 2>/dev/null) || fail "registering the first model failed"
"$registry" --registry "$reg" alias chain "$v8" >/dev/null 2>&1 || fail "setting chain failed"

cat >task.sh <<'TASK'
#!/bin/bash
# one array task: register, wait for the others, then move the aliases
set -u
R() { dml-registry --registry "$REG" "$@"; }
i=$SLURM_ARRAY_TASK_ID
v=$(R register "$WORK/m$i.h5" --name "task-$i") || exit 1
touch "$WORK/ready.$i"
# (at most 120 s: the assertions hold without the barrier, it only makes the
# updates race)
for w in $(seq 1 2400); do [ "$(ls "$WORK"/ready.* | wc -l)" -ge 8 ] && break; sleep 0.05; done
R alias latest "$v" --note "task $i" >/dev/null || exit 1
for try in $(seq 1 200); do
    cur=$(R alias chain | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])') || exit 1
    R alias chain "$v" --expect "$cur" --note "task $i after $cur" >/dev/null 2>&1
    case $? in
        0) echo "task $i: chain $cur -> $v after $try tries"; exit 0 ;;
        4) ;;
        *) exit 1 ;;
    esac
done
exit 1
TASK
chmod +x task.sh
arr=$(REG=$reg WORK=$work sbatch --parsable --array=0-7 --ntasks=1 --cpus-per-task=1 --mem=64M \
    --output="$work/task-%a.out" ./task.sh) || fail "sbatch of the array failed"
deadline=$((SECONDS + 300))
while squeue -h -j "$arr" 2>/dev/null | grep -q .; do
    [ $SECONDS -lt $deadline ] || fail_logs "the array still runs after 300 s: $(squeue)" task-*.out
    sleep 0.5
done
for i in 0 1 2 3 4 5 6 7; do
    grep -q "^task $i: chain" "task-$i.out" 2>/dev/null || fail_logs "task $i did not land its compare-and-set" "task-$i.out"
done
nodes=$(for i in 0 1 2 3 4 5 6 7; do scontrol show job "${arr}_$i" 2>/dev/null | sed -n 's/^ *NodeList=\(n[0-9]*\).*/\1/p'; done | sort -u | wc -l)

/usr/bin/python3 - "$reg" "$arr" "$v8" <<'PY' || fail "the registry after 8 concurrent tasks is wrong (above)"
import json, subprocess, sys
reg, arr, v8 = sys.argv[1:4]
def R(*a):
    return subprocess.run(["dml-registry", "--registry", reg, *a], check=True, capture_output=True,
                          text=True).stdout
vs = json.loads(R("list", "--json"))
names = {v.get("name"): v for v in vs}
ok = True
def bad(msg):
    global ok
    print("FAIL:", msg)
    ok = False
for i in range(8):
    v = names.get("task-%d" % i)
    if v is None:
        bad("task-%d's version is not listed" % i)
    elif v.get("job") != "%s_%d" % (arr, i):
        bad("task-%d's job is %r, not %s_%d" % (i, v.get("job"), arr, i))
mine = sorted(names["task-%d" % i]["version"] for i in range(8) if "task-%d" % i in names)
latest = json.loads(R("alias", "latest"))
hist = latest["history"]
if len(hist) != 8 or sorted(h["note"].split(" (")[0] for h in hist) != ["task %d" % i for i in range(8)]:
    bad("latest's history has %d updates, not the 8 tasks': %s" % (len(hist), [h["note"] for h in hist]))
if latest["version"] != hist[-1]["version"]:
    bad("latest names %s, not its last update %s" % (latest["version"], hist[-1]["version"]))
chain = json.loads(R("alias", "chain"))
ch = chain["history"]
if len(ch) != 9 or ch[0]["version"] != v8:
    bad("chain has %d entries, not its start and 8 compare-and-sets" % len(ch))
for a, b in zip(ch, ch[1:]):
    if ("after " + a["version"]) not in b["note"]:
        bad("chain: %s was set from a stale read (%s)" % (b["version"], b["note"]))
if sorted(h["version"] for h in ch[1:]) != mine:
    bad("chain's updates are not the 8 tasks' versions")
sys.exit(0 if ok else 1)
PY
"$registry" --registry "$reg" verify >verify.out || fail "the registry does not verify: $(cat verify.out)"
echo "ok: 8 array tasks at once on $nodes nodes: 8 versions with their jobs, 8 updates of latest and 8 compare-and-sets of chain, none lost"
