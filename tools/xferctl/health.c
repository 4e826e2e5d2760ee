// SPDX-License-Identifier: MIT
/*
 * xferctl health: exit 0 when this node can run xfer, else 1 with one line
 * per problem ("problem: ..." on stdout in text mode, "problems" in JSON), fit for a
 * Kubernetes probe. Checks: the module is loaded and speaks our ABI;
 * /dev/xfer is 0660 group xfer and we may open it; RLIMIT_MEMLOCK is not
 * below the module's pin limit; no region is orphaned (owner gone, pages
 * still pinned, from debugfs when readable); an engine opens on `local`;
 * `nics N` (default 1) RDMA NICs have an active port.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <linux/xfer.h>

#include "provider.h"
#include "xferctl.h"

static json_object *problems, *passed;
static int nproblems_before;

/* -d: the checks that passed, too (a probe's log shows what was looked at). */
static void check_done(struct ctl *c, const char *what, bool checked)
{
	int now = (int)json_object_array_length(problems);

	if (c->details && now == nproblems_before && checked) {
		if (!c->o.json)
			printf("ok: %s\n", what);
		json_object_array_add(passed, json_object_new_string(what));
	}
	nproblems_before = now;
}

static void __attribute__((format(printf, 2, 3))) problem(struct ctl *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!c->o.json)
		printf("problem: %s\n", msg);
	json_object_array_add(problems, json_object_new_string(msg));
}

static void check_module(struct ctl *c, uint64_t *max_pinned)
{
	char path[4096];
	uint64_t abi;
	struct stat st;
	int ret;

	if (!module_loaded(c)) {
		problem(c, "module: xfer is not loaded (modprobe xfer; packaged as xfer-dkms)");
		return;
	}
	path_misc(c, "abi_version", path, sizeof(path));
	ret = read_u64_file(c, path, &abi);
	if (ret == -ENOENT)
		problem(c, "module: loaded but %s is missing", path);
	else if (ret)
		problem(c, "module: %s unreadable or malformed", path);
	else if (abi != XFER_ABI_VERSION)
		problem(c, "module: ABI version %llu, the library speaks %u (install matching versions)",
			(unsigned long long)abi, XFER_ABI_VERSION);
	path_misc(c, "max_pinned_bytes", path, sizeof(path));
	if (read_u64_file(c, path, max_pinned))
		*max_pinned = 0;
	if (stat(c->dev, &st)) {
		problem(c, "device: %s: %s (udev rule 60-xfer.rules not applied?)", c->dev,
			strerror(errno));
		return;
	}
	struct group *g = getgrgid(st.st_gid);

	if ((st.st_mode & 0777) != 0660 || !g || strcmp(g->gr_name, "xfer"))
		problem(c, "device: %s is mode %04o group %s, expected 0660 group xfer", c->dev,
			st.st_mode & 07777, g ? g->gr_name : "?");
	if (access(c->dev, R_OK | W_OK))
		problem(c, "device: %s: %s for this user (add it to group xfer)", c->dev,
			strerror(errno));
}

/* true when something was compared */
static bool check_memlock(struct ctl *c, uint64_t max_pinned)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return false;
	if (rl.rlim_cur == RLIM_INFINITY)
		return true;
	out_u64(&c->o, "memlock_bytes", rl.rlim_cur);
	/* Verbs registrations count against RLIMIT_MEMLOCK, the module's
	 * pins against max_pinned_bytes: a lower rlimit is the real cap. */
	if (max_pinned && rl.rlim_cur < max_pinned)
		problem(c, "memlock: RLIMIT_MEMLOCK %llu bytes is below the module's max_pinned_bytes %llu (raise it: ulimit -l, LimitMEMLOCK=)",
			(unsigned long long)rl.rlim_cur, (unsigned long long)max_pinned);
	return max_pinned != 0;
}

static bool check_orphans(struct ctl *c)
{
	char path[4096];
	json_object *rows;
	int ret;

	if (!module_loaded(c))
		return false;
	path_debugfs(c, "regions", path, sizeof(path));
	ret = read_table(c, path, regions_cols, regions_ncols, &rows);
	if (ret == -ENOENT) {
		out_str(&c->o, "orphans", "not checked (debugfs not readable)");
		return false;
	}
	if (ret) {
		problem(c, "regions: %s is malformed (see the message above)", path);
		return true;
	}
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		int64_t pid = json_object_get_int64(json_object_object_get(r, "owner_pid"));
		const char *state = json_object_get_string(json_object_object_get(r, "state"));
		bool gone = !strcmp(state, "orphaned") ||
			    (pid > 0 && kill((pid_t)pid, 0) && errno == ESRCH);

		if (gone)
			problem(c, "region %lld: owner pid %lld (%s) is gone, %lld bytes still pinned",
				(long long)json_object_get_int64(json_object_object_get(r, "id")),
				(long long)pid,
				json_object_get_string(json_object_object_get(r, "owner")),
				(long long)json_object_get_int64(json_object_object_get(r, "bytes")));
	}
	json_object_put(rows);
	return true;
}

/*
 * Failed pins growing: sysfs pins_failed only ever grows, so one sample
 * says nothing; the probe keeps the last one in STATE_DIR/health (a line
 * "pins_failed N") and names a growth since then. The first probe (or one
 * after the module was reloaded: the count went down) only records. A
 * state directory we cannot write is "not checked", never a failure: a
 * read-only probe container still gets the other checks.
 */
static bool check_pins_failed(struct ctl *c)
{
	char path[4096], file[4200], tmp[4300], why[4400];
	unsigned long long prev = 0;
	bool have_prev = false;
	uint64_t now;
	FILE *f;

	if (!module_loaded(c))
		return false;
	path_misc(c, "pins_failed", path, sizeof(path));
	if (read_u64_file(c, path, &now)) {
		out_str(&c->o, "pins_failed_growth", "not checked (no pins_failed in sysfs)");
		return false;
	}
	snprintf(file, sizeof(file), "%s/health", c->state_dir);
	f = fopen(file, "r");
	if (f) {
		have_prev = fscanf(f, "pins_failed %llu\n", &prev) == 1;
		fclose(f);
	}
	/* Record this sample first (written then renamed: a probe killed
	 * half-way leaves the last good record). */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid());
	if ((mkdir(c->state_dir, 0755) && errno != EEXIST) || !(f = fopen(tmp, "w"))) {
		snprintf(why, sizeof(why), "not checked (%s: %s)", c->state_dir, strerror(errno));
		out_str(&c->o, "pins_failed_growth", why);
		return false;
	}
	fprintf(f, "pins_failed %llu\n", (unsigned long long)now);
	if (fclose(f) || rename(tmp, file)) {
		snprintf(why, sizeof(why), "not checked (%s: %s)", file, strerror(errno));
		unlink(tmp);
		out_str(&c->o, "pins_failed_growth", why);
		return false;
	}
	if (!have_prev || now < prev) {
		out_str(&c->o, "pins_failed_growth", "first sample recorded");
		return false;
	}
	if (now > prev)
		problem(c, "pins: %llu pins failed since the last probe (pins_failed %llu, was %llu): RLIMIT_MEMLOCK, max_pinned_mb or memory short?",
			(unsigned long long)(now - prev), (unsigned long long)now, prev);
	return true;
}

struct prov_list {
	json_object *arr;
	char text[512];
};

static void add_provider(const char *name, void *ctx)
{
	struct prov_list *p = ctx;
	size_t n = strlen(p->text);

	json_object_array_add(p->arr, json_object_new_string(name));
	snprintf(p->text + n, sizeof(p->text) - n, "%s%s", n ? " " : "", name);
}

/* libfabric's providers (each named once), for the report. */
static void list_providers(struct ctl *c)
{
	struct prov_list p = { .arr = json_object_new_array() };
	json_object *arr = p.arr;
	const char *text = p.text;

	provider_each_libfabric(add_provider, &p);
	if (c->o.json)
		json_object_object_add(c->o.doc, "libfabric_providers", arr);
	else {
		printf("%-22s %s\n", "libfabric_providers", text[0] ? text : "(none)");
		json_object_put(arr);
	}
}

/* RDMA NICs with an active port: the verbs devices in sysfs (ConnectX, EFA,
 * soft-RoCE alike). Fewer than `want` and this node reaches no other host
 * the way xfer is meant to; `nics 0` says it runs on one host only. */
static bool check_nics(struct ctl *c, int64_t want)
{
	char dir[4096], path[4096 + 600], state[64];
	struct dirent *d;
	int64_t active = 0;
	DIR *dv;

	snprintf(dir, sizeof(dir), "%s/class/infiniband", c->sysfs);
	dv = opendir(dir);
	while (dv && (d = readdir(dv))) {
		if (d->d_name[0] == '.')
			continue;
		for (int port = 1; port <= 8; port++) {
			FILE *f;

			snprintf(path, sizeof(path), "%s/%.255s/ports/%d/state", dir, d->d_name, port);
			f = fopen(path, "r");
			if (!f)
				break;
			bool up = fgets(state, sizeof(state), f) && strstr(state, "ACTIVE");

			fclose(f);
			if (up) {
				active++;
				break;
			}
		}
	}
	if (dv)
		closedir(dv);
	out_u64(&c->o, "rdma_nics_active", (uint64_t)active);
	if (active < want)
		problem(c, "nic: %lld RDMA NIC%s with an active port in %s, %lld expected "
			"(`xferctl health nics 0` on a node that runs on one host only)",
			(long long)active, active == 1 ? "" : "s", dir, (long long)want);
	return true;
}

int obj_health(struct ctl *c, const char *cmd, int argc, char **argv)
{
	uint64_t max_pinned = 0;
	struct filters f;
	char why[512];
	int n;

	(void)cmd;
	if (filters_parse(c, "health", F_NICS, argc, argv, &f))
		return 1;   /* filters_parse said why */
	if (!(f.set & F_NICS))
		f.nics = 1;
	problems = json_object_new_array();
	passed = json_object_new_array();
	nproblems_before = 0;
	check_module(c, &max_pinned);
	check_done(c, "module and /dev/xfer", true);
	check_done(c, "RLIMIT_MEMLOCK", check_memlock(c, max_pinned));
	check_done(c, "orphaned regions", check_orphans(c));
	check_done(c, "failed pins not growing", check_pins_failed(c));
	/* Before libfabric is initialised here: the probe forks. */
	if (provider_probe("local", 0, why, sizeof(why)))
		problem(c, "provider: no engine opens on 'local': %s", why);
	check_done(c, "an engine on local", true);
	check_done(c, "RDMA NICs", check_nics(c, f.nics));
	list_providers(c);
	n = (int)json_object_array_length(problems);
	if (c->o.json && c->details)
		json_object_object_add(c->o.doc, "passed", passed);
	else
		json_object_put(passed);
	if (c->o.json)
		json_object_object_add(c->o.doc, "problems", problems);
	else
		json_object_put(problems);
	out_str(&c->o, "health", n ? "unhealthy" : "ok");
	return n ? 1 : 0;
}
