/* SPDX-License-Identifier: MIT */
/*
 * A user's program, built away from the repository with pkg-config's flags
 * alone: by tests/install.sh against `make install`, by tests/deb.sh inside
 * a root with the packages installed. Every public header must compile in
 * it (the uapi one too); it creates an engine on `local` and prints what
 * -ERANGE means, which the scripts compare.
 */
#include <errno.h>
#include <stdio.h>
#include <linux/xfer.h>
#include <xfer.h>
#include <xfer_weightsync.h>
#include <xfer_ws_exec.h>

int main(void)
{
	struct xfer_engine_attr a;
	xfer_engine *e;
	int ret;

	xfer_engine_attr_init(&a);
	a.provider = "local";
	ret = xfer_engine_create(&a, &e);
	if (ret) {
		fprintf(stderr, "xfer_engine_create: %s\n", xfer_strerror(ret));
		return 1;
	}
	xfer_engine_destroy(e);
	printf("%s\n", xfer_strerror(-ERANGE));
	return 0;
}
