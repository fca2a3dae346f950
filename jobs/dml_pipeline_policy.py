#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""dml_pipeline_policy: the decisions of dml-pipeline (jobs/dml-pipeline),
apart from its Slurm glue.

The pipeline's bash submits jobs, runs the tools and keeps the step records;
what it decides from their JSON answers is here, one function per decision,
each with its unit test (tests/python/test_pipeline_policy.py):

  fraction_ok        a --val-fraction is a number strictly between 0 and 1
  select             which variants survived, which failed and why, and the
                     winner: the most accurate on the validation split, ties
                     going to the first in the config's order (and named)
  promote            whether the candidate replaces the alias's model: only
                     when at least as accurate on the validation split
  promote_key        the promotion step's memo key
  alias_explained    the promotion record that explains why the alias names
                     the candidate already, looked up by its key (the alias's
                     history gives the version it replaced), not by age

Standard library only: the pipeline runs it with Debian's /usr/bin/python3 on
any node, without slurm_dml's numpy and h5py (which is why it is installed
beside the sbatch scripts with the tools, not in the slurm_dml package). As a program it reads and
prints JSON:

  dml_pipeline_policy.py fraction F                 exit 0 when F is valid
  dml_pipeline_policy.py select < IN.json           {"outputs": ..., "say": [...]}
  dml_pipeline_policy.py promote < IN.json          {"outputs": ..., "say": ...}
  dml_pipeline_policy.py promote-key ALIAS CANDIDATE CURRENT VAL
  dml_pipeline_policy.py alias-explained MEMO_DIR ALIAS CANDIDATE VAL < ALIAS.json
"""
import hashlib
import json
import math
import os
import re
import sys

__all__ = ["fraction_ok", "select", "promote", "promote_key", "alias_explained"]


class PolicyError(Exception):
    """Input the policy cannot decide on (named in the message)."""


def fraction_ok(text):
    """A validation fraction as the command line gives it: digits and a
    point (no exponent, sign, nan or inf), strictly between 0 and 1."""
    if not re.fullmatch(r"[0-9]*\.?[0-9]+|[0-9]+\.", text or ""):
        return False
    f = float(text)
    return 0.0 < f < 1.0


def _accuracy(row):
    a = row.get("val_accuracy")
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
        raise PolicyError("variant %s: validation accuracy %r is not a finite number"
                          % (row.get("variant"), a))
    return float(a)


def select(variants):
    """The selection record's outputs from the variants in config order.

    Each variant is {"variant", "train_key", "model_hash", "val_accuracy"}
    when it trained, or {"variant", "train_key", "failed": REASON} when it
    did not. The winner is the most accurate survivor; of equally accurate
    ones the first in the config's order (the order is the user's, and a
    rerun must choose the same), the others named in "tied". Returns
    (outputs, messages)."""
    rows, failed = [], []
    for v in variants:
        if v.get("failed") is not None:
            failed.append({"variant": v["variant"], "reason": v["failed"]})
        else:
            rows.append({"variant": v["variant"], "model_hash": v["model_hash"],
                         "train_key": v["train_key"], "val_accuracy": _accuracy(v)})
    if not rows:
        raise PolicyError("every variant failed: nothing to select")
    best = max(_accuracy(r) for r in rows)
    top = [r["variant"] for r in rows if _accuracy(r) == best]
    outputs = {"winner": top[0], "variants": rows, "failed": failed, "tied": top[1:]}
    say = "select: %s wins with validation accuracy %s" % (top[0], _fmt(best))
    if top[1:]:
        say += " (tied with %s: the first in the config wins)" % ", ".join(top[1:])
    return outputs, [say]


def _fmt(x):
    """A figure as jq printed it before (shortest repr; 1.0 as 1)."""
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


def promote(alias, candidate, candidate_acc, current, current_acc):
    """Whether candidate replaces the model alias names (current, None when
    there is none): only when at least as accurate on the validation split,
    so that an equal model trained later (fresher lineage) takes over and a
    worse one never does. Returns the promotion record's outputs, reason
    included."""
    ca = _accuracy({"variant": "candidate " + candidate, "val_accuracy": candidate_acc})
    if not current:
        return {"candidate": candidate, "candidate_val_accuracy": ca, "current": "",
                "current_val_accuracy": None, "promoted": True,
                "reason": "no %s model yet: %s (validation accuracy %s) promoted"
                          % (alias, candidate, _fmt(ca))}
    pa = _accuracy({"variant": alias + " " + current, "val_accuracy": current_acc})
    out = {"candidate": candidate, "candidate_val_accuracy": ca, "current": current,
           "current_val_accuracy": pa}
    if ca >= pa:
        out.update(promoted=True, reason="candidate %s validation accuracy %s >= %s %s's %s: promoted"
                   % (candidate, _fmt(ca), alias, current, _fmt(pa)))
    else:
        out.update(promoted=False,
                   reason="candidate %s validation accuracy %s < %s %s's %s: not promoted; %s stays %s"
                   % (candidate, _fmt(ca), alias, current, _fmt(pa), alias, current))
    return out


def promote_key(alias, candidate, current, val):
    """The promotion step's key: the alias, the candidate, the version the
    alias names before the decision ("none" for no alias) and the
    validation data's hash."""
    text = "promote v1\nalias %s\ncandidate %s\ncurrent %s\nval %s\n" % (
        alias, candidate, current or "none", val)
    return hashlib.sha256(text.encode()).hexdigest()


def _record(memo, key):
    try:
        with open(os.path.join(memo, "promote", key + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def alias_explained(memo, alias, candidate, val, alias_doc):
    """The alias names candidate already: the promotion record that says why.

    First the decision that made it so, by its key: the version before
    candidate in the alias's history was the current one then. Otherwise
    a record that the alias already named it (written by a pipeline that
    found it so). Returns (key, record), or (None, None) when neither is
    there."""
    hist = [h.get("version") for h in (alias_doc or {}).get("history") or []]
    if not hist or hist[-1] != candidate:
        hist = hist + [candidate]  # (a history that does not end in it: as if it did)
    prev = hist[-2] if len(hist) >= 2 else None
    tries = []
    if prev != candidate:
        tries.append(promote_key(alias, candidate, prev, val))
    tries.append(promote_key(alias, candidate, candidate, val))
    for key in tries:
        rec = _record(memo, key)
        if rec is None:
            continue
        o = rec.get("outputs") or {}
        if o.get("candidate") == candidate and o.get("promoted") and rec.get("alias", alias) == alias:
            return key, rec
    return None, None


def _main(argv):
    if len(argv) < 2:
        sys.exit("usage: dml_pipeline_policy.py fraction|select|promote|promote-key|alias-explained ...")
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "fraction" and len(args) == 1:
            return 0 if fraction_ok(args[0]) else 1
        if cmd == "select" and not args:
            outputs, say = select(json.load(sys.stdin))
            print(json.dumps({"outputs": outputs, "say": say}))
            return 0
        if cmd == "promote" and not args:
            d = json.load(sys.stdin)
            out = promote(d["alias"], d["candidate"], d["candidate_val_accuracy"],
                          d.get("current") or None, d.get("current_val_accuracy"))
            print(json.dumps({"outputs": out, "say": "promote: " + out["reason"]}))
            return 0
        if cmd == "promote-key" and len(args) == 4:
            print(promote_key(*args))
            return 0
        if cmd == "alias-explained" and len(args) == 4:
            key, rec = alias_explained(args[0], args[1], args[2], args[3], json.load(sys.stdin))
            if key is None:
                return 1
            print(json.dumps({"key": key, "record": rec}))
            return 0
    except PolicyError as e:
        print("dml_pipeline_policy: error: %s" % e, file=sys.stderr)
        return 1
    sys.exit("dml_pipeline_policy: unknown command or wrong arguments: %s" % " ".join(argv[1:]))


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
