// SPDX-License-Identifier: MIT
/*
 * xferctl module [show]: is the module loaded, does its ABI match the one
 * this tool (and the library beside it) was built with, its parameters,
 * and pinned bytes against the limit. Without the module: "not loaded",
 * exit 0 (a question answered, not a failure; `health` fails on it).
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <linux/xfer.h>

#include "xferctl.h"

int obj_module(struct ctl *c, const char *cmd, int argc, char **argv)
{
	static const char *const misc[] = { "pinned_bytes", "max_pinned_bytes", "imported_bytes",
					    "regions",      "contexts",         "shares",
					    "exports",      "pins_total",       "pins_failed" };
	static const char *const params[] = { "max_pinned_mb", "max_handles" };
	char path[4096];
	uint64_t abi = 0, pinned = 0, max = 0;
	struct stat st;
	int ret;

	(void)cmd;
	if (argc)
		return out_fail(&c->o, 0, "module: unexpected '%s' (module takes no filters)",
				argv[0]);
	out_u64(&c->o, "library_abi_version", XFER_ABI_VERSION);
	if (!module_loaded(c)) {
		out_str(&c->o, "module", "not loaded");
		return 0;
	}
	out_str(&c->o, "module", "loaded");
	path_misc(c, "abi_version", path, sizeof(path));
	ret = read_u64_file(c, path, &abi);
	if (ret == -ENOENT)
		return out_fail(&c->o, 0, "module: loaded but %s is missing (no misc device?)",
				path);
	if (ret)
		return 1;
	out_u64(&c->o, "abi_version", abi);
	out_str(&c->o, "abi", abi == XFER_ABI_VERSION ? "match" : "MISMATCH");
	for (size_t i = 0; i < sizeof(misc) / sizeof(misc[0]); i++) {
		uint64_t v;

		path_misc(c, misc[i], path, sizeof(path));
		ret = read_u64_file(c, path, &v);
		if (ret == -ENOENT)
			continue;   /* an older module: print what it has */
		if (ret)
			return 1;
		out_u64(&c->o, misc[i], v);
		if (!strcmp(misc[i], "pinned_bytes"))
			pinned = v;
		if (!strcmp(misc[i], "max_pinned_bytes"))
			max = v;
	}
	if (max)
		out_f64(&c->o, "pinned_pct", 100.0 * (double)pinned / (double)max);
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		char key[64];
		uint64_t v;

		path_param(c, params[i], path, sizeof(path));
		ret = read_u64_file(c, path, &v);
		if (ret == -ENOENT)
			continue;
		if (ret)
			return 1;
		snprintf(key, sizeof(key), "param_%s", params[i]);
		out_u64(&c->o, key, v);
	}
	if (stat(c->dev, &st) == 0) {
		struct group *g = getgrgid(st.st_gid);
		char mode[8];

		snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
		out_str(&c->o, "device", c->dev);
		out_str(&c->o, "device_mode", mode);
		if (g)
			out_str(&c->o, "device_group", g->gr_name);
		else
			out_u64(&c->o, "device_gid", st.st_gid);
	} else {
		out_str(&c->o, "device", "missing");
	}
	return 0;
}
