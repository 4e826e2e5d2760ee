// SPDX-License-Identifier: MIT
/* xferctl region [show] [pid N] [region N]: regions the module pins
 * (debugfs xfer/regions), else their number (sysfs). */
#include <string.h>

#include "xferctl.h"

int obj_region(struct ctl *c, const char *cmd, int argc, char **argv)
{
	(void)cmd;   /* show is the only command */
	return show_table(c, "region", "regions", regions_cols, regions_ncols, "regions",
			  F_PID | F_REGION, "owner_pid", "id", argc, argv);
}
