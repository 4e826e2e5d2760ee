// SPDX-License-Identifier: MIT
/*
 * The rendezvous protocol over a store (store.h). docs/rendezvous.md has
 * the whole story; in short, with every key under the job's prefix:
 *
 *   ranks/<r>          rank r is registered       rank r's lease
 *   blob/<name>/<r>    rank r's blob for <name>   rank r's lease
 *   job/lease          the job lease's id         the job lease
 *   bar/<name>/<r>     r reached barrier <name>   the job lease
 *   left/<r>           r has closed               the job lease
 *
 * Every rank keeps its own lease and the job lease alive. Nothing is
 * deleted while a rank may still need to see it: arrivals live as long as
 * the job; a rank's blobs are removed (its lease revoked) only after the
 * close barrier, which every rank passes only once done with every
 * exchange; the job's keys go when the last rank has left (or, when ranks
 * died, TTL after the last live one).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "compiler.h"
#include "store.h"
#include "struct_copy.h"
#include "xfer_rdzv.h"

#define DEFAULT_TIMEOUT_MS 60000u
#define DEFAULT_TTL_S 10u
#define CLOSE_BARRIER "~close"   /* '~' is not allowed in a user's name */
#define ATTR_SIZE_VER0 (offsetof(struct xfer_rdzv_attr, lease_ttl_s) + sizeof(uint32_t))

struct result {
	struct result *next;
	char *name;
	struct rdzv_kv *kvs;
	size_t n;
	struct xfer_rdzv_blob *blobs;
};

struct xfer_rdzv {
	const struct rdzv_store_ops *ops;
	struct rdzv_store *st;        /* the caller's calls */
	struct rdzv_store *ka;        /* the keepalive thread's */
	char *url;
	char job[XFER_RDZV_MAX_JOB + 1];
	uint32_t rank, world, timeout_ms, ttl_s;
	int64_t rank_lease, job_lease;
	bool *seen;                   /* rank seen registered: its absence later means it left */
	struct result *results;       /* exchanges and barriers done, for their names and blobs */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	int lease_lost;               /* the thread found a lease gone: -ENOENT */
	char lost_what[256];
	char err[768];
};

static __thread char tls_err[768];

static void set_err(struct xfer_rdzv *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct xfer_rdzv *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tls_err, sizeof(tls_err), fmt, ap);
	va_end(ap);
	if (r)
		memcpy(r->err, tls_err, sizeof(r->err));
}

/* launch.c's errors. */
void rdzv_set_thread_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rdzv_set_thread_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tls_err, sizeof(tls_err), fmt, ap);
	va_end(ap);
}

XFER_EXPORT const char *xfer_rdzv_last_error(const xfer_rdzv *r)
{
	return r ? r->err : tls_err;
}

void rdzv_kv_free(struct rdzv_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].val);
	}
	free(kvs);
}

void rdzv_sleep_until(uint64_t us, uint64_t deadline)
{
	uint64_t now = xfer_now_ns(), until = now + us * 1000;
	struct timespec ts;

	if (until > deadline)
		until = deadline;
	if (until <= now)
		return;
	ts.tv_sec = (time_t)((until - now) / 1000000000u);
	ts.tv_nsec = (long)((until - now) % 1000000000u);
	nanosleep(&ts, NULL);
}

static uint64_t deadline_of(const struct xfer_rdzv *r)
{
	return xfer_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
}

/* [A-Za-z0-9._-]{1,max}, not "." or "..": a path component and an etcd key part. */
static bool name_ok(const char *s, size_t max)
{
	size_t n = 0;

	if (!s || !*s || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; s[n]; n++) {
		char c = s[n];

		if (n >= max || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* The rank a key's last component names: decimal, no sign or leading zero. */
static int64_t key_rank(const char *key, size_t prefix_len)
{
	const char *p = key + prefix_len;
	int64_t v = 0;

	if (!*p || (p[0] == '0' && p[1]) || strlen(p) > 6)
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

/* "3, 7, 12" (the first 16, then "and N more") into buf. */
static void rank_list(char *buf, size_t len, const uint32_t *ranks, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && i < 16 && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%u", i ? ", " : "", ranks[i]);
	if (n > 16 && o < len)
		snprintf(buf + o, len - o, " and %zu more", n - 16);
}

/* ---- the keepalive thread ----------------------------------------------- */

static void *keepalive_main(void *arg)
{
	struct xfer_rdzv *r = arg;
	/* A third of the TTL: two refreshes may fail (etcd restarting)
	 * before the lease is in danger. */
	uint64_t period_ns = (uint64_t)r->ttl_s * 1000000000u / 3;

	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		struct timespec ts;
		uint64_t at;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + period_ns;
		ts.tv_sec = (time_t)(at / 1000000000u);
		ts.tv_nsec = (long)(at % 1000000000u);
		while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &ts) != ETIMEDOUT)
			;
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->mu);
		int64_t leases[2] = { r->rank_lease, r->job_lease };
		const char *what[2] = { "this rank's lease", "the job lease" };

		for (int i = 0; i < 2; i++) {
			/* At most a second per try, so that close (which joins
			 * this thread) never waits long on a dead store. */
			uint64_t try_ns = period_ns < 1000000000u ? period_ns : 1000000000u;
			int ret = r->ops->keepalive(r->ka, leases[i], xfer_now_ns() + try_ns);

			/* Not answering is retried next period; gone is final. */
			if (ret == -ENOENT) {
				pthread_mutex_lock(&r->mu);
				if (!r->lease_lost) {
					r->lease_lost = ret;
					snprintf(r->lost_what, sizeof(r->lost_what), "%s expired: %s",
						 what[i], r->ops->error(r->ka));
				}
				pthread_mutex_unlock(&r->mu);
			}
		}
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void stop_thread(struct xfer_rdzv *r)
{
	if (!r->thread_started)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	r->thread_started = false;
}

static int lease_check(struct xfer_rdzv *r)
{
	int lost;

	pthread_mutex_lock(&r->mu);
	lost = r->lease_lost;
	if (lost)
		set_err(r, "rank %u of job %s: %s (the store did not hear from this rank for %u s)",
			r->rank, r->job, r->lost_what, r->ttl_s);
	pthread_mutex_unlock(&r->mu);
	return lost ? -ENOTCONN : 0;
}

/* ---- open / close ------------------------------------------------------- */

static void free_handle(struct xfer_rdzv *r)
{
	struct result *res, *next;

	stop_thread(r);
	for (res = r->results; res; res = next) {
		next = res->next;
		free(res->name);
		rdzv_kv_free(res->kvs, res->n);
		free(res->blobs);
		free(res);
	}
	if (r->ka)
		r->ops->close(r->ka);
	if (r->st)
		r->ops->close(r->st);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->seen);
	free(r->url);
	free(r);
}

static int store_fail(struct xfer_rdzv *r, int ret, const char *doing)
{
	set_err(r, "rank %u of job %s: %s: %s (store %s)", r->rank, r->job, doing,
		r->ops->error(r->st), r->url);
	return ret;
}

/*
 * The job lease: read the key job/lease; when absent, grant one and try to
 * create the key under it. Of ranks racing here one wins; the others
 * revoke theirs and use the winner's.
 */
static int join_job_lease(struct xfer_rdzv *r, uint64_t deadline)
{
	for (;;) {
		struct rdzv_kv *kvs = NULL;
		size_t n = 0;
		int64_t mine;
		uint32_t ttl = r->ttl_s;
		char txt[24];
		int ret = r->ops->range(r->st, "job/", true, &kvs, &n, deadline);

		if (ret)
			return store_fail(r, ret, "reading the job lease");
		for (size_t i = 0; i < n; i++) {
			if (!strcmp(kvs[i].key, "job/lease") && kvs[i].lease) {
				r->job_lease = kvs[i].lease;
				break;
			}
		}
		rdzv_kv_free(kvs, n);
		if (r->job_lease)
			return 0;
		ret = r->ops->grant(r->st, &ttl, deadline, &mine);
		if (ret)
			return store_fail(r, ret, "granting a job lease");
		snprintf(txt, sizeof(txt), "%" PRId64, mine);
		ret = r->ops->create(r->st, "job/lease", txt, strlen(txt), mine, deadline);
		if (ret == 0) {
			r->job_lease = mine;
			return 0;
		}
		r->ops->revoke(r->st, mine, deadline);
		if (ret != -EEXIST)
			return store_fail(r, ret, "creating the job lease");
		if (xfer_now_ns() >= deadline) {
			set_err(r, "rank %u of job %s: no job lease could be agreed within %u ms (store %s)",
				r->rank, r->job, r->timeout_ms, r->url);
			return -ETIMEDOUT;
		}
	}
}

XFER_EXPORT int xfer_rdzv_open(const struct xfer_rdzv_attr *uattr, xfer_rdzv **out)
{
	struct xfer_rdzv_attr a = { 0 };
	struct xfer_rdzv *r;
	const struct rdzv_store_ops *ops = NULL;
	uint64_t deadline;
	char key[32], val[96], host[64] = "?";
	int ret;

	if (!uattr || !out) {
		set_err(NULL, "xfer_rdzv_open: attr and out must not be NULL");
		return -EINVAL;
	}
	ret = xfer_struct_copy_in(&a, sizeof(a), uattr, ATTR_SIZE_VER0);
	if (ret) {
		set_err(NULL, "xfer_rdzv_open: attr->size %u is not that of a struct xfer_rdzv_attr "
			"(%zu)", uattr->size, sizeof(a));
		return ret;
	}
	if (!a.url || !a.job) {
		set_err(NULL, "xfer_rdzv_open: attr->url and attr->job must be set");
		return -EINVAL;
	}
	if (!strncmp(a.url, "etcd://", 7))
		ops = &rdzv_etcd_ops;
	else if (!strncmp(a.url, "file://", 7))
		ops = &rdzv_file_ops;
	if (!ops) {
		set_err(NULL, "xfer_rdzv_open: URL '%s' is neither etcd://host:port[,host:port...] "
			"nor file:///shared/dir", a.url);
		return -EINVAL;
	}
	if (!name_ok(a.job, XFER_RDZV_MAX_JOB)) {
		set_err(NULL, "xfer_rdzv_open: job id '%s' must be 1 to %u of [A-Za-z0-9._-]",
			a.job, XFER_RDZV_MAX_JOB);
		return -EINVAL;
	}
	if (a.world_size == 0 || a.world_size > XFER_RDZV_MAX_RANKS || a.rank >= a.world_size) {
		set_err(NULL, "xfer_rdzv_open: rank %u of world size %u: the world size must be 1 to "
			"%u and the rank below it", a.rank, a.world_size, XFER_RDZV_MAX_RANKS);
		return -EINVAL;
	}
	if (a.lease_ttl_s > 3600) {
		set_err(NULL, "xfer_rdzv_open: lease_ttl_s %u is over an hour", a.lease_ttl_s);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		set_err(NULL, "xfer_rdzv_open: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&r->mu, NULL);
	{
		/* The thread's waits are on CLOCK_MONOTONIC deadlines. */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&r->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	r->ops = ops;
	r->rank = a.rank;
	r->world = a.world_size;
	r->timeout_ms = a.timeout_ms ? a.timeout_ms : DEFAULT_TIMEOUT_MS;
	r->ttl_s = a.lease_ttl_s ? a.lease_ttl_s : DEFAULT_TTL_S;
	snprintf(r->job, sizeof(r->job), "%s", a.job);
	r->url = strdup(a.url);
	r->seen = calloc(r->world, sizeof(*r->seen));
	if (!r->url || !r->seen) {
		set_err(NULL, "xfer_rdzv_open: out of memory");
		free_handle(r);
		return -ENOMEM;
	}
	deadline = deadline_of(r);
	ret = ops->open(a.url + 7, a.job, deadline, &r->st, r->err, sizeof(r->err));
	if (ret) {
		set_err(NULL, "xfer_rdzv_open: %s", r->err);
		free_handle(r);
		return ret;
	}
	ret = ops->clone(r->st, &r->ka);
	if (ret) {
		set_err(NULL, "xfer_rdzv_open: out of memory");
		free_handle(r);
		return ret;
	}
	ret = ops->grant(r->st, &r->ttl_s, deadline, &r->rank_lease);
	if (ret) {
		store_fail(r, ret, "granting this rank's lease");
		free_handle(r);
		return ret;
	}
	/* ranks/<rank>: create-if-absent under the rank lease. The value
	 * (host, pid) is for people reading the store. */
	gethostname(host, sizeof(host) - 1);
	snprintf(key, sizeof(key), "ranks/%u", r->rank);
	snprintf(val, sizeof(val), "%s %d", host, (int)getpid());
	ret = ops->create(r->st, key, val, strlen(val), r->rank_lease, deadline);
	if (ret == -EEXIST) {
		set_err(r, "rank %u is already registered in job %s (another process of this job, "
			"or a previous run of job %s within the lease TTL of %u s) (store %s)",
			r->rank, r->job, r->job, r->ttl_s, r->url);
	} else if (ret) {
		store_fail(r, ret, "registering");
	} else {
		r->seen[r->rank] = true;
		ret = join_job_lease(r, deadline);
	}
	if (!ret && pthread_create(&r->thread, NULL, keepalive_main, r)) {
		set_err(r, "rank %u of job %s: cannot start the keepalive thread", r->rank, r->job);
		ret = -EAGAIN;
	}
	if (ret) {
		/* This rank's keys go with its lease; the job lease is shared. */
		ops->revoke(r->st, r->rank_lease, deadline_of(r));
		memcpy(tls_err, r->err, sizeof(tls_err));
		free_handle(r);
		return ret;
	}
	r->thread_started = true;
	*out = r;
	return 0;
}

/* ---- exchange / barrier -------------------------------------------------- */

static struct result *find_result(struct xfer_rdzv *r, const char *kind, const char *name)
{
	for (struct result *res = r->results; res; res = res->next)
		if (!strncmp(res->name, kind, 4) && !strcmp(res->name + 4, name))
			return res;
	return NULL;
}

static void never_arrived(struct xfer_rdzv *r, const char *what, const char *name,
			  const uint32_t *missing, size_t nmiss)
{
	char list[160];

	rank_list(list, sizeof(list), missing, nmiss);
	set_err(r, "rank %u of job %s: rank%s %s never arrived at %s '%s' within %u ms (store %s)",
		r->rank, r->job, nmiss > 1 ? "s" : "", list, what, name, r->timeout_ms, r->url);
}

/* The deadline passed in a store request that failed: the ranks missing at
 * the last answer never arrived, and the store stopped answering (both are
 * said: a dead etcd reads as ranks that never came otherwise). */
static int cut_off(struct xfer_rdzv *r, const char *what, const char *name,
		   const uint32_t *missing, size_t nmiss)
{
	char store[256];
	size_t len;

	snprintf(store, sizeof(store), "%s", r->ops->error(r->st));
	never_arrived(r, what, name, missing, nmiss);
	len = strlen(r->err);
	snprintf(r->err + len, sizeof(r->err) - len, "; the store's last answer: %s", store);
	memcpy(tls_err, r->err, sizeof(r->err));
	return -ETIMEDOUT;
}

/* A store request failed: past the deadline the ranks still missing never
 * arrived (-ETIMEDOUT, naming them); before it, the store's own error. */
static int poll_failed(struct xfer_rdzv *r, int ret, uint64_t deadline, const char *what,
		       const char *name, const uint32_t *missing, size_t nmiss)
{
	if (xfer_now_ns() >= deadline)
		return cut_off(r, what, name, missing, nmiss);
	return store_fail(r, ret, what);
}

/* Each key of kvs names a rank below world_size (and, with values, holds
 * 1 .. XFER_RDZV_MAX_BLOB bytes); have[rank] set for each. */
static int validate(struct xfer_rdzv *r, const char *what, const char *name, size_t plen,
		    const struct rdzv_kv *kvs, size_t n, bool values, bool *have)
{
	memset(have, 0, r->world * sizeof(*have));
	for (size_t i = 0; i < n; i++) {
		int64_t k = key_rank(kvs[i].key, plen);

		if (k < 0 || k >= r->world) {
			set_err(r, "rank %u of job %s: %s '%s': key %s names no rank of %u (store %s)",
				r->rank, r->job, what, name, kvs[i].key, r->world, r->url);
			return -EBADMSG;
		}
		if (values && (kvs[i].len == 0 || kvs[i].len > XFER_RDZV_MAX_BLOB)) {
			set_err(r, "rank %u of job %s: %s '%s': rank %" PRId64 "'s blob (key %s) is %zu "
				"bytes: not 1 to %u (store %s)", r->rank, r->job, what, name, k,
				kvs[i].key, kvs[i].len, XFER_RDZV_MAX_BLOB, r->url);
			return -EBADMSG;
		}
		have[k] = true;
	}
	return 0;
}

#define LIVENESS_EVERY_NS 200000000ull   /* ranks/ read at most every 200 ms */

/*
 * Poll prefix (keys only: cheap) until world_size keys are there (backoff
 * 1 ms doubling to 50 ms), then read the values once unless keys_only;
 * every key and value is validated. Ranks whose key is missing are
 * checked against ranks/: one seen registered before and gone now left or
 * died. That read and the poll are two reads, not one: a rank may arrive,
 * pass and revoke its lease between them (close does), so a rank found
 * gone is believed only when a poll made after that finding still lacks
 * it (a rank's arrival is always written before its lease goes).
 */
static int wait_all(struct xfer_rdzv *r, const char *what, const char *name, const char *prefix,
		    bool keys_only, uint64_t deadline, struct rdzv_kv **out, size_t *n_out)
{
	size_t plen = strlen(prefix), nmiss = 0, nsuspect = 0, counted = 0;
	bool polled = false;
	uint64_t backoff_us = 1000, last_liveness = 0;
	uint32_t *missing = malloc(r->world * sizeof(*missing));
	uint32_t *suspect = malloc(r->world * sizeof(*suspect));
	bool *have = malloc(r->world * sizeof(*have));
	bool *alive = malloc(r->world * sizeof(*alive));
	char list[160];
	int ret;

	if (!missing || !suspect || !have || !alive) {
		ret = -ENOMEM;
		set_err(r, "out of memory");
		goto out;
	}
	for (;;) {
		struct rdzv_kv *kvs = NULL, *reg = NULL;
		size_t n = 0, nreg = 0, ngone = 0;
		bool liveness_due = xfer_now_ns() - last_liveness >= LIVENESS_EVERY_NS;

		ret = lease_check(r);
		if (ret)
			break;
		/* The cheap poll (a count) until the set may be complete, a
		 * liveness read is due, a suspect is to be confirmed, or the
		 * missing ranks are to be named. */
		if (polled && !liveness_due && !nsuspect && xfer_now_ns() < deadline) {
			ret = r->ops->count(r->st, prefix, &n, deadline);
			if (ret) {
				ret = poll_failed(r, ret, deadline, what, name, missing, nmiss);
				break;
			}
			/* a read only when the count moved, so the ranks named
			 * missing at a timeout are those of the last arrivals */
			if (n < r->world && n == counted && xfer_now_ns() < deadline) {
				rdzv_sleep_until(backoff_us, deadline);
				backoff_us = backoff_us * 2 > 50000 ? 50000 : backoff_us * 2;
				continue;
			}
			counted = n;
			n = 0;
		}
		ret = r->ops->range(r->st, prefix, true, &kvs, &n, deadline);
		if (ret && polled && xfer_now_ns() >= deadline) {
			/* A poll cut off by the deadline */
			ret = cut_off(r, what, name, missing, nmiss);
			break;
		}
		if (ret) {
			store_fail(r, ret, what);
			break;
		}
		ret = validate(r, what, name, plen, kvs, n, false, have);
		rdzv_kv_free(kvs, n);
		if (ret)
			break;
		if (n == r->world) {
			kvs = NULL;
			n = 0;
			if (!keys_only) {
				ret = r->ops->range(r->st, prefix, false, &kvs, &n, deadline);
				if (ret) {
					store_fail(r, ret, what);
					break;
				}
				ret = validate(r, what, name, plen, kvs, n, true, have);
				if (ret) {
					rdzv_kv_free(kvs, n);
					break;
				}
			}
			if (keys_only || n == r->world) {
				*out = kvs;
				*n_out = n;
				break;
			}
			rdzv_kv_free(kvs, n);   /* a rank's blob went between the reads */
		}
		polled = true;
		nmiss = 0;
		for (uint32_t i = 0; i < r->world; i++)
			if (!have[i])
				missing[nmiss++] = i;
		/* Suspects of the last liveness read still missing now: gone. */
		for (size_t i = 0; i < nsuspect; i++)
			if (!have[suspect[i]])
				suspect[ngone++] = suspect[i];
		if (ngone) {
			rank_list(list, sizeof(list), suspect, ngone);
			set_err(r, "rank %u of job %s: %s '%s': rank%s %s left or died (%s lease "
				"expired or was revoked) (store %s)", r->rank, r->job, what, name,
				ngone > 1 ? "s" : "", list, ngone > 1 ? "their" : "its", r->url);
			ret = -ENOTCONN;
			break;
		}
		nsuspect = 0;
		if (liveness_due) {
			last_liveness = xfer_now_ns();
			ret = r->ops->range(r->st, "ranks/", true, &reg, &nreg, deadline);
			if (ret) {
				ret = poll_failed(r, ret, deadline, what, name, missing, nmiss);
				break;
			}
			memset(alive, 0, r->world * sizeof(*alive));
			for (size_t i = 0; i < nreg; i++) {
				int64_t k = key_rank(reg[i].key, 6);

				if (k >= 0 && k < r->world)
					alive[k] = r->seen[k] = true;
			}
			rdzv_kv_free(reg, nreg);
			for (size_t i = 0; i < nmiss; i++)
				if (r->seen[missing[i]] && !alive[missing[i]])
					suspect[nsuspect++] = missing[i];
			if (nsuspect)
				continue;   /* poll again at once: arrived, or gone */
		}
		if (xfer_now_ns() >= deadline) {
			never_arrived(r, what, name, missing, nmiss);
			ret = -ETIMEDOUT;
			break;
		}
		rdzv_sleep_until(backoff_us, deadline);
		backoff_us = backoff_us * 2 > 50000 ? 50000 : backoff_us * 2;
	}
out:
	free(missing);
	free(suspect);
	free(have);
	free(alive);
	return ret;
}

static int check_call(struct xfer_rdzv *r, const char *fn, const char *kind, const char *name)
{
	if (!r)
		return -EINVAL;
	if (!name_ok(name, XFER_RDZV_MAX_NAME)) {
		set_err(r, "%s: name '%s' must be 1 to %u of [A-Za-z0-9._-]", fn, name ? name : "(null)",
			XFER_RDZV_MAX_NAME);
		return -EINVAL;
	}
	if (find_result(r, kind, name)) {
		set_err(r, "%s: '%s' was done already on this handle (each name once per job)", fn, name);
		return -EALREADY;
	}
	return 0;
}

static struct result *add_result(struct xfer_rdzv *r, const char *kind, const char *name)
{
	struct result *res = calloc(1, sizeof(*res));

	if (!res || asprintf(&res->name, "%s%s", kind, name) < 0) {
		free(res);
		return NULL;
	}
	res->next = r->results;
	r->results = res;
	return res;
}

XFER_EXPORT int xfer_rdzv_exchange(xfer_rdzv *r, const char *name, const void *blob, size_t len,
				   const struct xfer_rdzv_blob **all)
{
	char key[XFER_RDZV_MAX_NAME + 32], prefix[XFER_RDZV_MAX_NAME + 16];
	struct rdzv_kv *kvs = NULL;
	struct result *res;
	uint64_t deadline;
	size_t n = 0;
	int ret = check_call(r, "xfer_rdzv_exchange", "exc:", name);

	if (ret)
		return ret;
	if (!blob || !all || len == 0 || len > XFER_RDZV_MAX_BLOB) {
		set_err(r, "xfer_rdzv_exchange '%s': the blob must be 1 to %u bytes (%zu) and all set",
			name, XFER_RDZV_MAX_BLOB, len);
		return -EINVAL;
	}
	ret = lease_check(r);
	if (ret)
		return ret;
	deadline = deadline_of(r);
	snprintf(key, sizeof(key), "blob/%s/%u", name, r->rank);
	snprintf(prefix, sizeof(prefix), "blob/%s/", name);
	ret = r->ops->put(r->st, key, blob, len, r->rank_lease, deadline);
	if (ret)
		return store_fail(r, ret, "publishing this rank's blob");
	ret = wait_all(r, "exchange", name, prefix, false, deadline, &kvs, &n);
	if (ret)
		return ret;
	res = add_result(r, "exc:", name);
	if (res)
		res->blobs = calloc(r->world, sizeof(*res->blobs));
	if (!res || !res->blobs) {
		rdzv_kv_free(kvs, n);
		set_err(r, "xfer_rdzv_exchange '%s': out of memory", name);
		return -ENOMEM;
	}
	res->kvs = kvs;
	res->n = n;
	for (size_t i = 0; i < n; i++) {
		int64_t k = key_rank(kvs[i].key, strlen(prefix));

		res->blobs[k].data = kvs[i].val;
		res->blobs[k].len = kvs[i].len;
	}
	*all = res->blobs;
	return 0;
}

static int barrier(struct xfer_rdzv *r, const char *name)
{
	char key[XFER_RDZV_MAX_NAME + 32], prefix[XFER_RDZV_MAX_NAME + 16];
	struct rdzv_kv *kvs = NULL;
	uint64_t deadline = deadline_of(r);
	size_t n = 0;
	int ret = lease_check(r);

	if (ret)
		return ret;
	snprintf(key, sizeof(key), "bar/%s/%u", name, r->rank);
	snprintf(prefix, sizeof(prefix), "bar/%s/", name);
	ret = r->ops->put(r->st, key, "1", 1, r->job_lease, deadline);
	if (ret)
		return store_fail(r, ret, "arriving at a barrier");
	ret = wait_all(r, "barrier", name[0] == '~' ? name + 1 : name, prefix, true, deadline,
		       &kvs, &n);
	rdzv_kv_free(kvs, n);
	return ret;
}

XFER_EXPORT int xfer_rdzv_barrier(xfer_rdzv *r, const char *name)
{
	int ret = check_call(r, "xfer_rdzv_barrier", "bar:", name);

	if (ret)
		return ret;
	ret = barrier(r, name);
	if (!ret && !add_result(r, "bar:", name)) {
		set_err(r, "xfer_rdzv_barrier '%s': out of memory", name);
		ret = -ENOMEM;
	}
	return ret;
}

/*
 * The close barrier, then this rank's lease revoked (its registration
 * and blobs go), left/<rank> under the job lease; the rank that sees
 * every rank's left/ key revokes the job lease, which removes the rest.
 * Two ranks may both see it: the second revoke finds no lease, fine.
 */
XFER_EXPORT int xfer_rdzv_close(xfer_rdzv *r)
{
	struct rdzv_kv *kvs = NULL;
	uint64_t deadline;
	size_t n = 0;
	char key[32];
	int ret, r2;

	if (!r)
		return 0;
	ret = barrier(r, CLOSE_BARRIER);
	if (ret)
		memcpy(tls_err, r->err, sizeof(tls_err));
	stop_thread(r);
	deadline = deadline_of(r);
	/* After a failed barrier the revoke is a courtesy (the keys expire
	 * with the lease): not another whole timeout on a dead store. */
	if (ret && r->timeout_ms > 1000)
		deadline = xfer_now_ns() + 1000000000ull;
	r2 = r->ops->revoke(r->st, r->rank_lease, deadline);
	if (r2 && r2 != -ENOENT && !ret)
		ret = store_fail(r, r2, "revoking this rank's lease");
	if (!ret) {
		snprintf(key, sizeof(key), "left/%u", r->rank);
		ret = r->ops->put(r->st, key, "1", 1, r->job_lease, deadline);
		if (!ret)
			ret = r->ops->range(r->st, "left/", true, &kvs, &n, deadline);
		if (ret)
			store_fail(r, ret, "leaving");
		rdzv_kv_free(kvs, n);
		if (!ret && n >= r->world) {
			r2 = r->ops->revoke(r->st, r->job_lease, deadline);
			if (r2 && r2 != -ENOENT)
				ret = store_fail(r, r2, "removing the job's keys");
		}
		/* The error of a failed close is for xfer_rdzv_last_error(NULL):
		 * the handle is gone. */
		if (ret)
			memcpy(tls_err, r->err, sizeof(tls_err));
	}
	free_handle(r);
	return ret;
}
