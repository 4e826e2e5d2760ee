/* SPDX-License-Identifier: MIT */
/*
 * One print path for every tool (as iproute2's rdma and bpftool do):
 * results are built as JSON objects (json-c) and printed either as JSON
 * (-j, --pretty for indented) or as text from the same objects, so the two
 * can never drift. Errors go through here too: in text mode a line on
 * stderr, in JSON mode also an "error" key in the one document printed on
 * stdout (beside whatever figures were gathered before it), so a script
 * reading stdout always gets JSON, and a person reading a terminal always
 * gets the message.
 */
#ifndef XFER_TOOLS_OUT_H
#define XFER_TOOLS_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

struct out {
	const char *prog;        /* prefix of messages on stderr */
	bool json, pretty;       /* set by the options, before anything is printed */
	bool failed;             /* out_error was called */
	json_object *doc;        /* the whole document (JSON mode) */
	json_object *rows;       /* current table's rows */
	const char *const *cols; /* current table's columns (text mode) */
	int ncols;
};

void out_init(struct out *o, const char *prog);
/* Start a table named `name` with the given columns (keys of the rows). */
void out_table(struct out *o, const char *name, const char *const *cols, int ncols);
/* Add a row (ownership passes to the table); text mode prints it at once. */
void out_row(struct out *o, json_object *row);
/* A top-level field (ownership of val passes); text mode prints "key value". */
void out_set(struct out *o, const char *key, json_object *val);
void out_str(struct out *o, const char *key, const char *v);
void out_u64(struct out *o, const char *key, uint64_t v);
void out_f64(struct out *o, const char *key, double v);
/* An error: "prog: message" on stderr; in JSON mode also doc["error"]. */
void out_error(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with ": strerror(err)" appended and doc["errno"] (err either sign). */
void out_errno(struct out *o, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print the document (JSON mode) and free it; a second call does nothing. */
void out_finish(struct out *o);
/* out_errno (err 0: out_error), out_finish, and the exit status to return: 1. */
int out_fail(struct out *o, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
