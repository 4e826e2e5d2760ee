// SPDX-License-Identifier: MIT
/*
 * The stats pages of live engines (struct xfer_ctx_stats), from the two
 * places they can be:
 *  - the module's contexts: debugfs xfer/ctx-N/stats (root, debugfs
 *    mounted), listed by xfer/contexts;
 *  - engines without the module publish the page in a memfd named
 *    "xfer-stats" (lib/core/engine.c): found through /proc/PID/fd, whose
 *    link reads "/memfd:xfer-stats (deleted)", and readable by the same
 *    uid or root (the kernel's ptrace read check on /proc/PID/fd).
 * A memfd page is copied with pread, never mapped: a page that shrank
 * under us would be a SIGBUS, a short read is only an error. An empty
 * memfd, or a page whose version is still 0, is an engine starting (the
 * library writes the version last) and is skipped. Every field
 * was written by the process: a page that cannot be an engine's is
 * named (pid and file) and left out, and the caller exits non-zero.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <linux/xfer.h>

#include "xferctl.h"

#define MEMFD_LINK "/memfd:xfer-stats (deleted)"
/* Versions beyond this are not a future xfer's but garbage. */
#define VERSION_SANE 0xffff

static void read_comm(const struct ctl *c, long pid, char *buf, size_t len)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%ld/comm", c->proc, pid);
	snprintf(buf, len, "?");
	f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

/* A name field: NUL-terminated within its bytes, printable, no space. */
static bool name_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

int page_parse(struct ctl *c, const char *name, const void *buf, size_t len, json_object **eng)
{
	struct xfer_ctx_stats st;
	char hex[24];

	*eng = NULL;
	if (len < XFER_CTX_STATS_SIZE_V1) {
		out_error(&c->o, "%s: truncated stats page: %zu bytes, a page has at least %d", name,
			  len, XFER_CTX_STATS_SIZE_V1);
		return -EINVAL;
	}
	memset(&st, 0, sizeof(st));
	memcpy(&st, buf, len < sizeof(st) ? len : sizeof(st));
	if (st.version < 1 || st.version > VERSION_SANE) {
		out_error(&c->o, "%s: version %u: not a stats page (foreign or corrupt)", name,
			  st.version);
		return -EINVAL;
	}
	if (st.num_rails > XFER_CTX_STATS_MAX_RAILS) {
		out_error(&c->o, "%s: num_rails %u is more than the page holds (%d)", name,
			  st.num_rails, XFER_CTX_STATS_MAX_RAILS);
		return -EINVAL;
	}
	bool v2 = st.version >= 2;

	if (v2 && (st.size < XFER_CTX_STATS_SIZE_V2 || st.size > len)) {
		out_error(&c->o, "%s: version %u with size %u: a version-2 page has at least %d bytes, this one %zu",
			  name, st.version, st.size, XFER_CTX_STATS_SIZE_V2, len);
		return -EINVAL;
	}
	if (v2 && !name_ok(st.provider, sizeof(st.provider))) {
		out_error(&c->o, "%s: the provider name is not a NUL-terminated printable word", name);
		return -EINVAL;
	}
	for (uint32_t r = 0; v2 && r < st.num_rails; r++)
		if (!name_ok(st.rail_name[r], sizeof(st.rail_name[r]))) {
			out_error(&c->o, "%s: rail %u's name is not a NUL-terminated printable word",
				  name, r);
			return -EINVAL;
		}

	json_object *e = json_object_new_object(), *rails = json_object_new_array();

	json_object_object_add(e, "version", json_object_new_int64(st.version));
	json_object_object_add(e, "num_rails", json_object_new_int64(st.num_rails));
	json_object_object_add(e, "ops_inflight", json_object_new_int64((int64_t)st.ops_inflight));
	json_object_object_add(e, "last_error", json_object_new_int64(st.last_error));
	if (v2) {
		json_object_object_add(e, "peers_up", json_object_new_int64(st.peers_up));
		json_object_object_add(e, "peers_down", json_object_new_int64(st.peers_down));
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)st.engine_id);
		json_object_object_add(e, "engine_id", json_object_new_string(hex));
		json_object_object_add(e, "provider", json_object_new_string(st.provider));
		json_object_object_add(e, "page_pid", json_object_new_int64(st.pid));
	}
	for (uint32_t r = 0; r < st.num_rails; r++) {
		const struct xfer_ctx_stats_rail *d = &st.rail[r];
		json_object *row = json_object_new_object();

		json_object_object_add(row, "rail", json_object_new_int64(r));
		json_object_object_add(row, "bytes_posted", json_object_new_int64((int64_t)d->bytes_posted));
		json_object_object_add(row, "bytes_completed",
				       json_object_new_int64((int64_t)d->bytes_completed));
		json_object_object_add(row, "ops_posted", json_object_new_int64((int64_t)d->ops_posted));
		json_object_object_add(row, "ops_completed",
				       json_object_new_int64((int64_t)d->ops_completed));
		json_object_object_add(row, "ops_failed", json_object_new_int64((int64_t)d->ops_failed));
		json_object_object_add(row, "imm_received", json_object_new_int64((int64_t)d->imm_received));
		if (v2) {
			json_object_object_add(row, "ops_inflight",
					       json_object_new_int64((int64_t)st.rail_ops_inflight[r]));
			json_object_object_add(row, "name", json_object_new_string(st.rail_name[r]));
		}
		json_object_array_add(rails, row);
	}
	json_object_object_add(e, "rails", rails);
	*eng = e;
	return 0;
}

/* The module's contexts; 0, -ENOENT (debugfs not readable), or -EINVAL
 * when the list itself is malformed (said). Bad pages set *bad. */
static int collect_debugfs(struct ctl *c, const struct filters *f, json_object *engines, bool *bad)
{
	char path[4096];
	json_object *ctxs;
	int ret;

	path_debugfs(c, "contexts", path, sizeof(path));
	ret = read_table(c, path, contexts_cols, contexts_ncols, &ctxs);
	if (ret)
		return ret;
	for (size_t i = 0; i < json_object_array_length(ctxs); i++) {
		json_object *cx = json_object_array_get_idx(ctxs, i), *st;
		int64_t id = json_object_get_int64(json_object_object_get(cx, "ctx"));
		char name[64], key[96];

		if (!filters_match(f, cx, "pid", NULL))
			continue;
		snprintf(name, sizeof(name), "ctx-%lld/stats", (long long)id);
		path_debugfs(c, name, path, sizeof(path));
		ret = read_stats(c, path, &st);
		if (ret == -ENOENT)
			continue;   /* the context closed since the list was read */
		if (ret) {
			*bad = true;   /* read_stats named the file and line */
			continue;
		}
		json_object *eid = json_object_object_get(st, "engine_id");

		snprintf(key, sizeof(key), "ctx-%lld/%s", (long long)id,
			 eid ? json_object_get_string(eid) : "-");
		json_object_object_add(st, "source", json_object_new_string("debugfs"));
		json_object_object_add(st, "key", json_object_new_string(key));
		json_object_object_add(st, "ctx", json_object_new_int64(id));
		json_object_object_add(st, "pid", json_object_get(json_object_object_get(cx, "pid")));
		json_object_object_add(st, "comm", json_object_get(json_object_object_get(cx, "comm")));
		json_object_object_add(st, "file", json_object_new_string(path));
		json_object_array_add(engines, st);
	}
	json_object_put(ctxs);
	return 0;
}

static json_object *find_key(json_object *engines, const char *key)
{
	for (size_t i = 0; i < json_object_array_length(engines); i++) {
		json_object *e = json_object_array_get_idx(engines, i);

		if (!strcmp(json_object_get_string(json_object_object_get(e, "key")), key))
			return e;
	}
	return NULL;
}

/* One process's memfd pages. */
static void collect_pid(struct ctl *c, long pid, json_object *engines, bool *bad)
{
	char dir[128], path[512], link[256], comm[64], key[64];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%ld/fd", c->proc, pid);
	d = opendir(dir);
	if (!d)
		return;   /* gone, or another user's (not ours to read) */
	comm[0] = 0;
	while ((de = readdir(d))) {
		unsigned char buf[8192];
		json_object *e, *old;
		struct stat sb;
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		n = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = 0;
		if (strcmp(link, MEMFD_LINK))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;   /* closed since, or not ours */
		if (fstat(fd, &sb)) {
			close(fd);
			continue;
		}
		n = pread(fd, buf, sizeof(buf), 0);
		close(fd);
		if (n < 0) {
			out_errno(&c->o, errno, "pid %ld: %s", pid, path);
			*bad = true;
			continue;
		}
		/* An engine starting: the memfd made but not yet sized, or its
		 * version (written last) not yet there. Not a page yet. */
		if (n == 0 || (n >= 4 && !memcmp(buf, "\0\0\0\0", 4)))
			continue;
		char name[600];

		snprintf(name, sizeof(name), "pid %ld: %s", pid, path);
		if (page_parse(c, name, buf, (size_t)n, &e)) {
			*bad = true;
			continue;
		}
		/* A forked child holds its parent's memfd too (MFD_CLOEXEC only
		 * closes on exec): one page, shown once, under the process that
		 * wrote it when that one is seen. */
		json_object *eid = json_object_object_get(e, "engine_id");

		snprintf(key, sizeof(key), "memfd-%llu/%s", (unsigned long long)sb.st_ino,
			 eid ? json_object_get_string(eid) : "-");
		old = find_key(engines, key);
		if (old) {
			int64_t writer = json_object_get_int64(json_object_object_get(e, "page_pid"));

			if (writer == pid) {
				json_object_object_add(old, "pid", json_object_new_int64(pid));
				read_comm(c, pid, comm, sizeof(comm));
				json_object_object_add(old, "comm", json_object_new_string(comm));
				json_object_object_add(old, "file", json_object_new_string(path));
			}
			json_object_put(e);
			continue;
		}
		if (!comm[0])
			read_comm(c, pid, comm, sizeof(comm));
		json_object_object_add(e, "source", json_object_new_string("memfd"));
		json_object_object_add(e, "key", json_object_new_string(key));
		json_object_object_add(e, "ctx", NULL);
		json_object_object_add(e, "pid", json_object_new_int64(pid));
		json_object_object_add(e, "comm", json_object_new_string(comm));
		json_object_object_add(e, "file", json_object_new_string(path));
		json_object_array_add(engines, e);
	}
	closedir(d);
}

static void collect_memfd(struct ctl *c, const struct filters *f, json_object *engines, bool *bad)
{
	struct dirent *de;
	DIR *d;

	if (f->set & F_PID) {
		collect_pid(c, (long)f->pid, engines, bad);
		return;
	}
	d = opendir(c->proc);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (de->d_name[0] < '1' || de->d_name[0] > '9' || *end)
			continue;
		collect_pid(c, pid, engines, bad);
	}
	closedir(d);
}

int stats_collect(struct ctl *c, const struct filters *f, json_object **engines,
		  const char **note)
{
	bool bad = false;
	int ret;

	*engines = json_object_new_array();
	*note = NULL;
	if (module_loaded(c)) {
		ret = collect_debugfs(c, f, *engines, &bad);
		if (ret == -ENOENT)
			*note = "the module's contexts are in debugfs (root, debugfs mounted): not shown";
		else if (ret)
			bad = true;
	}
	collect_memfd(c, f, *engines, &bad);
	return bad ? -EINVAL : 0;
}

void stats_flat_rows(json_object *eng, void (*fn)(json_object *row, void *arg), void *arg)
{
	static const char *const from_engine[] = { "source", "ctx",        "pid",
						   "comm",   "peers_up",   "peers_down",
						   "last_error", "provider", "engine_id",
						   "version" };
	json_object *rails = json_object_object_get(eng, "rails");

	for (size_t r = 0; r < json_object_array_length(rails); r++) {
		json_object *src = json_object_array_get_idx(rails, r), *row = json_object_new_object();

		json_object_object_foreach(src, k, v)
		{
			if (strcmp(k, "ops_inflight"))
				json_object_object_add(row, k, json_object_get(v));
		}
		/* "ops_inflight" stays the engine's total (as version 1 had it);
		 * the rail's own count is rail_ops_inflight (version 2). */
		json_object_object_add(row, "rail_ops_inflight",
				       json_object_get(json_object_object_get(src, "ops_inflight")));
		json_object_object_add(row, "ops_inflight",
				       json_object_get(json_object_object_get(eng, "ops_inflight")));
		for (size_t i = 0; i < sizeof(from_engine) / sizeof(from_engine[0]); i++) {
			json_object *ev = NULL;

			json_object_object_get_ex(eng, from_engine[i], &ev);
			json_object_object_add(row, from_engine[i], json_object_get(ev));
		}
		fn(row, arg);
	}
}
