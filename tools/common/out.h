/* SPDX-License-Identifier: MIT */
/*
 * One print path for tools (as iproute2's rdma and bpftool do): results are
 * built as JSON objects (json-c) and printed either as JSON (-j, -p for
 * pretty) or as an aligned text table from the same objects, so the two can
 * never drift. In JSON mode errors are JSON too.
 */
#ifndef XFER_TOOLS_OUT_H
#define XFER_TOOLS_OUT_H

#include <stdbool.h>
#include <json-c/json.h>

struct out {
	bool json, pretty;
	json_object *doc;        /* the whole document (JSON mode) */
	json_object *rows;       /* current table's rows */
	const char *const *cols; /* current table's columns (text mode) */
	int ncols;
};

void out_init(struct out *o, bool json, bool pretty);
/* Start a table named `name` with the given columns (keys of the rows). */
void out_table(struct out *o, const char *name, const char *const *cols, int ncols);
/* Add a row (ownership passes to the table); text mode prints it at once. */
void out_row(struct out *o, json_object *row);
void out_set(struct out *o, const char *key, json_object *val);   /* top-level field */
void out_error(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void out_finish(struct out *o);

#endif
