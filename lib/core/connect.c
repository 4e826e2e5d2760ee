/* SPDX-License-Identifier: MIT */
/*
 * xfer_engine_connect: connect to peers ahead of the first transfer.
 * (First commit: the API only, so that other branches can build on it.)
 */
#include <errno.h>

#include "internal.h"

XFER_EXPORT int xfer_engine_connect(xfer_engine *e, const uint32_t *peers, uint32_t num_peers,
				    int timeout_ms)
{
	(void)timeout_ms;
	if (!e || !peers || !num_peers)
		return -EINVAL;
	for (uint32_t i = 0; i < num_peers; i++)
		if (peers[i] >= XFER_MAX_PEERS || !e->peers[peers[i]].used)
			return -EINVAL;
	return -EOPNOTSUPP;
}
