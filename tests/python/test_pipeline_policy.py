#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The pipeline's decisions (jobs/dml_pipeline_policy.py), one test per
decision, with Debian's python3 and its standard library alone: which
variants survive and why the others failed, the winner and its ties, the
promotion (first model, better, equal, worse), the promotion's key (the one
the pipeline's memo records are filed under) and the lookup of the record
that explains an alias by that key, never by the newest file. The program
form (JSON in, JSON out) is what jobs/dml-pipeline calls."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (jobs/)
SRC = os.environ.get("abs_top_srcdir") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MOD = os.path.join(SRC, "jobs", "dml_pipeline_policy.py")
sys.path.insert(0, os.path.join(SRC, "jobs"))
import dml_pipeline_policy as p  # noqa: E402


def ok(name, acc, h=None):
    return {"variant": name, "train_key": "k-" + name, "model_hash": h or ("h" + name)[:16],
            "val_accuracy": acc}


def failed(name, why):
    return {"variant": name, "train_key": "k-" + name, "failed": why}


class Fraction(unittest.TestCase):
    def test_fraction(self):
        for good in ("0.1", ".5", "0.999", "0.0001"):
            self.assertTrue(p.fraction_ok(good), good)
        for bad in ("0", "1", "1.0", "0.0", "-0.1", "1e-1", "nan", "inf", "", "0.1.2", "abc", " 0.1"):
            self.assertFalse(p.fraction_ok(bad), bad)


class Select(unittest.TestCase):
    def test_best_survivor_wins_and_failures_are_named(self):
        out, say = p.select([ok("small", 0.81), failed("diverges", "loss became nan at step 3"),
                             ok("wide", 0.85), ok("deep", 0.83)])
        self.assertEqual(out["winner"], "wide")
        self.assertEqual([v["variant"] for v in out["variants"]], ["small", "wide", "deep"])
        self.assertEqual(out["failed"], [{"variant": "diverges", "reason": "loss became nan at step 3"}])
        self.assertEqual(out["tied"], [])
        self.assertEqual(say, ["select: wide wins with validation accuracy 0.85"])
        self.assertEqual(out["variants"][1], {"variant": "wide", "model_hash": "hwide",
                                              "train_key": "k-wide", "val_accuracy": 0.85})

    def test_tie_goes_to_the_first_in_config_order(self):
        out, say = p.select([ok("b", 0.8), ok("a", 0.9), ok("c", 0.9), ok("d", 0.9)])
        self.assertEqual(out["winner"], "a")
        self.assertEqual(out["tied"], ["c", "d"])
        self.assertIn("tied with c, d", say[0])
        # the same inputs in another order: the order decides, not the names
        out2, _ = p.select([ok("d", 0.9), ok("c", 0.9), ok("a", 0.9)])
        self.assertEqual(out2["winner"], "d")

    def test_every_variant_failed(self):
        with self.assertRaisesRegex(p.PolicyError, "every variant failed"):
            p.select([failed("x", "oom"), failed("y", "cancelled")])

    def test_accuracy_must_be_a_number(self):
        for bad in (None, "0.9", float("nan"), True):
            with self.assertRaisesRegex(p.PolicyError, "variant x: validation accuracy"):
                p.select([ok("x", bad)])


class Promote(unittest.TestCase):
    def test_first_model_is_promoted(self):
        o = p.promote("production", "c" * 16, 0.8, None, None)
        self.assertTrue(o["promoted"])
        self.assertEqual((o["current"], o["current_val_accuracy"]), ("", None))
        self.assertEqual(o["reason"], "no production model yet: %s (validation accuracy 0.8) promoted" % ("c" * 16))

    def test_better_or_equal_is_promoted(self):
        for acc in (0.9, 0.85):
            o = p.promote("production", "cand", acc, "cur", 0.85)
            self.assertTrue(o["promoted"], acc)
            self.assertEqual(o["reason"], "candidate cand validation accuracy %s >= production cur's 0.85: promoted" % acc)
            self.assertEqual((o["candidate_val_accuracy"], o["current_val_accuracy"]), (acc, 0.85))

    def test_worse_is_refused_with_both_figures(self):
        o = p.promote("production", "cand", 0.7, "cur", 0.85)
        self.assertFalse(o["promoted"])
        self.assertEqual((o["candidate_val_accuracy"], o["current_val_accuracy"]), (0.7, 0.85))
        self.assertTrue(o["reason"].endswith("not promoted; production stays cur"), o["reason"])

    def test_close_figures_compare_as_numbers_not_text(self):
        # (awk compared strings that looked like numbers as numbers, most of the time)
        self.assertFalse(p.promote("a", "c", 0.1, "cur", 0.10000000000000002)["promoted"])
        self.assertTrue(p.promote("a", "c", 1, "cur", 0.9999)["promoted"])

    def test_current_without_figure_is_refused(self):
        with self.assertRaises(p.PolicyError):
            p.promote("production", "cand", 0.9, "cur", None)


class Keys(unittest.TestCase):
    def test_promote_key_is_the_memo_files(self):
        want = hashlib.sha256(b"promote v1\nalias production\ncandidate c\ncurrent none\nval v\n").hexdigest()
        self.assertEqual(p.promote_key("production", "c", None, "v"), want)
        self.assertEqual(p.promote_key("production", "c", "none", "v"), want)
        self.assertNotEqual(p.promote_key("production", "c", "x", "v"), want)


class AliasExplained(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.memo = self.tmp.name
        os.makedirs(os.path.join(self.memo, "promote"))

    def tearDown(self):
        self.tmp.cleanup()

    def put(self, key, rec, mtime=None):
        f = os.path.join(self.memo, "promote", key + ".json")
        with open(f, "w") as fh:
            json.dump(rec, fh)
        if mtime is not None:
            os.utime(f, (mtime, mtime))

    def test_by_key_from_the_history_not_the_newest_file(self):
        made = p.promote_key("production", "new", "old", "v")
        self.put(made, {"alias": "production", "outputs": {"candidate": "new", "promoted": True,
                                                           "reason": "better"}}, mtime=1000)
        # a newer record for the same candidate, from another validation split
        other = p.promote_key("production", "new", "older", "v2")
        self.put(other, {"alias": "production", "outputs": {"candidate": "new", "promoted": True,
                                                            "reason": "other split"}}, mtime=2000)
        doc = {"version": "new", "history": [{"version": "old"}, {"version": "new"}]}
        key, rec = p.alias_explained(self.memo, "production", "new", "v", doc)
        self.assertEqual((key, rec["outputs"]["reason"]), (made, "better"))

    def test_already_the_alias_record_when_no_decision_made_it(self):
        already = p.promote_key("production", "new", "new", "v")
        self.put(already, {"alias": "production", "outputs": {"candidate": "new", "promoted": True,
                                                              "reason": "already the alias"}})
        doc = {"version": "new", "history": [{"version": "old"}, {"version": "new"}]}
        self.assertEqual(p.alias_explained(self.memo, "production", "new", "v", doc)[0], already)

    def test_first_version_of_the_alias(self):
        made = p.promote_key("production", "new", None, "v")
        self.put(made, {"alias": "production", "outputs": {"candidate": "new", "promoted": True, "reason": "first"}})
        doc = {"version": "new", "history": [{"version": "new"}]}
        self.assertEqual(p.alias_explained(self.memo, "production", "new", "v", doc)[0], made)

    def test_nothing_recorded_or_not_promoted_or_another_alias(self):
        doc = {"version": "new", "history": [{"version": "old"}, {"version": "new"}]}
        self.assertEqual(p.alias_explained(self.memo, "production", "new", "v", doc), (None, None))
        made = p.promote_key("production", "new", "old", "v")
        self.put(made, {"alias": "production", "outputs": {"candidate": "new", "promoted": False}})
        self.assertEqual(p.alias_explained(self.memo, "production", "new", "v", doc), (None, None))
        self.put(made, {"alias": "staging", "outputs": {"candidate": "new", "promoted": True}})
        self.assertEqual(p.alias_explained(self.memo, "production", "new", "v", doc), (None, None))


class Program(unittest.TestCase):
    """The JSON interface jobs/dml-pipeline uses."""

    def run_it(self, *args, stdin=None):
        return subprocess.run([sys.executable, MOD] + list(args), input=stdin, capture_output=True, text=True)

    def test_select_and_promote_as_a_program(self):
        r = self.run_it("select", stdin=json.dumps([ok("a", 0.5), failed("b", "why")]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["outputs"]["winner"], "a")
        r = self.run_it("select", stdin=json.dumps([failed("b", "why")]))
        self.assertEqual(r.returncode, 1)
        self.assertIn("every variant failed", r.stderr)
        r = self.run_it("promote", stdin=json.dumps({"alias": "p", "candidate": "c", "candidate_val_accuracy": 0.5,
                                                     "current": "", "current_val_accuracy": None}))
        self.assertEqual(json.loads(r.stdout)["outputs"]["promoted"], True)
        self.assertEqual(self.run_it("fraction", "0.1").returncode, 0)
        self.assertEqual(self.run_it("fraction", "2").returncode, 1)
        self.assertEqual(self.run_it("promote-key", "a", "c", "none", "v").stdout.strip(),
                         p.promote_key("a", "c", None, "v"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
