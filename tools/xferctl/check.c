// SPDX-License-Identifier: MIT
/*
 * xferctl check [module | provider NAME] [timeout SEC]: a self-test of this
 * node (`module`: only the module's checks; `provider NAME`: only that one,
 * a failure when it is not here).
 * One line per check ("pass", "FAIL" or "skip", its name, what was seen),
 * then "N passed, N failed, N skipped"; exit 0 only with no failure.
 *
 * Checks:
 *  - module: pin and release: a few pages pinned through /dev/xfer, the
 *    context's accounting and the region's own mapping checked, released;
 *  - module: share and open: a second context opens the shared region and
 *    both see each other's bytes through it; the share ends with the owner's
 *    release;
 *  - per provider present (local; libfabric's shm, tcp;ofi_rxm, efa where
 *    listed; verbs on each RDMA device in sysfs): two engines in one
 *    process, a write with immediate, a plain write and an immediate
 *    alone, every byte of the target checked, the immediates counted at
 *    the target.
 *
 * The checks run in order in one forked child, which reports each result
 * through a pipe; the parent kills the child when a check outlives its
 * timeout, fails that check, and starts a new child for the rest: a
 * provider that hangs fails its line and the others still run. The parent
 * never initialises libfabric (it is not fork-safe): even the question "is
 * this provider listed" is asked in the child.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <linux/xfer.h>

#include "provider.h"
#include "xfer.h"
#include "xferctl.h"

#define CHECK_TIMEOUT_S 30   /* an engine starts in seconds even under qemu's TCG */
#define MSG_MAX 480

enum { PASS, FAIL, SKIP };
static const char *const result_name[] = { "pass", "fail", "skip" };

/* What a check's child reports through its pipe: the result and a line. */
struct report {
	int result;
	char msg[MSG_MAX];
};

static void __attribute__((format(printf, 3, 4))) say(struct report *r, int result,
							const char *fmt, ...)
{
	va_list ap;

	r->result = result;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ */
/* The module, through its ioctls (what the library does, spelled out so
 * that a failure names the step).                                      */

static int query(int fd, struct xfer_query *q)
{
	memset(q, 0, sizeof(*q));
	q->size = sizeof(*q);
	return ioctl(fd, XFER_IOC_QUERY, q) ? -errno : 0;
}

static int release(int fd, uint64_t handle)
{
	struct xfer_release r = { .size = sizeof(r), .handle = handle };

	return ioctl(fd, XFER_IOC_RELEASE, &r) ? -errno : 0;
}

/* Opens the device and checks the ABI; -1 with the report said. */
static int dev_open(const struct ctl *c, struct report *r, struct xfer_query *q)
{
	int fd = open(c->dev, O_RDWR | O_CLOEXEC), ret;

	if (fd < 0) {
		say(r, FAIL, "open %s: %s%s", c->dev, strerror(errno),
		    errno == EACCES ? " (add this user to group xfer)" : "");
		return -1;
	}
	ret = query(fd, q);
	if (ret) {
		say(r, FAIL, "XFER_IOC_QUERY: %s", strerror(-ret));
		close(fd);
		return -1;
	}
	if (q->abi_version != XFER_ABI_VERSION) {
		say(r, FAIL, "module ABI %u, this tool speaks %u", q->abi_version, XFER_ABI_VERSION);
		close(fd);
		return -1;
	}
	return fd;
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed | 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* The first byte where a and b differ, or -1. */
static long differs(const uint8_t *a, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (long)i;
	return -1;
}

static const char *pin_errno_hint(int err)
{
	switch (err) {
	case ENOSPC:
		return " (the module's limit max_pinned_mb is reached)";
	case ENOMEM:
		return " (RLIMIT_MEMLOCK: raise it, or grant CAP_IPC_LOCK)";
	default:
		return "";
	}
}

#define PIN_PAGES 4

static void check_pin(struct ctl *c, struct report *r)
{
	struct xfer_query q0, q;
	struct xfer_pin p = { .size = sizeof(p) };
	uint8_t *buf, *map = MAP_FAILED;
	size_t len;
	long at;
	int fd, ret;

	fd = dev_open(c, r, &q0);
	if (fd < 0)
		return;
	len = PIN_PAGES * q0.page_size;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		say(r, FAIL, "mmap %zu bytes: %s", len, strerror(errno));
		goto out;
	}
	fill(buf, len, (uint32_t)getpid());
	p.addr = (uintptr_t)buf;
	p.length = len;
	if (ioctl(fd, XFER_IOC_PIN, &p)) {
		ret = errno;
		say(r, FAIL, "XFER_IOC_PIN of %zu bytes: %s%s", len, strerror(ret),
		    pin_errno_hint(ret));
		goto out;
	}
	ret = query(fd, &q);
	if (ret || q.ctx_pinned_bytes != len || q.ctx_regions != 1) {
		say(r, FAIL, "after the pin the context holds %u regions, %llu bytes, want 1, %zu (%s)",
		    q.ctx_regions, (unsigned long long)q.ctx_pinned_bytes, len,
		    ret ? strerror(-ret) : "query ok");
		goto out;
	}
	/* The region's own mapping shows the pinned pages, not copies. */
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)p.mmap_offset);
	if (map == MAP_FAILED) {
		say(r, FAIL, "mmap of the region (offset %#llx): %s",
		    (unsigned long long)p.mmap_offset, strerror(errno));
		goto out;
	}
	at = differs(map, buf, len);
	if (at >= 0) {
		say(r, FAIL, "byte %ld of the region's mapping differs from the pinned memory", at);
		goto out;
	}
	munmap(map, len);
	map = MAP_FAILED;
	ret = release(fd, p.handle);
	if (ret) {
		say(r, FAIL, "XFER_IOC_RELEASE: %s", strerror(-ret));
		goto out;
	}
	ret = query(fd, &q);
	if (ret || q.ctx_pinned_bytes != 0 || q.ctx_regions != 0) {
		say(r, FAIL, "after the release the context holds %u regions, %llu bytes, want none",
		    q.ctx_regions, (unsigned long long)q.ctx_pinned_bytes);
		goto out;
	}
	say(r, PASS, "%d pages (%zu bytes) pinned, accounted, mapped with their bytes, released",
	    PIN_PAGES, len);
out:
	if (map != MAP_FAILED)
		munmap(map, len);
	close(fd);
}

static void check_share(struct ctl *c, struct report *r)
{
	struct xfer_query q;
	struct xfer_pin p = { .size = sizeof(p) };
	struct xfer_share s = { .size = sizeof(s), .rule = XFER_SHARE_OWNER };
	struct xfer_open_shared o = { .size = sizeof(o) };
	uint8_t *buf = MAP_FAILED, *map = MAP_FAILED;
	size_t len = 0;
	long at;
	int fd, fd2 = -1, ret;

	fd = dev_open(c, r, &q);
	if (fd < 0)
		return;
	/* The second context: what another process would hold. */
	fd2 = dev_open(c, r, &q);
	if (fd2 < 0)
		goto out;
	len = 2 * q.page_size;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		say(r, FAIL, "mmap %zu bytes: %s", len, strerror(errno));
		goto out;
	}
	fill(buf, len, (uint32_t)getpid() * 7);
	p.addr = (uintptr_t)buf;
	p.length = len;
	if (ioctl(fd, XFER_IOC_PIN, &p)) {
		ret = errno;
		say(r, FAIL, "XFER_IOC_PIN: %s%s", strerror(ret), pin_errno_hint(ret));
		goto out;
	}
	s.handle = p.handle;
	if (ioctl(fd, XFER_IOC_SHARE, &s)) {
		say(r, FAIL, "XFER_IOC_SHARE: %s", strerror(errno));
		goto out;
	}
	o.share_id = s.share_id;
	if (ioctl(fd2, XFER_IOC_OPEN_SHARED, &o)) {
		say(r, FAIL, "XFER_IOC_OPEN_SHARED of share %llu from a second context: %s",
		    (unsigned long long)s.share_id, strerror(errno));
		goto out;
	}
	if (o.length != len) {
		say(r, FAIL, "the opened region has %llu bytes, the shared one %zu",
		    (unsigned long long)o.length, len);
		goto out;
	}
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, (off_t)o.mmap_offset);
	if (map == MAP_FAILED) {
		say(r, FAIL, "mmap of the opened region: %s", strerror(errno));
		goto out;
	}
	at = differs(map, buf, len);
	if (at >= 0) {
		say(r, FAIL, "byte %ld of the opened region differs from the owner's memory", at);
		goto out;
	}
	/* and back: the opener's stores land in the owner's pages */
	fill(map, len, (uint32_t)getpid() * 13);
	at = differs(map, buf, len);
	if (at >= 0) {
		say(r, FAIL, "byte %ld written through the opened region is not in the owner's memory",
		    at);
		goto out;
	}
	munmap(map, len);
	map = MAP_FAILED;
	ret = release(fd2, o.handle);
	if (!ret)
		ret = release(fd, p.handle);
	if (ret) {
		say(r, FAIL, "XFER_IOC_RELEASE: %s", strerror(-ret));
		goto out;
	}
	/* the owner's release ended the share */
	if (!ioctl(fd2, XFER_IOC_OPEN_SHARED, &o) || errno != ENOENT) {
		say(r, FAIL, "share %llu still opens after its region was released (%s)",
		    (unsigned long long)s.share_id, strerror(errno));
		goto out;
	}
	say(r, PASS, "share %llu opened by a second context, bytes seen both ways, gone with the region",
	    (unsigned long long)s.share_id);
out:
	if (map != MAP_FAILED)
		munmap(map, len);
	if (fd2 >= 0)
		close(fd2);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* Providers: two engines in this (child) process.                      */

#define LB_LEN (1u << 20)   /* past the stripe threshold: the write is split */

struct provider_arg {
	const char *prov;     /* the library's provider name */
	const char *device;   /* verbs: the RDMA device, else NULL */
	bool explicit_;       /* named on the command line: absent is a failure */
	int timeout_ms;
};

struct listed {
	const char *want;     /* the core provider ("tcp" of "tcp;ofi_rxm") */
	size_t want_len;
	bool found;
};

static void find_provider(const char *name, void *ctx)
{
	struct listed *l = ctx;

	if (strlen(name) == l->want_len && !strncmp(name, l->want, l->want_len))
		l->found = true;
}

static void append_name(const char *name, void *ctx)
{
	char *buf = ctx;
	size_t n = strlen(buf), cap = MSG_MAX - 96;

	if (n < cap)
		snprintf(buf + n, cap - n, "%s%s", n ? " " : "", name);
}

static bool is_own(const char *prov)
{
	return !strcmp(prov, "local") || !strcmp(prov, "verbs");
}

static int engine(const struct provider_arg *a, xfer_engine **e, struct report *r)
{
	struct xfer_engine_attr attr;
	char why[MSG_MAX - 64];
	int ret;

	xfer_engine_attr_init(&attr);
	attr.provider = a->prov;
	attr.devices = a->device;
	/* IP providers: stay on loopback, whatever the first interface is */
	if (!is_own(a->prov))
		attr.node = "127.0.0.1";
	attr.peer_timeout_ms = (uint32_t)a->timeout_ms;
	ret = xfer_engine_create(&attr, e);
	if (ret) {
		provider_explain(a->prov, ret, why, sizeof(why));
		say(r, FAIL, "engine: %s", why);
	}
	return ret;
}

static int pair(xfer_engine *x, xfer_engine *y, uint32_t *peer)
{
	uint8_t addr[XFER_ADDR_MAX];
	size_t len = sizeof(addr);
	int ret = xfer_engine_address(y, addr, &len);

	return ret ? ret : xfer_engine_add_peer(x, addr, len, peer);
}

/* A write from src+so to dst+dof, then every byte of dst checked against
 * what it must hold now (expect). A write with an immediate is checked once
 * the target counted the immediate: the library delivers it after the
 * whole payload landed. A plain write's completion may only mean "sent"
 * (transmit complete on tcp;ofi_rxm, docs/concepts.md): its bytes must
 * then land at the target within the timeout. */
static int lb_write(xfer_engine *a, xfer_mr *smr, xfer_rmr *rmr, const uint8_t *src,
		    const uint8_t *dst, uint8_t *expect, uint64_t so, uint64_t dof, uint64_t n,
		    uint32_t flags, uint32_t imm, xfer_engine *b, int timeout_ms, const char *what,
		    struct report *r)
{
	double deadline;
	xfer_op *op = NULL;
	long at;
	int ret;

	ret = xfer_write(a, smr, so, rmr, dof, n, flags, imm, NULL, &op);
	if (!ret) {
		ret = xfer_op_wait(op, timeout_ms);
		xfer_op_release(op);
	}
	if (ret) {
		say(r, FAIL, "%s of %llu bytes: %s", what, (unsigned long long)n, xfer_strerror(ret));
		return ret;
	}
	if (flags & XFER_OP_IMM) {
		ret = xfer_imm_wait(b, imm, 1, timeout_ms);
		if (ret) {
			say(r, FAIL, "%s: immediate %#x not seen at the target: %s", what, imm,
			    xfer_strerror(ret));
			return ret;
		}
	}
	memcpy(expect + dof, src + so, n);
	deadline = now_s() + timeout_ms / 1000.0;
	while ((at = differs(dst, expect, LB_LEN)) >= 0 && !(flags & XFER_OP_IMM) &&
	       now_s() < deadline)
		usleep(1000);
	if (at >= 0) {
		say(r, FAIL, "%s: byte %ld of the target is %#x, want %#x (%s)%s", what, at, dst[at],
		    expect[at],
		    (uint64_t)at >= dof && (uint64_t)at < dof + n ? "in the write" : "outside it",
		    flags & XFER_OP_IMM ? " after its immediate arrived" : ", long after it completed");
		return -EIO;
	}
	return 0;
}

static void check_provider(struct ctl *c, struct report *r, const struct provider_arg *a)
{
	xfer_engine *ea = NULL, *eb = NULL;
	xfer_mr *smr = NULL, *dmr = NULL;
	xfer_rmr *rmr = NULL;
	struct xfer_engine_info info = { .size = sizeof(info) };
	uint8_t *src = NULL, *dst = NULL, *expect = NULL;
	uint8_t desc[XFER_DESC_MAX];
	size_t dlen = sizeof(desc);
	uint32_t pa, pb, imm1, imm2;
	xfer_op *op = NULL;
	int ret, tmo = a->timeout_ms;

	(void)c;
	if (!is_own(a->prov)) {
		const char *semi = strchr(a->prov, ';');
		struct listed l = { a->prov, semi ? (size_t)(semi - a->prov) : strlen(a->prov), false };

		provider_each_libfabric(find_provider, &l);
		if (!l.found && a->explicit_) {
			char have[MSG_MAX - 96] = "";

			provider_each_libfabric(append_name, have);
			say(r, FAIL, "libfabric does not list '%.*s' here (it has: %s; and xfer's own local, verbs)",
			    (int)l.want_len, l.want, have[0] ? have : "none");
			return;
		}
		if (!l.found) {
			say(r, SKIP, "libfabric does not list '%.*s' here", (int)l.want_len, l.want);
			return;
		}
	}
	if (engine(a, &ea, r) || engine(a, &eb, r))
		goto out;
	if (xfer_engine_query(ea, &info))
		info.provider[0] = 0;
	ret = pair(ea, eb, &pb);
	if (!ret)
		ret = pair(eb, ea, &pa);
	if (ret) {
		say(r, FAIL, "adding the other engine as a peer: %s", xfer_strerror(ret));
		goto out;
	}
	src = xfer_host_alloc(LB_LEN);
	dst = xfer_host_alloc(LB_LEN);
	expect = malloc(LB_LEN);
	if (!src || !dst || !expect) {
		say(r, FAIL, "out of memory for two %u-byte buffers", LB_LEN);
		goto out;
	}
	fill(src, LB_LEN, (uint32_t)getpid() ^ 0x9e3779b9u);
	memset(dst, 0x5a, LB_LEN);
	memcpy(expect, dst, LB_LEN);
	ret = xfer_mr_reg(ea, src, LB_LEN, NULL, 0, &smr);
	if (!ret)
		ret = xfer_mr_reg(eb, dst, LB_LEN, NULL, XFER_MR_REMOTE_WRITE, &dmr);
	if (ret) {
		say(r, FAIL, "registering %u bytes: %s", LB_LEN, xfer_strerror(ret));
		goto out;
	}
	ret = xfer_mr_descriptor(dmr, desc, &dlen);
	if (!ret)
		ret = xfer_rmr_import(ea, pb, desc, dlen, &rmr);
	if (ret) {
		say(r, FAIL, "importing the target region: %s", xfer_strerror(ret));
		goto out;
	}
	/* Odd offsets and lengths: nothing lines up with a page or a piece. */
	imm1 = 0x5c000000u | ((uint32_t)getpid() & 0xffffffu);
	if (lb_write(ea, smr, rmr, src, dst, expect, 3, 5, LB_LEN / 2 + 1237, XFER_OP_IMM, imm1,
		     eb, tmo, "write with immediate", r))
		goto out;
	if (lb_write(ea, smr, rmr, src, dst, expect, LB_LEN / 2, LB_LEN - 4099 - 11, 4099, 0, 0,
		     eb, tmo, "plain write", r))
		goto out;
	imm2 = imm1 ^ 0x01000000u;
	ret = xfer_imm(ea, pb, imm2, NULL, &op);
	if (!ret) {
		ret = xfer_op_wait(op, tmo);
		xfer_op_release(op);
	}
	if (!ret)
		ret = xfer_imm_wait(eb, imm2, 1, tmo);
	if (ret) {
		say(r, FAIL, "immediate alone (%#x): %s", imm2, xfer_strerror(ret));
		goto out;
	}
	say(r, PASS, "rail %s: a write of %u bytes with immediate, a plain write, an immediate alone; every byte checked",
	    info.num_rails ? info.rail_names[0] : "?", LB_LEN / 2 + 1237);
out:
	/* Exit ends the child either way; this only keeps sanitizers quiet. */
	if (rmr)
		xfer_rmr_free(rmr);
	if (smr)
		xfer_mr_dereg(smr);
	if (dmr)
		xfer_mr_dereg(dmr);
	if (ea)
		xfer_engine_destroy(ea);
	if (eb)
		xfer_engine_destroy(eb);
	free(src);
	free(dst);
	free(expect);
}

/* ------------------------------------------------------------------ */
/* Running the checks: in order, in a child, each with a deadline.      */

struct job {
	char name[128];
	void (*fn)(struct ctl *c, struct report *r, const void *arg);
	struct provider_arg arg;
	bool decided;            /* the parent knows the result already (a skip) */
	struct report preset;
};

#define MAX_JOBS 32

struct checks {
	struct job job[MAX_JOBS];
	int njobs;
	json_object *arr;
	int n[3];
	int timeout_s;
};

static struct job *add_job(struct checks *k, const char *name)
{
	struct job *j;

	if (k->njobs == MAX_JOBS)
		return NULL;
	j = &k->job[k->njobs++];
	memset(j, 0, sizeof(*j));
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->arg.timeout_ms = k->timeout_s * 1000;
	return j;
}

static void add_skip(struct checks *k, const char *name, int result, const char *why)
{
	struct job *j = add_job(k, name);

	if (j) {
		j->decided = true;
		say(&j->preset, result, "%s", why);
	}
}

static void record(struct ctl *c, struct checks *k, const char *name, const struct report *r,
		   double secs)
{
	json_object *o = json_object_new_object();

	k->n[r->result]++;
	json_object_object_add(o, "check", json_object_new_string(name));
	json_object_object_add(o, "result", json_object_new_string(result_name[r->result]));
	json_object_object_add(o, "detail", json_object_new_string(r->msg));
	json_object_object_add(o, "seconds", json_object_new_double((double)(long)(secs * 100) / 100));
	json_object_array_add(k->arr, o);
	if (!c->o.json) {
		printf("%s %s: %s\n", r->result == PASS ? "pass" : r->result == FAIL ? "FAIL" : "skip",
		       name, r->msg);
		fflush(stdout);
	}
}

/* The child: runs jobs from..njobs-1 in order, one report each. One
 * process for all of them, so that libfabric initialises once (reading
 * /proc/kallsyms and every interface takes seconds on a slow machine). */
static void __attribute__((noreturn)) child(struct ctl *c, struct checks *k, int from, int fd)
{
	for (int i = from; i < k->njobs; i++) {
		struct job *j = &k->job[i];
		struct report r;

		if (j->decided) {
			r = j->preset;
		} else {
			say(&r, FAIL, "the check ended without a result");
			j->fn(c, &r, &j->arg);
		}
		if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(2);
	}
	_exit(0);
}

/* Reads one report by the deadline: 1, 0 when the child is gone, -1 on
 * the deadline. */
static int read_report(int fd, struct report *r, double deadline)
{
	size_t got = 0;

	while (got < sizeof(*r)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		double left = deadline - now_s();
		ssize_t n;

		if (left <= 0)
			return -1;
		if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
			continue;   /* EINTR, or the deadline: looked at above */
		n = read(fd, (char *)r + got, sizeof(*r) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		got += (size_t)n;
	}
	return 1;
}

/* A check that hangs is killed at its deadline and fails; a child that
 * dies fails the check it was in; either way a new child takes the rest. */
static void run_jobs(struct ctl *c, struct checks *k)
{
	int i = 0;

	while (i < k->njobs) {
		int fd[2], st = 0, got = 1;
		struct report r;
		double t0;
		pid_t pid;

		if (pipe(fd)) {
			say(&r, FAIL, "pipe: %s", strerror(errno));
			record(c, k, k->job[i++].name, &r, 0);
			continue;
		}
		fflush(NULL);
		pid = fork();
		if (pid == 0) {
			close(fd[0]);
			child(c, k, i, fd[1]);
		}
		close(fd[1]);
		if (pid < 0) {
			say(&r, FAIL, "fork: %s", strerror(errno));
			close(fd[0]);
			record(c, k, k->job[i++].name, &r, 0);
			continue;
		}
		for (t0 = now_s(); i < k->njobs; i++, t0 = now_s()) {
			got = read_report(fd[0], &r, t0 + k->timeout_s);
			if (got <= 0)
				break;
			r.msg[sizeof(r.msg) - 1] = 0;
			if (r.result < PASS || r.result > SKIP)
				say(&r, FAIL, "the check's process reported nonsense");
			record(c, k, k->job[i].name, &r, now_s() - t0);
		}
		close(fd[0]);
		if (got <= 0)
			kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (got < 0)
			say(&r, FAIL, "no result within %d s: killed (a hung provider or module; see timeout SEC)",
			    k->timeout_s);
		else if (got == 0)
			say(&r, FAIL, "the check's process died (%s %d) without a result",
			    WIFSIGNALED(st) ? "signal" : "exit status",
			    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		if (got <= 0 && i < k->njobs) {
			record(c, k, k->job[i].name, &r, now_s() - t0);
			i++;
		}
	}
}

static void run_pin(struct ctl *c, struct report *r, const void *arg)
{
	(void)arg;
	check_pin(c, r);
}

static void run_share(struct ctl *c, struct report *r, const void *arg)
{
	(void)arg;
	check_share(c, r);
}

static void run_provider(struct ctl *c, struct report *r, const void *arg)
{
	check_provider(c, r, arg);
}

static void add_provider(struct checks *k, const char *name, const char *prov,
			 const char *device, bool explicit_)
{
	struct job *j = add_job(k, name);

	if (!j)
		return;
	j->fn = run_provider;
	j->arg.prov = prov;
	j->arg.device = device;
	j->arg.explicit_ = explicit_;
}

/* The RDMA devices sysfs lists, or 0. */
static int rdma_devices(const struct ctl *c, char names[][64], int max)
{
	char dir[4096];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/class/infiniband", c->sysfs);
	d = opendir(dir);
	while (d && n < max && (de = readdir(d)))
		if (de->d_name[0] != '.')
			snprintf(names[n++], 64, "%.63s", de->d_name);
	if (d)
		closedir(d);
	return n;
}

static char devs[8][64];

/* verbs on each RDMA device; a device whose node type is not an
 * InfiniBand/RoCE channel adapter (EFA, iWARP) has no RC QPs for the
 * verbs backend and is skipped. */
static void add_verbs(struct ctl *c, struct checks *k, bool explicit_)
{
	int n = rdma_devices(c, devs, 8);
	char name[128], path[4400], type[64], why[4200];

	if (!n) {
		snprintf(why, sizeof(why), "no RDMA device in %s/class/infiniband", c->sysfs);
		add_skip(k, "provider verbs", explicit_ ? FAIL : SKIP, why);
	}
	for (int i = 0; i < n; i++) {
		FILE *f;

		snprintf(name, sizeof(name), "provider verbs (%.63s)", devs[i]);
		snprintf(path, sizeof(path), "%s/class/infiniband/%.63s/node_type", c->sysfs, devs[i]);
		type[0] = 0;
		f = fopen(path, "r");
		if (f) {
			if (!fgets(type, sizeof(type), f))
				type[0] = 0;
			fclose(f);
		}
		type[strcspn(type, "\n")] = 0;
		if (type[0] && strncmp(type, "1:", 2)) {
			snprintf(why, sizeof(why), "node type '%s': not a channel adapter", type);
			add_skip(k, name, SKIP, why);
			continue;
		}
		add_provider(k, name, "verbs", devs[i], explicit_);
	}
}

/* libfabric's efa needs an EFA device: without one, say so without
 * initialising libfabric for nothing. */
static bool have_efa(struct ctl *c)
{
	int n = rdma_devices(c, devs, 8);

	for (int i = 0; i < n; i++)
		if (!strncmp(devs[i], "efa", 3))
			return true;
	return false;
}

int obj_check(struct ctl *c, const char *cmd, int argc, char **argv)
{
	static const char *const defaults[] = { "local", "shm", "tcp;ofi_rxm", "efa", "verbs" };
	static struct checks k;
	const char *only = NULL;
	bool module_only = false;
	char name[128];

	(void)cmd;
	memset(&k, 0, sizeof(k));
	k.timeout_s = CHECK_TIMEOUT_S;
	for (int i = 0; i < argc; i += 2) {
		if (!strcmp(argv[i], "module")) {
			module_only = true;
			i--;   /* a word alone */
			continue;
		}
		if (strcmp(argv[i], "provider") && strcmp(argv[i], "timeout"))
			return out_fail(&c->o, 0,
					"check: unknown word '%s' (check takes module, provider NAME, timeout SEC)",
					argv[i]);
		if (i + 1 >= argc)
			return out_fail(&c->o, 0, "check: '%s' needs a value", argv[i]);
		if (!strcmp(argv[i], "provider")) {
			only = argv[i + 1];
			continue;
		}
		char *end;
		long v;

		errno = 0;
		v = strtol(argv[i + 1], &end, 10);
		if (argv[i + 1][0] < '0' || argv[i + 1][0] > '9' || *end || errno || v < 1 ||
		    v > 3600)
			return out_fail(&c->o, 0, "check: timeout '%s' is not a number of seconds from 1 to 3600",
					argv[i + 1]);
		k.timeout_s = (int)v;
	}
	if (module_only && only)
		return out_fail(&c->o, 0, "check: 'module' and 'provider' exclude each other");

	if (!only && !module_loaded(c)) {
		add_skip(&k, "module pin and release", SKIP, "module not loaded");
		add_skip(&k, "module share and open", SKIP, "module not loaded");
	} else if (!only) {
		add_job(&k, "module pin and release")->fn = run_pin;
		add_job(&k, "module share and open")->fn = run_share;
	}
	for (size_t i = 0; !module_only && i < (only ? 1 : sizeof(defaults) / sizeof(defaults[0]));
	     i++) {
		const char *prov = only ? only : defaults[i];

		snprintf(name, sizeof(name), "provider %s", prov);
		if (!strcmp(prov, "verbs"))
			add_verbs(c, &k, only != NULL);
		else if (!only && !strcmp(prov, "efa") && !have_efa(c))
			add_skip(&k, name, SKIP, "no EFA device in sysfs class/infiniband");
		else
			add_provider(&k, name, prov, NULL, only != NULL);
	}
	k.arr = json_object_new_array();
	run_jobs(c, &k);
	if (c->o.json) {
		json_object_object_add(c->o.doc, "checks", k.arr);
		out_u64(&c->o, "passed", (uint64_t)k.n[PASS]);
		out_u64(&c->o, "failed", (uint64_t)k.n[FAIL]);
		out_u64(&c->o, "skipped", (uint64_t)k.n[SKIP]);
	} else {
		json_object_put(k.arr);
		printf("%d passed, %d failed, %d skipped\n", k.n[PASS], k.n[FAIL], k.n[SKIP]);
	}
	return k.n[FAIL] ? 1 : 0;
}
