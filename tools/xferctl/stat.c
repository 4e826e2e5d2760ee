// SPDX-License-Identifier: MIT
/*
 * xferctl stat [show] [pid N] [-o prom FILE]: every live engine's counters
 * per rail, as the library publishes them in its stats page (struct
 * xfer_ctx_stats): the module's contexts through debugfs (root), and
 * engines without the module through their "xfer-stats" memfd (same uid
 * or root); the `source` column says which (pages.c). -o prom writes the
 * same as a Prometheus textfile instead (prom.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "xferctl.h"

static void print_row(json_object *row, void *arg)
{
	out_row(arg, row);
}

int obj_stat(struct ctl *c, const char *cmd, int argc, char **argv)
{
	static const char *const cols[] = { "source",          "pid",         "comm",
					    "engine_id",       "ctx",         "rail",        "name",
					    "bytes_posted",    "bytes_completed", "ops_posted",
					    "ops_completed",   "ops_failed",  "imm_received",
					    "rail_ops_inflight", "peers_up",  "peers_down",
					    "last_error" };
	char *fargv[16];
	const char *prom = NULL, *note;
	struct filters f;
	json_object *engines;
	int fargc = 0, ret, nbad = 0;

	(void)cmd;
	/* -o FORMAT FILE among the filters (the object's own option). */
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-o")) {
			if (i + 2 >= argc)
				return out_fail(&c->o, 0, "stat: -o needs a format and a file (-o prom FILE)");
			if (strcmp(argv[i + 1], "prom"))
				return out_fail(&c->o, 0, "stat: unknown output format '%s' (-o takes: prom)",
						argv[i + 1]);
			if (prom)
				return out_fail(&c->o, 0, "stat: -o given twice");
			prom = argv[i + 2];
			i += 2;
		} else if (fargc < 16) {
			fargv[fargc++] = argv[i];
		} else {
			return out_fail(&c->o, 0, "stat: too many words");
		}
	}
	if (filters_parse(c, "stat", F_PID, fargc, fargv, &f))
		return 1;   /* filters_parse said why */
	ret = stats_collect(c, &f, &engines, &note);
	if (ret)
		nbad = 1;
	if (prom) {
		int rc = prom_write(c, prom, engines, nbad);

		json_object_put(engines);
		if (!rc) {
			out_str(&c->o, "prom", prom);
			if (note)
				out_str(&c->o, "note", note);
		}
		return rc || nbad ? 1 : 0;
	}
	out_table(&c->o, "rails", cols, (int)(sizeof(cols) / sizeof(cols[0])));
	for (size_t i = 0; i < json_object_array_length(engines); i++)
		stats_flat_rows(json_object_array_get_idx(engines, i), print_row, &c->o);
	if (note)
		out_str(&c->o, "note", note);
	json_object_put(engines);
	return nbad ? 1 : 0;
}
