// SPDX-License-Identifier: MIT
/*
 * xferctl module [show]: is the module loaded, does its ABI match the one
 * this tool (and the library beside it) was built with, its parameters,
 * and pinned bytes against the limit. Without the module: "not loaded",
 * exit 0 (a question answered, not a failure; `health` fails on it).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <linux/xfer.h>

#include "xferctl.h"

/* Features are only told through the device (XFER_IOC_QUERY); opening it
 * makes a context for the moment this takes. */
static void features(struct ctl *c)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ XFER_FEATURE_DMABUF_IMPORT, "dmabuf_import" },
		{ XFER_FEATURE_DMABUF_EXPORT, "dmabuf_export" },
		{ XFER_FEATURE_NV_P2P, "nv_p2p" },
		{ XFER_FEATURE_PAGE_MAPS, "page_maps" },
	};
	struct xfer_query q = { .size = sizeof(q) };
	char text[128] = "";
	int fd = open(c->dev, O_RDWR | O_CLOEXEC);

	if (fd < 0 || ioctl(fd, XFER_IOC_QUERY, &q)) {
		char why[160];

		snprintf(why, sizeof(why), "unknown (%s: %s)", c->dev, strerror(errno));
		out_str(&c->o, "features", why);
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (q.features & names[i].bit) {
			size_t n = strlen(text);

			snprintf(text + n, sizeof(text) - n, "%s%s", n ? "," : "", names[i].name);
		}
	out_str(&c->o, "features", text[0] ? text : "none");
	out_u64(&c->o, "page_size", q.page_size);
}

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
		features(c);
	} else {
		out_str(&c->o, "device", "missing");
	}
	return 0;
}
