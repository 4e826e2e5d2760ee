// SPDX-License-Identifier: MIT
/* xferctl ctx [show] [pid N]: contexts (processes with /dev/xfer open):
 * pid, comm, regions, pinned bytes (debugfs xfer/contexts), else their
 * number. */
#include "xferctl.h"

int obj_ctx(struct ctl *c, const char *cmd, int argc, char **argv)
{
	(void)cmd;
	return show_table(c, "ctx", "contexts", contexts_cols, contexts_ncols, "contexts", F_PID,
			  "pid", NULL, argc, argv);
}
