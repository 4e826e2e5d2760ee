// SPDX-License-Identifier: MIT
/*
 * xferctl stat [show] [pid N]: each context's counters per rail, as the
 * library publishes them into the stats page it shares with the module
 * (struct xfer_ctx_stats), read through debugfs xfer/ctx-N/stats. Without
 * the module the page is the process's own memory: nothing to read here.
 */
#include <errno.h>
#include <stdio.h>

#include "xferctl.h"

int obj_stat(struct ctl *c, const char *cmd, int argc, char **argv)
{
	static const char *const cols[] = { "ctx", "pid", "comm", "rail", "bytes_posted",
					    "bytes_completed", "ops_posted", "ops_completed",
					    "ops_failed", "imm_received" };
	char path[4096];
	struct filters f;
	json_object *ctxs;
	int ret;

	(void)cmd;
	if (filters_parse(c, "stat", F_PID, argc, argv, &f))
		return 1;   /* filters_parse said why */
	if (!module_loaded(c))
		return out_fail(&c->o, 0,
				"stat needs the module: without it each process's stats page is its own memory");
	path_debugfs(c, "contexts", path, sizeof(path));
	ret = read_table(c, path, contexts_cols, contexts_ncols, &ctxs);
	if (ret == -ENOENT)
		return out_fail(&c->o, 0, "stat: %s is not readable (root, debugfs mounted)", path);
	if (ret)
		return 1;
	out_table(&c->o, "rails", cols, (int)(sizeof(cols) / sizeof(cols[0])));
	for (size_t i = 0; i < json_object_array_length(ctxs); i++) {
		json_object *cx = json_object_array_get_idx(ctxs, i), *st;
		int64_t id = json_object_get_int64(json_object_object_get(cx, "ctx"));
		char name[64];

		if (!filters_match(&f, cx, "pid", NULL))
			continue;
		snprintf(name, sizeof(name), "ctx-%lld/stats", (long long)id);
		path_debugfs(c, name, path, sizeof(path));
		ret = read_stats(c, path, &st);
		if (ret == -ENOENT)
			continue;   /* the context closed since the list was read */
		if (ret) {
			json_object_put(ctxs);
			return 1;
		}
		json_object *rails = json_object_object_get(st, "rails");

		for (size_t r = 0; r < json_object_array_length(rails); r++) {
			json_object *row = json_object_get(json_object_array_get_idx(rails, r));

			json_object_object_add(row, "ctx", json_object_new_int64(id));
			json_object_object_add(row, "pid",
					       json_object_get(json_object_object_get(cx, "pid")));
			json_object_object_add(row, "comm",
					       json_object_get(json_object_object_get(cx, "comm")));
			json_object_object_add(row, "ops_inflight",
					       json_object_get(json_object_object_get(st, "ops_inflight")));
			json_object_object_add(row, "last_error",
					       json_object_get(json_object_object_get(st, "last_error")));
			out_row(&c->o, row);
		}
		json_object_put(st);
	}
	json_object_put(ctxs);
	return 0;
}
