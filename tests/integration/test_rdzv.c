/* SPDX-License-Identifier: MIT */
/*
 * Rendezvous (xfer_rdzv.h) against a real etcd, started here (its own data
 * dir in a temporary folder, free ports, killed at the end and with this
 * process), and against the file store, the same tests on both:
 *  - 16 rank processes exchange two blobs each and pass barriers; every
 *    byte of every rank's blobs is checked by every rank; after close no
 *    key of the job is left (etcd range / the job's folder);
 *  - bad cases, each a clear error within the timeout: a store that does
 *    not answer (closed port, missing folder), a rank that never arrives
 *    (named), a duplicate rank (-EEXIST), blobs that fail validation (a
 *    key naming no rank, an empty blob), a rank SIGKILLed mid-rendezvous
 *    (named as gone within about its lease TTL), bad arguments;
 *  - etcd only: a second endpoint used when the first is down; etcd
 *    killed and restarted on the same data dir mid-rendezvous (it
 *    completes), killed for good (a clean error naming the URL);
 *  - the launchers' environments (torchrun, Open MPI, Slurm), and bad
 *    values refused naming the variable.
 * XFER_RDZV_RANKS=64 makes the big rendezvous 64 ranks (the issue's
 * benchmark: time to all-ready is logged).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "xfer_rdzv.h"

#define MAX_RANKS 256

/* ---- etcd, started and stopped here ------------------------------------ */

struct etcd {
	pid_t pid;
	int client_port, peer_port;
	char dir[256];        /* temporary folder: data dir and log */
};

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* One HTTP/1.0 request to 127.0.0.1:port; the body of the answer into out.
 * 0, or -1 when nothing answered. */
static int http(int port, const char *method, const char *path, const char *body, char *out,
		size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[4096];
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0), n;
	char *b;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n%s", method, path, body ? strlen(body) : 0,
		     body ? body : "");
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	while (got + 1 < cap) {
		ssize_t r = read(fd, out + got, cap - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = '\0';
	close(fd);
	b = strstr(out, "\r\n\r\n");
	if (!b)
		return -1;
	memmove(out, b + 4, strlen(b + 4) + 1);
	return 0;
}

static bool etcd_healthy(int port)
{
	char out[1024];

	return http(port, "GET", "/health", NULL, out, sizeof(out)) == 0 &&
	       strstr(out, "\"health\":\"true\"");
}

/* Start (or restart, same ports and data dir) etcd; 0 when it answers
 * within 20 s. */
static int etcd_start(struct etcd *e)
{
	char data[300], log[300], client[64], peer[64], cluster[96];
	uint64_t t0 = xt_now_us();

	snprintf(data, sizeof(data), "%s/data", e->dir);
	snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
	snprintf(client, sizeof(client), "http://127.0.0.1:%d", e->client_port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", e->peer_port);
	snprintf(cluster, sizeof(cluster), "t=%s", peer);
	e->pid = fork();
	if (e->pid < 0)
		return -1;
	if (e->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* Dies with the test, also when the harness kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("etcd", "etcd", "--name", "t", "--data-dir", data, "--listen-client-urls", client,
		       "--advertise-client-urls", client, "--listen-peer-urls", peer,
		       "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
		       "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	while (xt_now_us() - t0 < 20000000) {
		int st;

		if (etcd_healthy(e->client_port))
			return 0;
		if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
			e->pid = 0;
			return -1;
		}
		usleep(20000);
	}
	return -1;
}

static void etcd_kill(struct etcd *e)
{
	if (e->pid > 0) {
		kill(e->pid, SIGKILL);
		waitpid(e->pid, NULL, 0);
	}
	e->pid = 0;
}

static bool have_etcd(void)
{
	return system("command -v etcd >/dev/null 2>&1") == 0;
}

/* A temporary folder, on tmpfs when there is one (etcd fsyncs). */
static int make_tmp(char *buf, size_t len, const char *what)
{
	struct stat st;
	const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";

	snprintf(buf, len, "%s/xfer-rdzv-%s-XXXXXX", base, what);
	return mkdtemp(buf) ? 0 : -1;
}

static void rm_rf(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd)) {
	}
}

/* base64 of s (tests' keys are short). */
static void b64(const char *s, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(uint8_t)s[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)(uint8_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (uint8_t)s[i + 2];
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? t[v & 63] : '=';
	}
	out[o] = '\0';
}

/*
 * One etcd for the whole program, started before the tests (each test runs
 * in a child of this process; every test has a job of its own), stopped at
 * the end; the tests that kill etcd start their own.
 */
static struct etcd shared_etcd;
static pid_t shared_owner;
static bool shared_ok;

__attribute__((constructor)) static void shared_etcd_start(void)
{
	if (!have_etcd() || make_tmp(shared_etcd.dir, sizeof(shared_etcd.dir), "etcd"))
		return;
	shared_owner = getpid();
	shared_etcd.client_port = free_port();
	shared_etcd.peer_port = free_port();
	shared_ok = etcd_start(&shared_etcd) == 0;
}

__attribute__((destructor)) static void shared_etcd_stop(void)
{
	if (getpid() != shared_owner)
		return;
	etcd_kill(&shared_etcd);
	if (shared_etcd.dir[0])
		rm_rf(shared_etcd.dir);
}

/* ---- the fixture: a store per test ------------------------------------- */

FIXTURE(rdzv) {
	struct etcd etcd;     /* this test's own, when it kills it */
	int port;             /* the etcd in use: shared or own */
	char tmp[256];        /* the file store's folder */
	char url[400];
	char job[64];
};

/* In an etcd test that kills etcd: an etcd of its own. */
static int own_etcd(FIXTURE_DATA(rdzv) *self)
{
	if (make_tmp(self->etcd.dir, sizeof(self->etcd.dir), "etcd"))
		return -1;
	self->etcd.client_port = free_port();
	self->etcd.peer_port = free_port();
	if (etcd_start(&self->etcd))
		return -1;
	self->port = self->etcd.client_port;
	snprintf(self->url, sizeof(self->url), "etcd://127.0.0.1:%d", self->port);
	return 0;
}

FIXTURE_VARIANT(rdzv) {
	bool etcd;
};

FIXTURE_VARIANT_ADD(rdzv, etcd) { .etcd = true };
FIXTURE_VARIANT_ADD(rdzv, file) { .etcd = false };

FIXTURE_SETUP(rdzv)
{
	snprintf(self->job, sizeof(self->job), "job-%d", (int)getpid());
	if (variant->etcd) {
		if (!have_etcd())
			XT_SETUP_SKIP("etcd is not installed (scripts/deps.sh test: etcd-server)");
		ASSERT_TRUE(shared_ok) TH_LOG("etcd did not start: see %s/etcd.log", shared_etcd.dir);
		self->port = shared_etcd.client_port;
		snprintf(self->url, sizeof(self->url), "etcd://127.0.0.1:%d", self->port);
	} else {
		ASSERT_EQ(0, make_tmp(self->tmp, sizeof(self->tmp), "file"));
		snprintf(self->url, sizeof(self->url), "file://%s", self->tmp);
	}
}

FIXTURE_TEARDOWN(rdzv)
{
	etcd_kill(&self->etcd);
	if (self->etcd.dir[0])
		rm_rf(self->etcd.dir);
	if (self->tmp[0])
		rm_rf(self->tmp);
}

/* How many keys of the job the store holds (-1: cannot tell). */
static int job_keys(FIXTURE_DATA(rdzv) *self, const FIXTURE_VARIANT(rdzv) *variant,
		    const char *job)
{
	if (variant->etcd) {
		char key[128], end[128], k64[200], e64[200], body[512], out[65536];
		const char *c;

		snprintf(key, sizeof(key), "/xfer/%s/", job);
		snprintf(end, sizeof(end), "/xfer/%s0", job);   /* '0' follows '/' */
		b64(key, strlen(key), k64);
		b64(end, strlen(end), e64);
		snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\",\"count_only\":true}",
			 k64, e64);
		if (http(self->port, "POST", "/v3/kv/range", body, out, sizeof(out)))
			return -1;
		c = strstr(out, "\"count\":\"");
		return c ? atoi(c + 9) : 0;
	} else {
		char path[600];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", self->tmp, job);
		return stat(path, &st) == 0 ? 1 : 0;   /* the folder is removed at the end */
	}
}

static void attr_of(struct xfer_rdzv_attr *a, FIXTURE_DATA(rdzv) *self, uint32_t rank,
		    uint32_t world, uint32_t timeout_ms, uint32_t ttl_s)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->url = self->url;
	a->job = self->job;
	a->rank = rank;
	a->world_size = world;
	a->timeout_ms = timeout_ms;
	a->lease_ttl_s = ttl_s;
}

/* Blob of rank r for exchange x: a length and bytes no other pair shares. */
static size_t blob_len(uint32_t r, int x)
{
	return 1 + (r * 977u + (unsigned)x * 4099u) % 6000u;
}

static uint64_t blob_seed(uint32_t r, int x)
{
	return 0x5eed0000ull + r * 16u + (unsigned)x;
}

/* ---- the big rendezvous ------------------------------------------------- */

struct shared {
	uint64_t t0_us;
	uint64_t ready_us[MAX_RANKS];   /* when rank r had every blob */
	char err[MAX_RANKS][256];
};

/* One rank: open, two exchanges (every blob checked), barriers, close.
 * 0 or the step that failed (its error in sh->err[rank]). */
static int rank_main(const char *url, const char *job, uint32_t rank, uint32_t world,
		     struct shared *sh)
{
	struct xfer_rdzv_attr a = { .size = sizeof(a), .url = url, .job = job, .rank = rank,
				    .world_size = world, .timeout_ms = 20000, .lease_ttl_s = 5 };
	xfer_rdzv *r;
	int step = 1;

	if (xfer_rdzv_open(&a, &r)) {
		snprintf(sh->err[rank], sizeof(sh->err[rank]), "open: %s", xfer_rdzv_last_error(NULL));
		return step;
	}
	for (int x = 0; x < 2; x++) {
		const char *name = x ? "descs" : "addrs";
		size_t len = blob_len(rank, x);
		uint8_t *mine = malloc(len);
		const struct xfer_rdzv_blob *all;

		step++;
		xt_fill(mine, len, blob_seed(rank, x), 0);
		if (xfer_rdzv_exchange(r, name, mine, len, &all)) {
			snprintf(sh->err[rank], sizeof(sh->err[rank]), "%s", xfer_rdzv_last_error(r));
			free(mine);
			xfer_rdzv_close(r);
			return step;
		}
		free(mine);
		if (x == 0)
			sh->ready_us[rank] = xt_now_us();
		for (uint32_t p = 0; p < world; p++) {
			if (all[p].len != blob_len(p, x) ||
			    xt_verify(all[p].data, all[p].len, blob_seed(p, x), 0) != -1) {
				snprintf(sh->err[rank], sizeof(sh->err[rank]),
					 "exchange %s: rank %u's blob is wrong (%zu bytes)", name, p,
					 all[p].len);
				xfer_rdzv_close(r);
				return 10 + step;
			}
		}
	}
	step++;
	if (xfer_rdzv_barrier(r, "start") || xfer_rdzv_barrier(r, "end")) {
		snprintf(sh->err[rank], sizeof(sh->err[rank]), "%s", xfer_rdzv_last_error(r));
		xfer_rdzv_close(r);
		return step;
	}
	step++;
	if (xfer_rdzv_close(r)) {
		snprintf(sh->err[rank], sizeof(sh->err[rank]), "close: %s", xfer_rdzv_last_error(NULL));
		return step;
	}
	return 0;
}

/* CPU seconds a process has used (user + system), from /proc. */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	p = strrchr(buf, ')');   /* fields 14 and 15 after the command's name */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

TEST_F_TIMEOUT(rdzv, many_ranks, 60)
{
	const char *env = getenv("XFER_RDZV_RANKS");
	uint32_t world = env ? (uint32_t)atoi(env) : 16;
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[MAX_RANKS];
	uint64_t last = 0;

	struct rusage ru;
	double etcd_cpu0 = variant->etcd ? cpu_s(shared_etcd.pid) : 0;

	ASSERT_NE(MAP_FAILED, sh);
	ASSERT_TRUE(world >= 1 && world <= MAX_RANKS);
	sh->t0_us = xt_now_us();
	for (uint32_t i = 0; i < world; i++) {
		pids[i] = fork();
		ASSERT_GE(pids[i], 0);
		if (pids[i] == 0)
			_exit(rank_main(self->url, self->job, i, world, sh));
	}
	for (uint32_t i = 0; i < world; i++) {
		int st;

		ASSERT_EQ(pids[i], waitpid(pids[i], &st, 0));
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
			TH_LOG("rank %u: status 0x%x: %s", i, st, sh->err[i]);
		if (sh->ready_us[i] > last)
			last = sh->ready_us[i];
	}
	getrusage(RUSAGE_CHILDREN, &ru);
	TH_LOG("%u ranks through %s: all ready %.3f s after the first fork; CPU: ranks %.2f s, "
	       "etcd %.2f s", world, variant->etcd ? "etcd" : "the file store",
	       (double)(last - sh->t0_us) / 1e6,
	       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
	       variant->etcd ? cpu_s(shared_etcd.pid) - etcd_cpu0 : 0.0);
	/* close removed every key of the job */
	EXPECT_EQ(0, job_keys(self, variant, self->job));
	munmap(sh, sizeof(*sh));
}

/* ---- bad cases ----------------------------------------------------------- */

TEST_F_TIMEOUT(rdzv, unreachable, 20)
{
	struct xfer_rdzv_attr a;
	xfer_rdzv *r = NULL;
	char url[300], port_s[16];
	uint64_t t0;
	int ret;

	if (variant->etcd) {
		int port = free_port();   /* nothing listens there */

		snprintf(url, sizeof(url), "etcd://127.0.0.1:%d", port);
		snprintf(port_s, sizeof(port_s), ":%d", port);
	} else {
		snprintf(url, sizeof(url), "file://%s/no-such-folder", self->tmp);
		snprintf(port_s, sizeof(port_s), "no-such-folder");
	}
	attr_of(&a, self, 0, 2, 1000, 0);
	a.url = url;
	t0 = xt_now_us();
	ret = xfer_rdzv_open(&a, &r);
	EXPECT_EQ(variant->etcd ? -ECONNREFUSED : -ENOENT, ret) TH_LOG("%s", xfer_rdzv_last_error(NULL));
	EXPECT_EQ(NULL, r);
	/* within the timeout (and a margin for a loaded machine) */
	EXPECT_LT(xt_now_us() - t0, 1000000 + 3000000);
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), port_s)) TH_LOG("%s",
		xfer_rdzv_last_error(NULL));
	TH_LOG("%s", xfer_rdzv_last_error(NULL));
}

TEST_F_TIMEOUT(rdzv, never_arrives, 20)
{
	struct xfer_rdzv_attr a;
	const struct xfer_rdzv_blob *all;
	xfer_rdzv *r;
	uint64_t t0;
	int ret;

	/* ranks 0 and 2 of 4 are here; 1 and 3 never come */
	xfer_rdzv *r2;

	attr_of(&a, self, 2, 4, 1000, 0);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r2));
	attr_of(&a, self, 0, 4, 1000, 0);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	t0 = xt_now_us();
	ret = xfer_rdzv_exchange(r, "addrs", "x", 1, &all);
	EXPECT_EQ(-ETIMEDOUT, ret);
	EXPECT_LT(xt_now_us() - t0, 1000000 + 3000000);
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), "ranks 1, 2, 3 never arrived at exchange "
						       "'addrs' within 1000 ms"))
		TH_LOG("%s", xfer_rdzv_last_error(r));
	ret = xfer_rdzv_barrier(r2, "b");
	EXPECT_EQ(-ETIMEDOUT, ret);
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r2), "ranks 0, 1, 3 never arrived at barrier 'b'"))
		TH_LOG("%s", xfer_rdzv_last_error(r2));
	/* close's barrier fails the same way, and the handle is freed */
	EXPECT_EQ(-ETIMEDOUT, xfer_rdzv_close(r));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), "never arrived at barrier 'close'"))
		TH_LOG("%s", xfer_rdzv_last_error(NULL));
	/* r2 is not closed: its close would wait the timeout again */
}

TEST_F_TIMEOUT(rdzv, duplicate_rank, 20)
{
	struct xfer_rdzv_attr a;
	xfer_rdzv *r, *dup = NULL;

	attr_of(&a, self, 0, 1, 3000, 0);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	EXPECT_EQ(-EEXIST, xfer_rdzv_open(&a, &dup));
	EXPECT_EQ(NULL, dup);
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), "rank 0 is already registered in job"))
		TH_LOG("%s", xfer_rdzv_last_error(NULL));
	/* the refused open took nothing from the first: it still works */
	XT_EXPECT_OK(xfer_rdzv_barrier(r, "b"));
	XT_EXPECT_OK(xfer_rdzv_close(r));
	EXPECT_EQ(0, job_keys(self, variant, self->job));
	/* after close the rank is free again */
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	XT_EXPECT_OK(xfer_rdzv_close(r));
}

/* Put a key straight into the store, as a broken or hostile peer would. */
static void inject(FIXTURE_DATA(rdzv) *self, const FIXTURE_VARIANT(rdzv) *variant,
		   const char *key, const char *val)
{
	if (variant->etcd) {
		char full[200], k64[300], v64[300], body[800], out[4096];

		snprintf(full, sizeof(full), "/xfer/%s/%s", self->job, key);
		b64(full, strlen(full), k64);
		b64(val, strlen(val), v64);
		snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
		http(self->port, "POST", "/v3/kv/put", body, out, sizeof(out));
	} else {
		/* the file store's format: "xfrdzv1\n", the lease (0: none), the value */
		char path[600], hdr[16] = "xfrdzv1\n";
		FILE *f;

		snprintf(path, sizeof(path), "mkdir -p '%s/%s/%s'", self->tmp, self->job, key);
		*strrchr(path, '/') = '\0';
		strcat(path, "'");
		if (system(path)) {
		}
		snprintf(path, sizeof(path), "%s/%s/%s", self->tmp, self->job, key);
		f = fopen(path, "w");
		if (f) {
			fwrite(hdr, 1, 16, f);
			fwrite(val, 1, strlen(val), f);
			fclose(f);
		}
	}
}

TEST_F_TIMEOUT(rdzv, bad_blob, 20)
{
	struct xfer_rdzv_attr a;
	const struct xfer_rdzv_blob *all;
	xfer_rdzv *r;

	attr_of(&a, self, 0, 2, 2000, 0);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	/* a key that names no rank of 2 */
	inject(self, variant, "blob/x/7", "junk");
	EXPECT_EQ(-EBADMSG, xfer_rdzv_exchange(r, "x", "a", 1, &all));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), "key blob/x/7 names no rank of 2"))
		TH_LOG("%s", xfer_rdzv_last_error(r));
	inject(self, variant, "blob/y/01", "junk");
	EXPECT_EQ(-EBADMSG, xfer_rdzv_exchange(r, "y", "a", 1, &all));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), "key blob/y/01 names no rank"))
		TH_LOG("%s", xfer_rdzv_last_error(r));
	/* rank 1's blob empty */
	inject(self, variant, "blob/z/1", "");
	EXPECT_EQ(-EBADMSG, xfer_rdzv_exchange(r, "z", "a", 1, &all));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), "rank 1's blob (key blob/z/1) is 0 bytes"))
		TH_LOG("%s", xfer_rdzv_last_error(r));
	/* the handle still works */
	inject(self, variant, "blob/ok/1", "fine");
	XT_EXPECT_OK(xfer_rdzv_exchange(r, "ok", "mine", 4, &all));
	EXPECT_EQ(4, all[1].len);
	EXPECT_EQ(0, memcmp(all[1].data, "fine", 4));
	EXPECT_EQ(0, memcmp(all[0].data, "mine", 4));
	/* No close: rank 1 is not there, the close barrier would wait the
	 * whole timeout (never_arrives tests that). */
}

TEST_F_TIMEOUT(rdzv, bad_args, 20)
{
	struct xfer_rdzv_attr a;
	const struct xfer_rdzv_blob *all;
	static uint8_t big[XFER_RDZV_MAX_BLOB + 1];
	xfer_rdzv *r = NULL;

	attr_of(&a, self, 2, 2, 2000, 0);
	EXPECT_EQ(-EINVAL, xfer_rdzv_open(&a, &r));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), "rank 2 of world size 2"));
	attr_of(&a, self, 0, 1, 2000, 0);
	a.job = "a/b";
	EXPECT_EQ(-EINVAL, xfer_rdzv_open(&a, &r));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), "job id 'a/b'"));
	a.job = self->job;
	a.url = "http://127.0.0.1:2379";
	EXPECT_EQ(-EINVAL, xfer_rdzv_open(&a, &r));
	a.url = "etcd://127.0.0.1:99999";
	EXPECT_EQ(-EINVAL, xfer_rdzv_open(&a, &r));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), "bad port"));
	a.url = "file://relative";
	EXPECT_EQ(-EINVAL, xfer_rdzv_open(&a, &r));
	a.url = self->url;
	a.size = 8;
	EXPECT_EQ(-EINVAL, xfer_rdzv_open(&a, &r));
	EXPECT_EQ(NULL, r);
	attr_of(&a, self, 0, 1, 2000, 0);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	EXPECT_EQ(-EINVAL, xfer_rdzv_exchange(r, "e", big, 0, &all));
	EXPECT_EQ(-EINVAL, xfer_rdzv_exchange(r, "e", big, sizeof(big), &all));
	EXPECT_EQ(-EINVAL, xfer_rdzv_exchange(r, "a/b", "x", 1, &all));
	EXPECT_EQ(-EINVAL, xfer_rdzv_exchange(r, "", "x", 1, &all));
	EXPECT_EQ(-EINVAL, xfer_rdzv_barrier(r, "~close"));
	/* the largest blob goes through */
	XT_EXPECT_OK(xfer_rdzv_exchange(r, "e", big, XFER_RDZV_MAX_BLOB, &all));
	EXPECT_EQ(XFER_RDZV_MAX_BLOB, all[0].len);
	EXPECT_EQ(-EALREADY, xfer_rdzv_exchange(r, "e", "x", 1, &all));
	XT_EXPECT_OK(xfer_rdzv_barrier(r, "e"));   /* barriers have names of their own */
	EXPECT_EQ(-EALREADY, xfer_rdzv_barrier(r, "e"));
	XT_EXPECT_OK(xfer_rdzv_close(r));
	EXPECT_EQ(0, job_keys(self, variant, self->job));
}

/* Rank 2 of 3 registers, is seen, and is SIGKILLed: ranks 0 and 1 name it
 * as gone within about its lease TTL (2 s). */
TEST_F_TIMEOUT(rdzv, rank_killed, 30)
{
	struct xfer_rdzv_attr a;
	const struct xfer_rdzv_blob *all;
	xfer_rdzv *r;
	int p[2];
	pid_t victim;
	char c;
	uint64_t t_kill;
	int ret;

	ASSERT_EQ(0, pipe(p));
	victim = fork();
	ASSERT_GE(victim, 0);
	if (victim == 0) {
		attr_of(&a, self, 2, 3, 10000, 2);
		if (xfer_rdzv_open(&a, &r))
			_exit(1);
		if (write(p[1], "k", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	ASSERT_EQ(1, read(p[0], &c, 1));
	attr_of(&a, self, 0, 3, 10000, 2);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	/* rank 1 comes, rank 2 does not publish: the exchange waits and sees
	 * rank 2 registered; then the kill */
	pid_t one = fork();

	ASSERT_GE(one, 0);
	if (one == 0) {
		xfer_rdzv *r1;

		attr_of(&a, self, 1, 3, 10000, 2);
		if (xfer_rdzv_open(&a, &r1))
			_exit(1);
		/* Registered; the exchange's first poll sees rank 2 at once. */
		if (write(p[1], "1", 1) != 1)
			_exit(2);
		ret = xfer_rdzv_exchange(r1, "addrs", "1", 1, &all);
		if (ret != -ENOTCONN || !strstr(xfer_rdzv_last_error(r1), "rank 2 left or died")) {
			fprintf(stderr, "rank 1: %d: %s\n", ret, xfer_rdzv_last_error(r1));
			_exit(3);
		}
		_exit(0);
	}
	/* Rank 1 is in its exchange (a loaded machine, a sanitizer build:
	 * its start may take longer than rank 2's lease TTL). */
	ASSERT_EQ(1, read(p[0], &c, 1));
	usleep(300000);
	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
	t_kill = xt_now_us();
	ret = xfer_rdzv_exchange(r, "addrs", "0", 1, &all);
	EXPECT_EQ(-ENOTCONN, ret);
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), "exchange 'addrs': rank 2 left or died"))
		TH_LOG("%s", xfer_rdzv_last_error(r));
	/* its lease TTL, the store's expiry check, and a loaded machine's margin */
	EXPECT_LT(xt_now_us() - t_kill, 2000000 + 4000000);
	TH_LOG("rank 2 named as gone %.2f s after its SIGKILL (lease TTL 2 s)",
	       (double)(xt_now_us() - t_kill) / 1e6);
	int st;

	ASSERT_EQ(one, waitpid(one, &st, 0));
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("rank 1: status 0x%x", st);
	/* rank 2's keys died with it */
	if (variant->etcd) {
		char key[128], k64[200], body[300], out[4096];

		snprintf(key, sizeof(key), "/xfer/%s/ranks/2", self->job);
		b64(key, strlen(key), k64);
		snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k64);
		ASSERT_EQ(0, http(self->port, "POST", "/v3/kv/range", body, out, sizeof(out)));
		EXPECT_EQ(NULL, strstr(out, "\"kvs\""));
	}
	/* A new process of rank 2 (this one) takes the dead one's place: its
	 * registration expired with it (the file store replaces the stale
	 * file). */
	xfer_rdzv *again;

	attr_of(&a, self, 2, 3, 10000, 2);
	XT_EXPECT_OK(xfer_rdzv_open(&a, &again));
	/* No close: its barrier would wait the whole timeout for rank 1, and
	 * this process ends here. */
}

/* ---- etcd only ------------------------------------------------------------ */

TEST_F_TIMEOUT(rdzv, second_endpoint, 20)
{
	struct xfer_rdzv_attr a;
	const struct xfer_rdzv_blob *all;
	char url[300];
	xfer_rdzv *r;

	if (!variant->etcd)
		SKIP(return, "etcd only (endpoints)");
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d,127.0.0.1:%d", free_port(), self->port);
	attr_of(&a, self, 0, 1, 5000, 0);
	a.url = url;
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	XT_EXPECT_OK(xfer_rdzv_exchange(r, "a", "z", 1, &all));
	EXPECT_EQ(0, memcmp(all[0].data, "z", 1));
	XT_EXPECT_OK(xfer_rdzv_close(r));
	EXPECT_EQ(0, job_keys(self, variant, self->job));
}

/* Ranks 0 and 1 of 3 wait in an exchange; etcd is SIGKILLed and restarted
 * on its data dir 1 s later; then rank 2 comes: every rank completes,
 * every blob right, and close removes every key. */
TEST_F_TIMEOUT(rdzv, etcd_restart, 40)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[3];
	int go[2];

	if (!variant->etcd)
		SKIP(return, "etcd only (restart)");
	ASSERT_EQ(0, own_etcd(self)) TH_LOG("etcd did not start: see %s/etcd.log", self->etcd.dir);
	ASSERT_NE(MAP_FAILED, sh);
	ASSERT_EQ(0, pipe(go));
	for (uint32_t i = 0; i < 3; i++) {
		pids[i] = fork();
		ASSERT_GE(pids[i], 0);
		if (pids[i] == 0) {
			char c;

			if (i == 2 && read(go[0], &c, 1) != 1)
				_exit(99);
			_exit(rank_main(self->url, self->job, i, 3, sh));
		}
	}
	usleep(500000);   /* ranks 0 and 1 are in their exchange */
	etcd_kill(&self->etcd);
	usleep(1000000);
	ASSERT_EQ(0, etcd_start(&self->etcd));
	ASSERT_EQ(1, write(go[1], "g", 1));
	for (uint32_t i = 0; i < 3; i++) {
		int st;

		ASSERT_EQ(pids[i], waitpid(pids[i], &st, 0));
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
			TH_LOG("rank %u: status 0x%x: %s", i, st, sh->err[i]);
	}
	EXPECT_EQ(0, job_keys(self, variant, self->job));
	munmap(sh, sizeof(*sh));
}

/* etcd killed for good mid-rendezvous: a clean error within the timeout,
 * naming the URL and what curl saw. */
TEST_F_TIMEOUT(rdzv, etcd_gone, 20)
{
	struct xfer_rdzv_attr a;
	const struct xfer_rdzv_blob *all;
	char port_s[32];
	xfer_rdzv *r;
	uint64_t t0;
	int ret;

	if (!variant->etcd)
		SKIP(return, "etcd only (killed)");
	ASSERT_EQ(0, own_etcd(self)) TH_LOG("etcd did not start: see %s/etcd.log", self->etcd.dir);
	attr_of(&a, self, 0, 2, 1000, 0);
	XT_ASSERT_OK(xfer_rdzv_open(&a, &r));
	etcd_kill(&self->etcd);
	t0 = xt_now_us();
	ret = xfer_rdzv_exchange(r, "addrs", "x", 1, &all);
	EXPECT_EQ(-ECONNREFUSED, ret);
	EXPECT_LT(xt_now_us() - t0, 1000000 + 3000000);
	snprintf(port_s, sizeof(port_s), "http://127.0.0.1:%d", self->etcd.client_port);
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), port_s)) TH_LOG("%s", xfer_rdzv_last_error(r));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(r), "did not answer"))
		TH_LOG("%s", xfer_rdzv_last_error(r));
	TH_LOG("%s", xfer_rdzv_last_error(r));
	EXPECT_NE(0, xfer_rdzv_close(r));
}

/* ---- launchers ------------------------------------------------------------ */

static const char *const launch_vars[] = {
	"RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
	"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
};

static void launch_clear(void)
{
	for (size_t i = 0; i < sizeof(launch_vars) / sizeof(launch_vars[0]); i++)
		unsetenv(launch_vars[i]);
}

static void launch_set(const char *r, const char *s, const char *l, const char *rv,
		       const char *sv, const char *lv)
{
	setenv(r, rv, 1);
	setenv(s, sv, 1);
	if (lv)
		setenv(l, lv, 1);
}

TEST(launch_env)
{
	static const struct {
		const char *source, *r, *s, *l;
	} ls[] = {
		{ "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK" },
		{ "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK" },
		{ "slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID" },
	};
	struct xfer_launch l;

	launch_clear();
	l.size = sizeof(l);
	EXPECT_EQ(-ENOENT, xfer_launch_from_env(&l));
	EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), "SLURM_PROCID"));
	for (size_t i = 0; i < 3; i++) {
		launch_clear();
		launch_set(ls[i].r, ls[i].s, ls[i].l, "5", "16", "1");
		memset(&l, 0, sizeof(l));
		l.size = sizeof(l);
		XT_ASSERT_OK(xfer_launch_from_env(&l));
		EXPECT_EQ(5, l.rank);
		EXPECT_EQ(16, l.world_size);
		EXPECT_EQ(1, l.local_rank);
		EXPECT_STREQ(ls[i].source, l.source);
		/* bad values, each named */
		static const char *const bad[][3] = {
			{ "abc", "16", "1" }, { "-1", "16", "1" }, { "16", "16", "1" },
			{ "5", "16x", "1" }, { "5", "0", "0" }, { "5", "16", "" },
			{ "5", "16", "99999999999" }, { "5", "16", "16" },
		};
		static const int which[] = { 0, 0, 0, 1, 0, 2, 2, 2 };
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			const char *var = which[b] == 0 ? ls[i].r : which[b] == 1 ? ls[i].s : ls[i].l;

			launch_clear();
			launch_set(ls[i].r, ls[i].s, ls[i].l, bad[b][0], bad[b][1], bad[b][2]);
			EXPECT_EQ(-EINVAL, xfer_launch_from_env(&l)) TH_LOG("%s %s %s", bad[b][0],
									   bad[b][1], bad[b][2]);
			EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), var))
				TH_LOG("case %zu: %s", b, xfer_rdzv_last_error(NULL));
		}
		/* the local rank missing */
		launch_clear();
		launch_set(ls[i].r, ls[i].s, ls[i].l, "5", "16", NULL);
		EXPECT_EQ(-EINVAL, xfer_launch_from_env(&l));
		EXPECT_NE(NULL, strstr(xfer_rdzv_last_error(NULL), ls[i].l));
	}
	/* torchrun under srun, mpirun under Slurm: theirs win over Slurm's */
	launch_clear();
	launch_set("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "1", "2", "0");
	launch_set("RANK", "WORLD_SIZE", "LOCAL_RANK", "7", "8", "3");
	XT_ASSERT_OK(xfer_launch_from_env(&l));
	EXPECT_STREQ("torchrun", l.source);
	EXPECT_EQ(7, l.rank);
	launch_clear();
	launch_set("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "1", "2", "0");
	launch_set("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
		   "6", "8", "2");
	XT_ASSERT_OK(xfer_launch_from_env(&l));
	EXPECT_STREQ("openmpi", l.source);
	EXPECT_EQ(2, l.local_rank);
	/* a struct of a bad size is refused and left as it was */
	l.size = 2;
	EXPECT_EQ(-EINVAL, xfer_launch_from_env(&l));
	EXPECT_EQ(-EINVAL, xfer_launch_from_env(NULL));
}

TEST_HARNESS_MAIN
