/* SPDX-License-Identifier: MIT */
/*
 * For programs that open libfabric endpoints of their own beside xfer's
 * (a raw-libfabric baseline, a provider probe): the hints xfer opens its
 * endpoints with, so that both are like for like.
 */
#ifndef XFER_FABRIC_H
#define XFER_FABRIC_H

#ifdef __cplusplus
extern "C" {
#endif

struct fi_info;

/* RDM endpoints with RMA writes and the memory-registration modes EFA and
 * verbs need, for provider prov (NULL or "": any). NULL when out of memory;
 * free with fi_freeinfo(). */
struct fi_info *xfer_fabric_hints(const char *prov);

#ifdef __cplusplus
}
#endif
#endif
