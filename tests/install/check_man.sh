#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# check_man.sh PAGEDIR TOOL...: every option each TOOL's --help lists is in
# its manual page (PAGEDIR/NAME.1, or PAGEDIR/man1/NAME.1 as installed), and,
# where groff is present, each page formats without a warning. Prints every
# option missing, and fails if any is.
set -euo pipefail
dir=$1
shift
bad=0
for tool in "$@"; do
    name=${tool##*/}
    page=$dir/$name.1
    [ -f "$page" ] || page=$dir/man1/$name.1
    [ -f "$page" ] || { echo "check_man: no manual page for $name in $dir" >&2; bad=1; continue; }
    # the page's text as a reader sees it: no font escapes, \- as -
    text=$(sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' "$page")
    help=$("$tool" --help 2>&1) || { echo "check_man: $name --help failed" >&2; bad=1; continue; }
    for opt in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u); do
        grep -qF -- "$opt" <<<"$text" || { echo "check_man: $page lacks $opt (in $name --help)" >&2; bad=1; }
    done
    if command -v groff >/dev/null; then
        w=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || true
        [ -z "$w" ] || { echo "check_man: $page: groff: $w" >&2; bad=1; }
    fi
done
exit $bad
