#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The checkpoint tests again with rank 0 streaming every array of 4 KiB or
# more to the file in pieces of a page (its path for arrays of 2 MiB and
# more by default, DML_CKPT_PIECE): the pieces, their CRC and the resume
# from them must be exact, and a full disk or a corruption named as before.
export DML_CKPT_PIECE=4096
exec bash "$(dirname "$0")/test_ckpt.sh"
