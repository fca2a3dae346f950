#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# One owner per saved layout (issue #41): the checks below fail, printing
# file:line, where C code reaches past a component's public calls into the
# layout another component owns.
#
# A component's own tests (tests/nn/, tests/ckpt/) count as the component.
#
#  1. Outside nn/, no C source names the model's group or arrays in a
#     checkpoint: no string literal "model/..." (model/weights,
#     model/buffers, model/stats...), and no group created or opened by the
#     literal name "model" (nn/'s DML_MODEL_GROUP is the name).
#  2. Outside ckpt/, no C source names an attribute that ckpt/ stamps on
#     every checkpoint (dml_ckpt_header_t: step, world_size, created,
#     attrs_crc32) in an attribute call, nor format or version in a call on
#     a checkpoint (dml_ckpt_*, or beside DML_CKPT_FORMAT).
#  3. trainer/train.c, the training loop, has no HDF5: no hdf5.h include, no
#     H5* call or type, no hid_t/herr_t/hsize_t, no dml__h5_* helper.
#
# Not C, and so not checked here: python/slurm_dml/model.py, the Python
# package's reader of model files and checkpoints for PyTorch users, is a
# deliberate second reader of nn's layout (docs/formats/model.md is the
# contract both follow; tests/python checks it against the C writer).
# A name hidden behind a macro (#define K "step") is not followed.
#
# Comments are stripped first, string literals kept, so that prose naming
# these things is not flagged; the patterns are string literals and calls,
# not words. The checks are run first on a made-up tree that breaks each
# rule (and on harmless look-alikes), so that a check that cannot fail
# fails here.
: "${abs_top_srcdir:?run this test through make check}"
set -uo pipefail
work=$(mktemp -d /tmp/dml-layering.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The C and CUDA sources of the components under root (build trees and
# generated files are not sources).
sources() {
    (cd "$1" && find common h5 io nn trainer ckpt serve-batch registry spank-plugin bench tests \
        \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) -type f 2>/dev/null | sort)
}

# FILE NAME: its statements as "NAME:LINE:code" (LINE: where the statement
# starts; a call clang-format wrapped over lines is one statement) with /* */
# and // comments blanked, string and character literals kept.
strip_comments() {
    awk -v f="$2" '
    BEGIN { inc = 0 }
    {
        out = ""; ins = 0; inch = 0; n = length($0)
        for (i = 1; i <= n; i++) {
            c = substr($0, i, 1); d = substr($0, i, 2)
            if (inc) { if (d == "*/") { inc = 0; i++ } ; continue }
            if (ins) { out = out c; if (c == "\\") { out = out substr($0, i + 1, 1); i++ } else if (c == "\"") ins = 0; continue }
            if (inch) { out = out c; if (c == "\\") { out = out substr($0, i + 1, 1); i++ } else if (c == "\047") inch = 0; continue }
            if (d == "/*") { inc = 1; i++; out = out " "; continue }
            if (d == "//") break
            if (c == "\"") ins = 1
            else if (c == "\047") inch = 1
            out = out c
        }
        if (buf == "") start = FNR
        buf = buf " " out
        if (out ~ /^[ \t]*#/ || out ~ /[;{}][ \t]*$/) { print f ":" start ":" buf; buf = "" }
    }
    END { if (buf != "") print f ":" start ":" buf }' "$1"
}

ATTR_CALL='(dml__h5_attr_(read|write)(_str)?|H5A(create|open|exists|delete|read|write)[A-Za-z0-9_]*|dml_ckpt_(put|get)_[a-z0-9]+)[[:space:]]*\('
GROUP_CALL='(H5Gcreate[0-9]*|H5Gopen[0-9]*|dml_ckpt_group_(create|open)|H5Lexists|H5Oopen)[[:space:]]*\('

# root: prints each violation as "file:line: rule: code"; status 1 if any.
scan() {
    local root=$1 f bad=0
    while read -r f; do
        local code
        code=$(strip_comments "$root/$f" "$f")
        case "$f" in
        nn/* | tests/nn/*) ;;
        *)
            grep -E '"model/' <<<"$code" | sed 's/^\([^:]*:[0-9]*\):/\1: the model group is nn'"'"'s: /' && bad=1
            grep -E "$GROUP_CALL.*\"model\"" <<<"$code" |
                sed 's/^\([^:]*:[0-9]*\):/\1: the model group is nn'"'"'s (DML_MODEL_GROUP): /' && bad=1
            ;;
        esac
        case "$f" in
        ckpt/* | tests/ckpt/*) ;;
        *)
            grep -E "$ATTR_CALL.*\"(step|world_size|created|attrs_crc32)\"" <<<"$code" |
                sed 's/^\([^:]*:[0-9]*\):/\1: a checkpoint header attribute (dml_ckpt_header_t): /' && bad=1
            grep -E "(dml_ckpt_[a-z_0-9]+[[:space:]]*\(|DML_CKPT_FORMAT).*\"(format|version)\"|\"(format|version)\".*DML_CKPT_FORMAT" <<<"$code" |
                sed 's/^\([^:]*:[0-9]*\):/\1: a checkpoint header attribute (dml_ckpt_header_t): /' && bad=1
            ;;
        esac
        if [ "$f" = trainer/train.c ]; then
            grep -E '#[[:space:]]*include[[:space:]]*[<"](hdf5|H5[A-Za-z]*)\.h[>"]|\bH5[A-Z][A-Za-z0-9_]*|\b(hid_t|herr_t|hsize_t|hssize_t|htri_t)\b|\bdml__h5_' <<<"$code" |
                sed 's/^\([^:]*:[0-9]*\):/\1: HDF5 in the training loop (train_state.c owns the checkpoint): /' && bad=1
        fi
    done < <(sources "$root")
    return $bad
}

# ---- the checks can fail: a tree that breaks each rule once ----------------
t=$work/tree
mkdir -p "$t/trainer" "$t/ckpt" "$t/nn" "$t/serve-batch" "$t/io"
cat >"$t/trainer/train.c" <<'EOF'
/* harmless: H5Fopen and "model/weights" and hid_t in a comment */
#include "dml_train.h"
#include <hdf5.h>
static int f(hid_t x) { return H5Fclose(x); }
static const char *w = "model/weights"; // "model/buffers" in a comment
int g(void) { return dml__h5_attr_read(f, "world_size", H5T_NATIVE_INT32, 1, &w); }
EOF
cat >"$t/serve-batch/x.c" <<'EOF'
int a(void) { return H5Gopen2(f, "model", H5P_DEFAULT); }
int b(void) { return dml_ckpt_group_create(w, "model", &g); }
int c(void) { return dml_ckpt_put_u64(w, "step", 1); }
int d(void) { return dml__h5_attr_read_str(f, "format", s, 9) || strcmp(s, DML_CKPT_FORMAT); }
/* look-alikes that are fine: */
int e(void) { return dml_ckpt_put_str(w, "model", spec); }
int g(void) { return json_pack("{s:s}", "step", "x") + dml__h5_attr_read_str(f, "format", s, 9); }
const char *h = "a step";
int w2(void) { return dml_ckpt_put_u64(
        w, "step", 1); }
EOF
cat >"$t/nn/model_file.c" <<'EOF'
int ok(void) { return H5Gopen2(f, "model", H5P_DEFAULT) + dml_ckpt_get(f, "model/weights"); }
EOF
cat >"$t/ckpt/ckpt.c" <<'EOF'
int ok(void) { return dml__h5_attr_write(f, "world_size", H5T_NATIVE_INT32, 1, &w); }
EOF
mkdir -p "$t/tests/ckpt"
cat >"$t/tests/ckpt/test_x.c" <<'EOF'
int ok(void) { return dml_ckpt_put_u64(w, "step", 7) == DML_ERR_INVALID_ARG; }
EOF
out=$(scan "$t")
[ $? -eq 1 ] || { echo "FAIL: the checks passed a tree that breaks them: $out" >&2; exit 1; }
want="serve-batch/x.c:1 serve-batch/x.c:2 serve-batch/x.c:3 serve-batch/x.c:4 serve-batch/x.c:9 trainer/train.c:3 trainer/train.c:4 trainer/train.c:5 trainer/train.c:6"
got=$(sed -n 's/^\([^:]*:[0-9]*\):.*/\1/p' <<<"$out" | sort -u | tr '\n' ' ' | sed 's/ $//')
[ "$got" = "$want" ] || {
    echo "FAIL: on the made-up tree the checks flagged [$got], expected [$want]:" >&2
    echo "$out" >&2
    exit 1
}

# ---- the tree itself ------------------------------------------------------
if ! out=$(scan "$abs_top_srcdir"); then
    echo "FAIL: layering: a layout named outside its owner:" >&2
    echo "$out" >&2
    exit 1
fi
echo "layering: ok ($(sources "$abs_top_srcdir" | wc -l) C sources checked)"
