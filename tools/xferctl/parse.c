// SPDX-License-Identifier: MIT
/*
 * The module's files, read strictly: a line that does not have the shape
 * kmod/xfer_state.c prints is an error naming the file and the line, never
 * a row of zeros (a parser that guessed would hide a module/tool mismatch).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <linux/xfer.h>

#include "xferctl.h"

static const char *const kinds[] = { "host", "dmabuf", "nvp2p", "?", NULL };
static const char *const states[] = { "active", "orphaned", "invalid", NULL };
static const char *const rules[] = { "owner", "group", "uid", NULL };

/* seq_printf formats of kmod/xfer_state.c, column by column. */
const struct col regions_cols[] = {
	{ "id", 'u', NULL },        { "owner_pid", 'i', NULL }, { "owner", 's', NULL },
	{ "kind", 's', kinds },     { "bytes", 'u', NULL },     { "refs", 'u', NULL },
	{ "holders", 'i', NULL },   { "shares", 'i', NULL },    { "exports", 'i', NULL },
	{ "maps", 'i', NULL },      { "state", 's', states },
};
const int regions_ncols = sizeof(regions_cols) / sizeof(regions_cols[0]);

const struct col shares_cols[] = {
	{ "share_id", 'u', NULL }, { "region", 'u', NULL }, { "owner_pid", 'i', NULL },
	{ "rule", 's', rules },    { "id", 'u', NULL },     { "opens", 'i', NULL },
};
const int shares_ncols = sizeof(shares_cols) / sizeof(shares_cols[0]);

const struct col contexts_cols[] = {
	{ "ctx", 'u', NULL },     { "pid", 'i', NULL },          { "comm", 's', NULL },
	{ "regions", 'u', NULL }, { "pinned_bytes", 'u', NULL },
};
const int contexts_ncols = sizeof(contexts_cols) / sizeof(contexts_cols[0]);

static const struct col rail_cols[] = {
	{ "rail", 'u', NULL },          { "bytes_posted", 'u', NULL },
	{ "bytes_completed", 'u', NULL }, { "ops_posted", 'u', NULL },
	{ "ops_completed", 'u', NULL }, { "ops_failed", 'u', NULL },
	{ "imm_received", 'u', NULL },
};

void path_misc(const struct ctl *c, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/class/misc/xfer/%s", c->sysfs, name);
}

void path_param(const struct ctl *c, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/module/xfer/parameters/%s", c->sysfs, name);
}

void path_debugfs(const struct ctl *c, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/xfer/%s", c->debugfs, name);
}

bool module_loaded(const struct ctl *c)
{
	char p[4096];
	struct stat st;

	snprintf(p, sizeof(p), "%s/module/xfer", c->sysfs);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The whole file, NUL-terminated; NULL with errno set. Files here are
 * small (a table of every region is the largest). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t cap = 4096, n = 0;
	char *buf;

	if (!f)
		return NULL;
	buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n - 1, f);

		n += got;
		if (n < cap - 1) {
			if (ferror(f)) {
				free(buf);
				buf = NULL;
				errno = EIO;
			}
			break;
		}
		char *nb = cap > (64u << 20) ? NULL : realloc(buf, cap * 2);

		if (!nb) {
			free(buf);
			buf = NULL;
			errno = EFBIG;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	if (buf)
		buf[n] = 0;
	fclose(f);
	return buf;
}

/* Strict decimal: digits only (and a leading '-' when signed). */
static int parse_num(const char *s, bool is_signed, json_object **v)
{
	const char *d = s;
	char *end;

	if (is_signed && *d == '-')
		d++;
	if (!*d)
		return -EINVAL;
	for (const char *p = d; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	errno = 0;
	if (is_signed) {
		long long x = strtoll(s, &end, 10);

		if (errno || *end)
			return -ERANGE;
		*v = json_object_new_int64(x);
	} else {
		unsigned long long x = strtoull(s, &end, 10);

		if (errno || *end || x > INT64_MAX)
			return -ERANGE;   /* JSON readers take int64 */
		*v = json_object_new_int64((int64_t)x);
	}
	return 0;
}

int read_u64_file(struct ctl *c, const char *path, uint64_t *v)
{
	char *text = slurp(path), *nl;
	json_object *j = NULL;
	int ret;

	if (!text) {
		if (errno == ENOENT)
			return -ENOENT;
		ret = -errno;
		out_errno(&c->o, ret, "%s", path);
		return ret;
	}
	nl = strchr(text, '\n');
	if (!nl || nl[1] || nl == text) {
		out_error(&c->o, "%s: expected one number and a newline, got '%.40s'", path, text);
		free(text);
		return -EINVAL;
	}
	*nl = 0;
	ret = parse_num(text, false, &j);
	if (ret) {
		out_error(&c->o, "%s: '%.40s' is not an unsigned number", path, text);
		free(text);
		return -EINVAL;
	}
	*v = (uint64_t)json_object_get_int64(j);
	json_object_put(j);
	free(text);
	return 0;
}

/* Splits line at tabs into at most max fields; the count (max + 1 when
 * there are more). */
static int split_tabs(char *line, char **f, int max)
{
	int n = 0;

	for (char *p = line;; p++) {
		if (n > max)
			return n;
		f[n++] = p;
		p = strchr(p, '\t');
		if (!p)
			return n;
		*p = 0;
	}
}

static bool in_words(const char *s, const char *const *w)
{
	for (; *w; w++)
		if (!strcmp(s, *w))
			return true;
	return false;
}

int parse_table(struct ctl *c, const char *name, char *text, int first_line,
		const struct col *cols, int ncols, json_object **rows)
{
	char *f[32], *line = text, *nl;
	int lineno = first_line, n;

	*rows = NULL;
	if (!*text) {
		out_error(&c->o, "%s:%d: empty (expected the header line)", name, lineno);
		return -EINVAL;
	}
	*rows = json_object_new_array();
	for (; *line; line = nl + 1, lineno++) {
		nl = strchr(line, '\n');
		if (!nl) {
			out_error(&c->o, "%s:%d: truncated line (no newline): '%.60s'", name, lineno,
				  line);
			goto bad;
		}
		*nl = 0;
		n = split_tabs(line, f, ncols < 31 ? ncols : 31);
		if (n != ncols) {
			if (n > ncols)
				out_error(&c->o, "%s:%d: more than %d fields", name, lineno, ncols);
			else
				out_error(&c->o, "%s:%d: %d fields, expected %d", name, lineno, n, ncols);
			goto bad;
		}
		if (line == text || lineno == first_line) {   /* the header */
			for (int i = 0; i < ncols; i++)
				if (strcmp(f[i], cols[i].name)) {
					out_error(&c->o,
						  "%s:%d: column %d is '%s', expected '%s' (a module this tool does not know?)",
						  name, lineno, i + 1, f[i], cols[i].name);
					goto bad;
				}
			continue;
		}
		json_object *row = json_object_new_object();

		json_object_array_add(*rows, row);
		for (int i = 0; i < ncols; i++) {
			json_object *v = NULL;

			if (cols[i].type == 's') {
				if (!*f[i] || (cols[i].words && !in_words(f[i], cols[i].words))) {
					out_error(&c->o, "%s:%d: %s '%s' is not a value the module prints",
						  name, lineno, cols[i].name, f[i]);
					goto bad;
				}
				v = json_object_new_string(f[i]);
			} else if (parse_num(f[i], cols[i].type == 'i', &v)) {
				out_error(&c->o, "%s:%d: %s '%.40s' is not %s number", name, lineno,
					  cols[i].name, f[i], cols[i].type == 'i' ? "a" : "an unsigned");
				goto bad;
			}
			json_object_object_add(row, cols[i].name, v);
		}
	}
	return 0;
bad:
	json_object_put(*rows);
	*rows = NULL;
	return -EINVAL;
}

int read_table(struct ctl *c, const char *path, const struct col *cols, int ncols,
	       json_object **rows)
{
	char *text = slurp(path);
	int ret;

	*rows = NULL;
	if (!text) {
		if (errno == ENOENT || errno == EACCES || errno == EPERM)
			return -ENOENT;
		ret = -errno;
		out_errno(&c->o, ret, "%s", path);
		return ret;
	}
	ret = parse_table(c, path, text, 1, cols, ncols, rows);
	free(text);
	return ret;
}

/* "KEY VALUE" as line `lineno` of path; the value (a number, or for the
 * engine id hex text, or for provider a word) into doc. */
static int stats_key(struct ctl *c, const char *path, int lineno, char **line, const char *key,
		     char type, json_object *doc)
{
	char *nl = strchr(*line, '\n'), *sp;
	size_t kl = strlen(key);
	json_object *v = NULL;

	if (!nl) {
		out_error(&c->o, "%s:%d: truncated (expected '%s N')", path, lineno,
			  key);
		return -EINVAL;
	}
	*nl = 0;
	sp = strchr(*line, ' ');
	if (!sp || (size_t)(sp - *line) != kl || strncmp(*line, key, kl))
		goto bad;
	sp++;
	if (type == 'x') {   /* a u64 beyond JSON's int64: as hex text */
		char *end, hex[24];
		unsigned long long x;

		errno = 0;
		x = strtoull(sp, &end, 10);
		if (!*sp || *sp < '0' || *sp > '9' || *end || errno)
			goto bad;
		snprintf(hex, sizeof(hex), "%016llx", x);
		v = json_object_new_string(hex);
	} else if (type == 'w') {
		if (!*sp || strchr(sp, ' ') || strchr(sp, '\t'))
			goto bad;
		v = json_object_new_string(sp);
	} else if (parse_num(sp, type == 'i', &v)) {
		goto bad;
	}
	json_object_object_add(doc, key, v);
	*line = nl + 1;
	return 0;
bad:
	out_error(&c->o, "%s:%d: expected '%s N', got '%.60s'", path, lineno, key, *line);
	return -EINVAL;
}

/* The rail table of a version-2 module has two more columns. */
static const struct col rail_cols_v2[] = {
	{ "rail", 'u', NULL },          { "bytes_posted", 'u', NULL },
	{ "bytes_completed", 'u', NULL }, { "ops_posted", 'u', NULL },
	{ "ops_completed", 'u', NULL }, { "ops_failed", 'u', NULL },
	{ "imm_received", 'u', NULL },  { "ops_inflight", 'u', NULL },
	{ "name", 's', NULL },
};

int read_stats(struct ctl *c, const char *path, json_object **doc)
{
	static const struct { const char *key; char type; } v1[] = {
		{ "version", 'u' }, { "num_rails", 'u' }, { "ops_inflight", 'u' }, { "last_error", 'i' },
	}, v2[] = {
		{ "peers_up", 'u' }, { "peers_down", 'u' }, { "engine_id", 'x' }, { "provider", 'w' },
	};
	char *text = slurp(path), *line;
	json_object *rails = NULL;
	int ret = -EINVAL, lineno = 1;
	bool tail = false;

	*doc = NULL;
	if (!text) {
		if (errno == ENOENT || errno == EACCES || errno == EPERM)
			return -ENOENT;
		ret = -errno;
		out_errno(&c->o, ret, "%s", path);
		return ret;
	}
	*doc = json_object_new_object();
	line = text;
	for (int i = 0; i < 4; i++, lineno++)
		if (stats_key(c, path, lineno, &line, v1[i].key, v1[i].type, *doc))
			goto out;
	int64_t ver = json_object_get_int64(json_object_object_get(*doc, "version"));
	int64_t want = json_object_get_int64(json_object_object_get(*doc, "num_rails"));

	/* The page is written by the process: the module prints what it
	 * holds, and a page that cannot be an engine's is named, not shown. */
	if (ver < 1) {
		out_error(&c->o, "%s:1: version %lld: not a stats page (foreign or corrupt)", path,
			  (long long)ver);
		goto out;
	}
	if (want > XFER_CTX_STATS_MAX_RAILS) {
		out_error(&c->o, "%s:2: num_rails %lld is more than the page holds (%d)", path,
			  (long long)want, XFER_CTX_STATS_MAX_RAILS);
		goto out;
	}
	/* A version-2 module prints the tail when the page has one. */
	tail = ver >= 2 && !strncmp(line, "peers_up ", 9);
	for (int i = 0; tail && i < 4; i++, lineno++)
		if (stats_key(c, path, lineno, &line, v2[i].key, v2[i].type, *doc))
			goto out;
	if (tail)
		ret = parse_table(c, path, line, lineno, rail_cols_v2,
				  sizeof(rail_cols_v2) / sizeof(rail_cols_v2[0]), &rails);
	else
		ret = parse_table(c, path, line, lineno, rail_cols,
				  sizeof(rail_cols) / sizeof(rail_cols[0]), &rails);
	if (ret)
		goto out;
	if ((int64_t)json_object_array_length(rails) != want) {
		out_error(&c->o, "%s: %zu rail rows, num_rails says %lld (truncated?)", path,
			  json_object_array_length(rails), (long long)want);
		json_object_put(rails);
		ret = -EINVAL;
		goto out;
	}
	json_object_object_add(*doc, "rails", rails);
out:
	if (ret) {
		json_object_put(*doc);
		*doc = NULL;
	}
	free(text);
	return ret;
}
