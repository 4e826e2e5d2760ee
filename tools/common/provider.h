/* SPDX-License-Identifier: MIT */
/* Naming what is wrong when an engine cannot be opened on a provider. */
#ifndef XFER_TOOLS_PROVIDER_H
#define XFER_TOOLS_PROVIDER_H

#include <stddef.h>

/* "provider 'P': <xfer_strerror(err)>", and when libfabric does not know P,
 * the providers this host has (libfabric's, then xfer's own verbs and
 * local) so the user can pick one. Only call it in a process that may
 * initialise libfabric (it calls fi_getinfo). */
void provider_explain(const char *prov, int err, char *buf, size_t len);

#endif
