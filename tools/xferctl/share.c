// SPDX-License-Identifier: MIT
/* xferctl share [show] [pid N] [region N]: the shares of regions (debugfs
 * xfer/shares: who may open them, how many opened), else their number. */
#include "xferctl.h"

int obj_share(struct ctl *c, const char *cmd, int argc, char **argv)
{
	(void)cmd;
	return show_table(c, "share", "shares", shares_cols, shares_ncols, "shares",
			  F_PID | F_REGION, "owner_pid", "region", argc, argv);
}
