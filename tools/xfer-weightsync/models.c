/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models.h"

int model_find(const char *name, char *buf, size_t len, char *err, size_t errlen)
{
	char exe[PATH_MAX], dirs[3][PATH_MAX];
	const char *env = getenv("XFER_DATADIR");
	size_t nlen = strlen(name);
	bool has_ext = nlen > 5 && !strcmp(name + nlen - 5, ".json");
	ssize_t n;
	int ndirs = 0;

	if (strchr(name, '/')) {
		snprintf(buf, len, "%s", name);
		return 0;
	}
	if (env && *env)
		snprintf(dirs[ndirs++], PATH_MAX, "%s/models", env);
	/* relative to the executable, so an installed or built tool finds its
	 * models from any working directory */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *dir = dirname(exe);

		snprintf(dirs[ndirs++], PATH_MAX, "%.*s/../share/xfer/models", PATH_MAX - 32, dir);
		snprintf(dirs[ndirs++], PATH_MAX, "%.*s/../../models", PATH_MAX - 32, dir);
	}
	for (int i = 0; i < ndirs; i++) {
		snprintf(buf, len, "%s/%s%s", dirs[i], name, has_ext ? "" : ".json");
		if (!access(buf, R_OK)) {
			char clean[PATH_MAX];

			/* print build/../models/x.json as the file it is */
			if (realpath(buf, clean))
				snprintf(buf, len, "%s", clean);
			return 0;
		}
	}
	snprintf(err, errlen, "no %s%s in", name, has_ext ? "" : ".json");
	for (int i = 0; i < ndirs; i++)
		snprintf(err + strlen(err), errlen - strlen(err), "%s %s", i ? "," : "", dirs[i]);
	if (!ndirs)
		snprintf(err + strlen(err), errlen - strlen(err), " (no search path)");
	return -ENOENT;
}
