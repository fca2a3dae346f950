/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * h5poke: changes one value in an HDF5 file through HDF5 itself, for the
 * tests: damage that HDF5's own metadata checksums cannot see (a bit flipped
 * in memory before the write, a bug, a hand edit), which only slurm-dml's
 * checksums can catch.
 *
 *   h5poke FILE attr NAME VALUE   set the root attribute NAME (an integer) to VALUE
 *   h5poke FILE flip PATH         flip the lowest bit of dataset PATH's first element
 *
 * Exit 0 on success, 1 with a message otherwise.
 */
#include "config.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int poke_attr(hid_t f, const char *name, const char *value)
{
    long long v = strtoll(value, NULL, 10);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0 ? 0 : 1;

    if (a >= 0)
        H5Aclose(a);
    return rc;
}

static int flip(hid_t f, const char *path)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), type = -1, space = -1;
    hsize_t one = 1, zero[2] = {0, 0}, cnt[2] = {1, 1};
    unsigned char buf[64];
    hid_t mem = -1;
    int rc = 1, nd;

    if (d < 0)
        return 1;
    type = H5Dget_type(d);
    space = H5Dget_space(d);
    nd = H5Sget_simple_extent_ndims(space);
    mem = H5Screate_simple(1, &one, NULL);
    if (type >= 0 && H5Tget_size(type) <= sizeof(buf) && nd >= 1 && nd <= 2 &&
        H5Sselect_hyperslab(space, H5S_SELECT_SET, zero, NULL, cnt, NULL) >= 0 &&
        H5Dread(d, type, mem, space, H5P_DEFAULT, buf) >= 0) {
        buf[0] ^= 1;
        rc = H5Dwrite(d, type, mem, space, H5P_DEFAULT, buf) >= 0 ? 0 : 1;
    }
    H5Sclose(mem);
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(d);
    return rc;
}

int main(int argc, char **argv)
{
    hid_t f;
    int rc;

    if (argc < 4 || (strcmp(argv[2], "attr") == 0 && argc != 5) ||
        (strcmp(argv[2], "flip") == 0 && argc != 4)) {
        fprintf(stderr, "usage: h5poke FILE attr NAME VALUE | h5poke FILE flip PATH\n");
        return 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT)) < 0) {
        fprintf(stderr, "h5poke: %s: cannot open\n", argv[1]);
        return 1;
    }
    rc = strcmp(argv[2], "attr") == 0 ? poke_attr(f, argv[3], argv[4]) : flip(f, argv[3]);
    if (H5Fclose(f) < 0)
        rc = 1;
    if (rc != 0)
        fprintf(stderr, "h5poke: %s: cannot change %s\n", argv[1], argv[3]);
    return rc;
}
