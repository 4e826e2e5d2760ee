// SPDX-License-Identifier: MIT
/*
 * xferctl stat -o prom FILE: the stats pages (and the module's sysfs
 * totals when it is loaded) as a Prometheus textfile for node_exporter's
 * textfile collector, in the text exposition format: per family a
 * "# HELP" and a "# TYPE" line, then its samples; counters end in _total.
 * The file is replaced atomically, as the collector's documentation asks:
 * written to FILE.tmp.PID in the same directory, fsynced, renamed over
 * FILE; on any failure the temporary file is removed and FILE is left as
 * it was, so a scrape never sees half a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xferctl.h"

struct family {
	const char *name, *type, *help;
	const char *key;      /* in the rail row or the engine */
	bool per_rail;
};

static const struct family families[] = {
	{ "xfer_bytes_posted_total", "counter", "Bytes posted for RDMA write on the rail.",
	  "bytes_posted", true },
	{ "xfer_bytes_completed_total", "counter", "Bytes whose write completed on the rail.",
	  "bytes_completed", true },
	{ "xfer_ops_posted_total", "counter", "Writes posted on the rail.", "ops_posted", true },
	{ "xfer_ops_completed_total", "counter", "Writes completed on the rail.", "ops_completed",
	  true },
	{ "xfer_ops_failed_total", "counter", "Writes that failed on the rail.", "ops_failed", true },
	{ "xfer_imm_received_total", "counter", "Immediates received on the rail.", "imm_received",
	  true },
	{ "xfer_rail_ops_inflight", "gauge", "Writes in flight on the rail (stats page version 2).",
	  "ops_inflight", true },
	{ "xfer_ops_inflight", "gauge", "Writes in flight on all rails of the engine.",
	  "ops_inflight", false },
	{ "xfer_peers_up", "gauge", "Peers of the engine that are up (stats page version 2).",
	  "peers_up", false },
	{ "xfer_peers_down", "gauge", "Peers of the engine that went down (stats page version 2).",
	  "peers_down", false },
	{ "xfer_last_error", "gauge", "The engine's last error as a negative errno, 0 if none.",
	  "last_error", false },
};

/* Module totals from sysfs: name, file, type. */
static const struct {
	const char *name, *file, *type, *help;
} module_totals[] = {
	{ "xfer_module_pinned_bytes", "pinned_bytes", "gauge", "Host memory pinned by the module." },
	{ "xfer_module_max_pinned_bytes", "max_pinned_bytes", "gauge",
	  "The module's limit on pinned host memory." },
	{ "xfer_module_imported_bytes", "imported_bytes", "gauge",
	  "Bytes of dma-bufs imported by the module." },
	{ "xfer_module_regions", "regions", "gauge", "Regions the module holds." },
	{ "xfer_module_contexts", "contexts", "gauge", "Open /dev/xfer contexts." },
	{ "xfer_module_shares", "shares", "gauge", "Shares of regions." },
	{ "xfer_module_exports", "exports", "gauge", "Regions exported as dma-bufs." },
	{ "xfer_module_pins_total", "pins_total", "counter", "Pin requests the module served." },
	{ "xfer_module_pins_failed_total", "pins_failed", "counter",
	  "Pin requests the module refused or failed." },
};

/* A label value in the text format: backslash, quote and newline escaped. */
static void label(FILE *f, const char *name, const char *v, bool comma)
{
	fprintf(f, "%s%s=\"", comma ? "," : "", name);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static const char *str_of(json_object *o, const char *key, char *buf, size_t len)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	if (json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	snprintf(buf, len, "%lld", (long long)json_object_get_int64(v));
	return buf;
}

/* pid, comm, engine (its id; ctx-N for a version-1 page), ctx when from
 * the module. */
static void engine_labels(FILE *f, json_object *e)
{
	char b[32], eb[32];
	const char *ctx = str_of(e, "ctx", b, sizeof(b)), *id = str_of(e, "engine_id", eb, sizeof(eb));
	char ctxname[48];

	label(f, "pid", str_of(e, "pid", (char[32]){ 0 }, 32), false);
	label(f, "comm", str_of(e, "comm", (char[64]){ 0 }, 64) ?: "?", true);
	if (!id) {
		snprintf(ctxname, sizeof(ctxname), "ctx-%s", ctx ? ctx : "?");
		id = ctxname;
	}
	label(f, "engine", id, true);
	if (ctx)
		label(f, "ctx", ctx, true);
}

static int write_all(struct ctl *c, FILE *f, json_object *engines, int nbad)
{
	char path[4096];

	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		const struct family *fm = &families[i];

		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fm->name, fm->help, fm->name, fm->type);
		for (size_t e = 0; e < json_object_array_length(engines); e++) {
			json_object *eng = json_object_array_get_idx(engines, e), *v = NULL;

			if (!fm->per_rail) {
				if (!json_object_object_get_ex(eng, fm->key, &v))
					continue;   /* a version-1 page has no peers */
				fputs(fm->name, f);
				fputc('{', f);
				engine_labels(f, eng);
				fprintf(f, "} %lld\n", (long long)json_object_get_int64(v));
				continue;
			}
			json_object *rails = json_object_object_get(eng, "rails");

			for (size_t r = 0; r < json_object_array_length(rails); r++) {
				json_object *row = json_object_array_get_idx(rails, r), *nm = NULL;
				char rb[16];

				if (!json_object_object_get_ex(row, fm->key, &v))
					continue;
				fputs(fm->name, f);
				fputc('{', f);
				engine_labels(f, eng);
				snprintf(rb, sizeof(rb), "%lld",
					 (long long)json_object_get_int64(json_object_object_get(row, "rail")));
				label(f, "rail", rb, true);
				if (json_object_object_get_ex(row, "name", &nm))
					label(f, "device", json_object_get_string(nm), true);
				fprintf(f, "} %lld\n", (long long)json_object_get_int64(v));
			}
		}
	}
	fprintf(f, "# HELP xfer_stats_pages_invalid Stats pages xferctl refused (see its stderr).\n"
		   "# TYPE xfer_stats_pages_invalid gauge\nxfer_stats_pages_invalid %d\n", nbad);
	bool loaded = module_loaded(c);

	fprintf(f, "# HELP xfer_module_loaded Whether the xfer module is loaded.\n"
		   "# TYPE xfer_module_loaded gauge\nxfer_module_loaded %d\n", loaded ? 1 : 0);
	for (size_t i = 0; loaded && i < sizeof(module_totals) / sizeof(module_totals[0]); i++) {
		uint64_t v;

		path_misc(c, module_totals[i].file, path, sizeof(path));
		if (read_u64_file(c, path, &v))
			continue;   /* absent in this module (or said why) */
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", module_totals[i].name,
			module_totals[i].help, module_totals[i].name, module_totals[i].type,
			module_totals[i].name, (unsigned long long)v);
	}
	return ferror(f) ? -EIO : 0;
}

int prom_write(struct ctl *c, const char *path, json_object *engines, int nbad)
{
	char tmp[4096], dir[4096];
	FILE *f = NULL;
	int fd, ret;

	if (!*path)
		return out_fail(&c->o, 0, "stat -o prom: empty file name");
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
		return out_fail(&c->o, 0, "stat -o prom: %s: name too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return out_fail(&c->o, errno, "stat -o prom: cannot write %s", tmp);
	f = fdopen(fd, "w");
	if (!f) {
		ret = -errno;
		close(fd);
		goto fail;
	}
	ret = write_all(c, f, engines, nbad);
	if (!ret && fflush(f))
		ret = -errno;
	if (!ret && fsync(fileno(f)))
		ret = -errno;
	if (fclose(f) && !ret)
		ret = -errno;
	if (ret)
		goto fail;
	if (rename(tmp, path)) {
		ret = -errno;
		goto fail;
	}
	/* The rename itself survives a crash once the directory is synced. */
	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
fail:
	unlink(tmp);
	return out_fail(&c->o, ret, "stat -o prom: %s not written", path);
}
