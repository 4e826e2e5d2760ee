// SPDX-License-Identifier: MIT
/*
 * What region, share and ctx have in common: filters, and a debugfs table
 * printed when it can be read (root, debugfs mounted), else the sysfs
 * total an unprivileged user can read, saying why there is no list.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xferctl.h"

int filters_parse(struct ctl *c, const char *obj, unsigned mask, int argc, char **argv,
		  struct filters *f)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < argc; i += 2) {
		unsigned bit;
		int64_t *dst;
		char *end;

		if (!strcmp(argv[i], "pid") && (mask & F_PID)) {
			bit = F_PID;
			dst = &f->pid;
		} else if (!strcmp(argv[i], "region") && (mask & F_REGION)) {
			bit = F_REGION;
			dst = &f->region;
		} else if (!strcmp(argv[i], "nics") && (mask & F_NICS)) {
			bit = F_NICS;
			dst = &f->nics;
		} else {
			out_error(&c->o, "%s: unknown filter '%s' (%s takes%s%s%s)", obj, argv[i], obj,
				  mask & F_PID ? " pid N" : "", mask & F_REGION ? " region N" : "",
				  mask & F_NICS ? " nics N" : "");
			return -EINVAL;
		}
		if (i + 1 >= argc) {
			out_error(&c->o, "%s: filter '%s' needs a value", obj, argv[i]);
			return -EINVAL;
		}
		const char *s = argv[i + 1];

		errno = 0;
		long long v = strtoll(s, &end, 10);

		if (!*s || *s < '0' || *s > '9' || *end || errno || v > INT32_MAX) {
			out_error(&c->o, "%s: %s '%s' is not a number from 0 to %d", obj, argv[i], s,
				  INT32_MAX);
			return -EINVAL;
		}
		if (f->set & bit) {
			out_error(&c->o, "%s: filter '%s' given twice", obj, argv[i]);
			return -EINVAL;
		}
		f->set |= bit;
		*dst = v;
	}
	return 0;
}

static bool key_is(json_object *row, const char *key, int64_t v)
{
	json_object *x;

	return key && json_object_object_get_ex(row, key, &x) && json_object_get_int64(x) == v;
}

bool filters_match(const struct filters *f, json_object *row, const char *pid_key,
		   const char *region_key)
{
	if ((f->set & F_PID) && !key_is(row, pid_key, f->pid))
		return false;
	if ((f->set & F_REGION) && !key_is(row, region_key, f->region))
		return false;
	return true;
}

void print_rows(struct ctl *c, const char *name, const struct col *cols, int ncols,
		json_object *rows, const struct filters *f, const char *pid_key,
		const char *region_key)
{
	const char *names[32];

	for (int i = 0; i < ncols && i < 32; i++)
		names[i] = cols[i].name;
	out_table(&c->o, name, names, ncols);
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *row = json_object_array_get_idx(rows, i);

		if (f && !filters_match(f, row, pid_key, region_key))
			continue;
		out_row(&c->o, json_object_get(row));
	}
}

int show_table(struct ctl *c, const char *obj, const char *file, const struct col *cols,
	       int ncols, const char *total, unsigned fmask, const char *pid_key,
	       const char *region_key, int argc, char **argv)
{
	char path[4096];
	struct filters f;
	json_object *rows;
	uint64_t n;
	int ret;

	if (filters_parse(c, obj, fmask, argc, argv, &f))
		return 1;   /* filters_parse said why */
	if (!module_loaded(c)) {
		/* Nothing is pinned without the module: an empty list, not an error. */
		out_set(&c->o, "module", json_object_new_string("not loaded"));
		if (c->o.json)
			json_object_object_add(c->o.doc, file, json_object_new_array());
		out_finish(&c->o);
		return 0;
	}
	path_debugfs(c, file, path, sizeof(path));
	ret = read_table(c, path, cols, ncols, &rows);
	if (ret == 0) {
		out_str(&c->o, "source", "debugfs");
		print_rows(c, file, cols, ncols, rows, &f, pid_key, region_key);
		json_object_put(rows);
		out_finish(&c->o);
		return 0;
	}
	if (ret != -ENOENT) {
		out_finish(&c->o);
		return 1;
	}
	/* No debugfs for us: the total sysfs gives everyone. */
	path_misc(c, total, path, sizeof(path));
	ret = read_u64_file(c, path, &n);
	if (ret == -ENOENT)
		return out_fail(&c->o, 0, "%s: the module is loaded but %s is missing", obj, path);
	if (ret)
		return out_fail(&c->o, 0, "%s: cannot read the total", obj);
	out_str(&c->o, "source", "sysfs");
	out_u64(&c->o, total, n);
	if (f.set)
		out_error(&c->o, "%s: filters need the list in %s/xfer/%s (root, debugfs mounted)",
			  obj, c->debugfs, file);
	else if (!c->o.json)
		printf("(the list is in %s/xfer/%s: root, debugfs mounted)\n", c->debugfs, file);
	out_finish(&c->o);
	return c->o.failed ? 1 : 0;
}
