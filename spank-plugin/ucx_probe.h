/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ucx_probe.h: the UCX transports and devices a task will find (for the
 * plugin's --dml-verbose), asked of UCX itself.
 */
#ifndef DML_UCX_PROBE_H
#define DML_UCX_PROBE_H

#include <stddef.h>

/* "tcp/lo,posix/memory,..." into out: each transport/device UCX offers here
 * that tls (UCX_TLS's value, aliases such as sm understood; NULL: all) and
 * devices (UCX_NET_DEVICES's, for network devices; NULL: all) let through.
 * 0, or -1 if UCX cannot be loaded here (out is then ""). */
int dml_ucx_probe(const char *tls, const char *devices, char *out, size_t len);

#endif /* DML_UCX_PROBE_H */
