/* SPDX-License-Identifier: MIT */
#ifndef XT_TOPO_H
#define XT_TOPO_H

/*
 * A described two-socket GPU node for hwloc (read through HWLOC_XMLFILE), so
 * that NIC selection by topology is tested on machines without GPUs:
 *
 *   socket 0: root complex -- PCIe switch -- GPU 0 (0000:01:00.0)
 *                                        \-- NIC rxe1 (0000:02:00.0)
 *   socket 1: root complex -- PCIe switch -- GPU 1 (0000:81:00.0)
 *                         |              \-- NIC rxe0 (0000:82:00.0)
 *                         \-- GPU 2 (0000:85:00.0), no NIC of its own
 *
 * The NICs are named as the guest's soft-RoCE devices, in the reverse of
 * their device-list order, so that a choice by topology differs from the
 * default (the index-th device).
 */

/* Writes the description to a new file in /tmp (its name into path, 32
 * bytes) and points HWLOC_XMLFILE at it: hwloc reads it from then on in
 * this process. 0 or -errno. */
int xt_topo_install(char *path);
/* Back to the real machine: HWLOC_XMLFILE unset, the file removed. */
void xt_topo_remove(const char *path);

#endif
