/* SPDX-License-Identifier: MIT */
/*
 * xferctl: the node as operators see it (module, regions, shares,
 * contexts, topology, health), grammar after iproute2's rdma:
 *   xferctl [OPTIONS] OBJECT [COMMAND] [FILTERS]
 * One source file per object; they share the roots below, the strict
 * parsers of the module's sysfs and debugfs files (parse.c), the filters,
 * and the one print path (tools/common/out.h).
 */
#ifndef XFERCTL_H
#define XFERCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "out.h"

struct ctl {
	struct out o;
	bool details;         /* -d */
	/* Where the module's files are. The environment moves them
	 * (XFERCTL_SYSFS, XFERCTL_DEBUGFS, XFER_KMOD_DEV) so that the tests
	 * run the parsers against sample files. */
	const char *sysfs, *debugfs, *dev;
	/* Where processes are (XFERCTL_PROC, default /proc): stat and
	 * monitor find the memfd stats pages of engines without the module. */
	const char *proc;
	/* health's record of the last probe (XFERCTL_STATE_DIR, default
	 * /run/xferctl). */
	const char *state_dir;
};

/* Filters: `pid N`, `region N`, and health's `nics N` (the RDMA NICs a
 * node must have); an object takes those in its mask. */
enum { F_PID = 1 << 0, F_REGION = 1 << 1, F_NICS = 1 << 2 };
struct filters {
	unsigned set;
	int64_t pid, region, nics;
};
/* Parses argv as FILTER VALUE pairs, each allowed by mask; a refusal
 * names the word and what the object takes, and returns -EINVAL. */
int filters_parse(struct ctl *c, const char *obj, unsigned mask, int argc, char **argv,
		  struct filters *f);
/* The row passes every filter set (keys "pid"/"owner_pid", "region"/"id"). */
bool filters_match(const struct filters *f, json_object *row, const char *pid_key,
		   const char *region_key);

/* --- parse.c: the module's files, read strictly --- */

/* $sysfs/class/misc/xfer/NAME and $sysfs/module/xfer/parameters/NAME. */
void path_misc(const struct ctl *c, const char *name, char *buf, size_t len);
void path_param(const struct ctl *c, const char *name, char *buf, size_t len);
void path_debugfs(const struct ctl *c, const char *name, char *buf, size_t len);
/* The module is loaded: $sysfs/module/xfer exists. */
bool module_loaded(const struct ctl *c);

/* A sysfs number: the whole file is decimal digits and one newline.
 * 0; -ENOENT when the file is absent (no message); any other failure
 * prints "FILE: why" through out_error and returns -EINVAL or -errno. */
int read_u64_file(struct ctl *c, const char *path, uint64_t *v);

/* A debugfs table: a header line of tab-separated names that must equal
 * the columns' names, then rows with exactly that many fields, each of its
 * column's type. */
struct col {
	const char *name;
	char type;                  /* 'u' unsigned, 'i' signed, 's' text */
	const char *const *words;   /* for 's': the values allowed, or NULL */
};
/* 0 with *rows a new array of objects (typed values); -ENOENT when the
 * file is absent or unreadable for us (EACCES: no message, the caller
 * falls back to sysfs); else prints "FILE:LINE: why" and returns -EINVAL. */
int read_table(struct ctl *c, const char *path, const struct col *cols, int ncols,
	       json_object **rows);
/* Parse a table from memory (what read_table does once the file is read);
 * `name` names the file in messages. */
int parse_table(struct ctl *c, const char *name, char *text, int first_line,
		const struct col *cols, int ncols, json_object **rows);

/* A context's stats file (debugfs ctx-N/stats): "key value" lines
 * (version, num_rails, ops_inflight, last_error), then the rail table.
 * 0 with *doc {"version":..,"rails":[..]}; -ENOENT absent; -EINVAL bad. */
int read_stats(struct ctl *c, const char *path, json_object **doc);

/* --- pages.c: the stats pages of live engines --- */

/* Validates a binary stats page (len bytes copied from a memfd) and
 * returns it as {"version", "num_rails", ..., "rails": [..]}; a page that
 * cannot be an engine's is named (`name`) and refused with -EINVAL. */
int page_parse(struct ctl *c, const char *name, const void *buf, size_t len, json_object **eng);
/* Every engine's page: the module's contexts from debugfs when readable,
 * and the memfd pages of the processes we may read. *engines: objects
 * with "source" (debugfs/memfd), "key" (stable while the engine lives),
 * "ctx" (null for memfd), "pid", "comm", "file", the page's fields and
 * "rails". *note says what was not readable, or NULL. -EINVAL when a
 * page or list was bad (said; the good ones are still there). */
int stats_collect(struct ctl *c, const struct filters *f, json_object **engines,
		  const char **note);
/* Calls fn with one new row per rail of eng: the rail's fields, and
 * the engine's (source, ctx, pid, comm, ops_inflight as the engine's
 * total, rail_ops_inflight the rail's, peers, last_error, provider). */
void stats_flat_rows(json_object *eng, void (*fn)(json_object *row, void *arg), void *arg);

/* --- prom.c --- */
/* Writes the engines (and the module's sysfs totals) to path as a
 * Prometheus textfile, atomically; 0 or 1 (said why). */
int prom_write(struct ctl *c, const char *path, json_object *engines, int nbad);

/* Column sets of the debugfs files (kmod/xfer_state.c). */
extern const struct col regions_cols[];
extern const int regions_ncols;
extern const struct col shares_cols[];
extern const int shares_ncols;
extern const struct col contexts_cols[];
extern const int contexts_ncols;

/* Prints the rows as the table `name` with the columns' names. */
void print_rows(struct ctl *c, const char *name, const struct col *cols, int ncols,
		json_object *rows, const struct filters *f, const char *pid_key,
		const char *region_key);

/* --- objects: each returns the exit status --- */
int obj_module(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_region(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_share(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_ctx(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_topo(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_health(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_stat(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_check(struct ctl *c, const char *cmd, int argc, char **argv);
int obj_monitor(struct ctl *c, const char *cmd, int argc, char **argv);

/* region, share, ctx: one debugfs table, else the sysfs total (table.c). */
int show_table(struct ctl *c, const char *obj, const char *file, const struct col *cols,
	       int ncols, const char *total, unsigned fmask, const char *pid_key,
	       const char *region_key, int argc, char **argv);

#endif
