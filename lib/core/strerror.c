/* SPDX-License-Identifier: MIT */
/* What the library's errors mean in its own terms (xfer_strerror). */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

XFER_EXPORT const char *xfer_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case -ERANGE: return "range outside the registered region";
	/* neutral: a peer, an immediate, an operation or a lock may be what was
	 * waited for; callers add which and how long */
	case -ETIMEDOUT: return "timed out";
	case -ECANCELED: return "engine destroyed with the operation in flight";
	/* check_peer: a peer never added is -EINVAL; -ENOTCONN is one that
	 * was added and then declared down (timeout, reset, unreachable) */
	case -ENOTCONN: return "peer is down (it failed or stopped answering)";
	case -EPROTO: return "peer address is for another provider";
	case -ENODEV: return "no such device (kernel module not loaded?)";
	case -EOPNOTSUPP: return "not supported by this backend or provider";
	/* the one library loaded on demand (lib/backend/fabric_load.c) */
	case -ELIBACC: return "libfabric.so.1 cannot be loaded (package libfabric1 not installed?)";
	case INT_MIN: return "unknown error";   /* -INT_MIN overflows */
	default: return strerror(err < 0 ? -err : err);
	}
}
