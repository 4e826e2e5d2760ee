/* SPDX-License-Identifier: MIT */
/* The backends built into this library, and which one a provider string selects. */
#include <string.h>

#include "backend.h"
#include "compiler.h"

/* Backends that claim a provider name first; the fabric backend, which
 * claims every other name (libfabric's), last. */
static const struct xfer_backend_ops *const backends[] = {
	&xfer_local_ops,
#ifdef XFER_HAVE_VERBS
	&xfer_verbs_ops,
#endif
	&xfer_fabric_ops,
};

const struct xfer_backend_ops *xfer_backend_for(const char *provider)
{
#ifndef XFER_HAVE_VERBS
	/* xfer's verbs backend, not built here (no rdma-core): not libfabric's */
	if (provider && strcmp(provider, "verbs") == 0)
		return NULL;
#endif
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		const char *claim = backends[i]->provider;

		if (!claim || (provider && strcmp(provider, claim) == 0))
			return backends[i];
	}
	return NULL;
}
