// SPDX-License-Identifier: MIT
/* The MoE layer's last-error text, one per thread: every failing call of
 * xfer_moe_* says what was wrong and where, as the weight-sync layer's
 * xfer_ws_last_error does. */
#include <stdarg.h>
#include <stdio.h>

#include "moe_internal.h"

static __thread char moe_last_error[512];

void moe_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(moe_last_error, sizeof(moe_last_error), fmt, ap);
	va_end(ap);
}

void moe_error_clear(void)
{
	moe_last_error[0] = '\0';
}

XFER_EXPORT const char *xfer_moe_last_error(void)
{
	return moe_last_error;
}
