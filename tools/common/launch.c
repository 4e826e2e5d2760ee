// SPDX-License-Identifier: MIT
/* Launcher mode for the tools: see launch.h. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "launch.h"
#include "out.h"

void launch_opts_init(struct launch_opts *lo)
{
	memset(lo, 0, sizeof(*lo));
	lo->rank = lo->world = lo->local = -1;
}

int launch_opt(struct out *o, int c, const char *arg, struct launch_opts *lo)
{
	uint32_t v;
	int rc;

	switch (c) {
	case LO_RDZV:
		if (strncmp(arg, "etcd://", 7) && strncmp(arg, "file://", 7)) {
			out_error(o, "--rdzv: '%s': etcd://host:port[,host:port] or file:///shared/dir",
				  arg);
			return -EINVAL;
		}
		lo->url = arg;
		return 0;
	case LO_JOB: lo->job = arg; return 0;
	case LO_NODE: lo->node = arg; return 0;
	case LO_LEASE: return arg_u32(o, "--rdzv-lease-s", arg, 1, 3600, &lo->lease_s);
	case LO_RANK: case LO_WORLD: case LO_LOCAL:
		rc = arg_u32(o, c == LO_RANK ? "--rank" : c == LO_WORLD ? "--world-size" : "--local-rank",
			     arg, c == LO_WORLD ? 1 : 0, XFER_RDZV_MAX_RANKS, &v);
		if (rc)
			return rc;
		*(c == LO_RANK ? &lo->rank : c == LO_WORLD ? &lo->world : &lo->local) = v;
		return 0;
	}
	return 1;
}

const char *launch_stray(const struct launch_opts *lo)
{
	if (lo->url)
		return NULL;
	if (lo->job)
		return "--job";
	if (lo->rank >= 0)
		return "--rank";
	if (lo->world >= 0)
		return "--world-size";
	if (lo->local >= 0)
		return "--local-rank";
	if (lo->lease_s)
		return "--rdzv-lease-s";
	if (lo->node)   /* xfer-bench's own --node is not this one: it sets it later */
		return "--node";
	return NULL;
}

/* The job id: --job, else a launcher's (its characters outside the store's
 * [A-Za-z0-9._-] turned into '-'). */
static int pick_job(const struct launch_opts *lo, struct launch *l, char *err, size_t errlen)
{
	static const char *const vars[] = { "XFER_JOB", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID",
					    "OMPI_MCA_ess_base_jobid" };
	const char *j = lo->job;
	char *p;

	for (size_t i = 0; !j && i < sizeof(vars) / sizeof(vars[0]); i++)
		j = getenv(vars[i]);
	if (!j || !*j) {
		snprintf(err, errlen, "--rdzv needs a job id: --job ID, or $XFER_JOB, or a launcher's "
			 "(TORCHELASTIC_RUN_ID, SLURM_JOB_ID, OMPI_MCA_ess_base_jobid)");
		return -EINVAL;
	}
	/* torchrun's run id is 'none' unless --rdzv-id is given: every such
	 * run would be one job, and a rank of the last run still in its lease
	 * would be taken for this run's */
	if (!lo->job && !getenv("XFER_JOB") && j == getenv("TORCHELASTIC_RUN_ID") &&
	    !strcmp(j, "none")) {
		snprintf(err, errlen, "torchrun's run id is 'none' (its default), the same for every "
			 "run: give --job ID, $XFER_JOB, or torchrun --rdzv-id ID");
		return -EINVAL;
	}
	if (strlen(j) > XFER_RDZV_MAX_JOB) {
		snprintf(err, errlen, "job id '%.40s...' is longer than %u characters", j,
			 XFER_RDZV_MAX_JOB);
		return -EINVAL;
	}
	snprintf(l->job, sizeof(l->job), "%s", j);
	/* a Slurm step is a job of its own: two steps of one allocation never mix */
	if (!lo->job && !getenv("XFER_JOB") && !getenv("TORCHELASTIC_RUN_ID") && getenv("SLURM_JOB_ID") &&
	    getenv("SLURM_STEP_ID") && strlen(l->job) + strlen(getenv("SLURM_STEP_ID")) + 1 <= XFER_RDZV_MAX_JOB)
		snprintf(l->job + strlen(l->job), sizeof(l->job) - strlen(l->job), ".%s",
			 getenv("SLURM_STEP_ID"));
	for (p = l->job; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-')) {
			if (lo->job) {
				snprintf(err, errlen, "--job: '%s': only letters, digits, '.', '_', '-'",
					 lo->job);
				return -EINVAL;
			}
			*p = '-';
		}
	return 0;
}

/* Rank, world size, local rank: the launcher's, with flags that agree, or
 * the flags alone. local stays -1 when nobody says (the hello finds it). */
static int pick_ranks(const struct launch_opts *lo, struct launch *l, int64_t *local, char *err,
		      size_t errlen)
{
	struct xfer_launch x = { .size = sizeof(x) };
	int rc = xfer_launch_from_env(&x);

	*local = lo->local;
	if (rc == -ENOENT) {
		if (lo->rank < 0 || lo->world < 0) {
			snprintf(err, errlen, "--rdzv: no launcher's variables are set (torchrun's RANK, "
				 "Slurm's SLURM_PROCID, Open MPI's OMPI_COMM_WORLD_RANK, ...): give "
				 "--rank and --world-size");
			return -EINVAL;
		}
		if (lo->rank >= lo->world) {
			snprintf(err, errlen, "--rank %lld is not below --world-size %lld",
				 (long long)lo->rank, (long long)lo->world);
			return -EINVAL;
		}
		if (lo->local >= lo->world) {
			snprintf(err, errlen, "--local-rank %lld is not below --world-size %lld",
				 (long long)lo->local, (long long)lo->world);
			return -EINVAL;
		}
		l->rank = (uint32_t)lo->rank;
		l->world = (uint32_t)lo->world;
		l->source = "flags";
		return 0;
	}
	if (rc) {
		snprintf(err, errlen, "%s", xfer_rdzv_last_error(NULL));
		return rc;
	}
	/* flags beside a launcher: allowed when they say the same */
	if ((lo->rank >= 0 && lo->rank != x.rank) || (lo->world >= 0 && lo->world != x.world_size) ||
	    (lo->local >= 0 && lo->local != x.local_rank)) {
		const char *f = lo->rank >= 0 && lo->rank != x.rank ? "--rank"
				: lo->world >= 0 && lo->world != x.world_size ? "--world-size"
				: "--local-rank";
		long long fv = f[2] == 'r' ? lo->rank : f[2] == 'w' ? lo->world : lo->local;
		long long ev = f[2] == 'r' ? x.rank : f[2] == 'w' ? x.world_size : x.local_rank;

		snprintf(err, errlen, "%s %lld disagrees with launcher %s's %lld (drop the flag, or "
			 "run without the launcher's variables)", f, fv, x.source, ev);
		return -EINVAL;
	}
	l->rank = x.rank;
	l->world = x.world_size;
	*local = x.local_rank;
	l->source = x.source;
	return 0;
}

/* --node: an IPv4 address, or an interface's first IPv4 address; none
 * given: the first up, non-loopback interface's, else 127.0.0.1. */
static int pick_node(const struct launch_opts *lo, struct launch *l, char *err, size_t errlen)
{
	struct in_addr a;
	struct ifaddrs *ifs, *i;
	bool found = false;

	if (lo->node && inet_pton(AF_INET, lo->node, &a) == 1) {
		snprintf(l->node, sizeof(l->node), "%s", lo->node);
		return 0;
	}
	if (getifaddrs(&ifs)) {
		snprintf(err, errlen, "getifaddrs: %s", strerror(errno));
		return -errno;
	}
	for (i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP))
			continue;
		if (lo->node ? strcmp(i->ifa_name, lo->node) != 0 : (i->ifa_flags & IFF_LOOPBACK) != 0)
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, l->node,
			  sizeof(l->node));
		found = true;
	}
	freeifaddrs(ifs);
	if (!found && lo->node) {
		snprintf(err, errlen, "--node: '%s': neither an IPv4 address nor an up interface with "
			 "one", lo->node);
		return -EINVAL;
	}
	if (!found)
		snprintf(l->node, sizeof(l->node), "127.0.0.1");
	return 0;
}

/* GPUs the NVIDIA driver lists; 0 on a host without. */
static int gpu_count(void)
{
	DIR *d = opendir("/proc/driver/nvidia/gpus");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static bool loopback(const char *node)
{
	return !strncmp(node, "127.", 4);
}

struct hello {
	char host[64], node[64];
	long long local;
	uint32_t rank;
};

static int hello_cmp(const void *pa, const void *pb)
{
	const struct hello *a = pa, *b = pb;
	int c = strcmp(a->host, b->host);

	if (c)
		return c;
	if (a->local != b->local)
		return a->local < b->local ? -1 : 1;
	return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* Every rank reads the same hellos and so refuses alike: all of them reach
 * the end barrier, and the job's keys go now rather than with the leases. */
static int hello_refused(struct launch *l, int err)
{
	xfer_rdzv_close(l->r);
	l->r = NULL;
	return err;
}

int launch_settle(const struct launch_opts *lo, struct launch *l, char *err, size_t errlen)
{
	int rc;

	memset(l, 0, sizeof(*l));
	l->local = UINT32_MAX;
	if ((rc = pick_ranks(lo, l, &l->given_local, err, errlen)) ||
	    (rc = pick_job(lo, l, err, errlen)) || (rc = pick_node(lo, l, err, errlen)))
		return rc;
	return 0;
}

int launch_join(const struct launch_opts *lo, uint32_t timeout_ms, struct launch *l, char *err,
		size_t errlen)
{
	const struct xfer_rdzv_blob *all;
	char hello[256];
	int64_t local = l->given_local;
	int rc, n;

	l->timeout_ms = timeout_ms;
	if (gethostname(l->host, sizeof(l->host) - 1))
		snprintf(l->host, sizeof(l->host), "?");
	struct xfer_rdzv_attr a = { .size = sizeof(a), .url = lo->url, .job = l->job, .rank = l->rank,
				    .world_size = l->world, .timeout_ms = timeout_ms,
				    .lease_ttl_s = lo->lease_s };

	rc = xfer_rdzv_open(&a, &l->r);
	if (rc) {
		snprintf(err, errlen, "rendezvous: %s", xfer_rdzv_last_error(NULL));
		l->r = NULL;
		return rc;
	}
	/* hello: "host node local" (local -1: not known) */
	n = snprintf(hello, sizeof(hello), "%s %s %lld", l->host, l->node, (long long)local);
	rc = launch_exchange(l, "hello", 0, NULL, hello, (size_t)n + 1, &all, err, errlen);
	if (rc)
		return rc;
	/* every rank checks every hello, so all refuse alike (hello_refused) */
	struct hello *hs = calloc(l->world, sizeof(*hs));
	uint32_t below = 0;   /* ranks of this host before this one */
	bool spans = false;

	if (!hs)
		return hello_refused(l, -ENOMEM);
	for (uint32_t r = 0; r < l->world; r++) {
		hs[r].rank = r;
		if (sscanf((const char *)all[r].data, "%63s %63s %lld", hs[r].host, hs[r].node,
			   &hs[r].local) != 3) {
			snprintf(err, errlen, "rank %u's hello is not 'host address local-rank'", r);
			free(hs);
			return hello_refused(l, -EBADMSG);
		}
		spans |= strcmp(hs[r].host, hs[0].host) != 0;
		below += r < l->rank && !strcmp(hs[r].host, l->host);
	}
	/* across hosts every rank must publish an address the others reach */
	for (uint32_t r = 0; spans && r < l->world; r++)
		if (loopback(hs[r].node)) {
			snprintf(err, errlen, "rank %u on host %s binds %s, which ranks on other hosts "
				 "cannot reach: give --node ADDR|IFACE", r, hs[r].host, hs[r].node);
			free(hs);
			return hello_refused(l, -EADDRNOTAVAIL);
		}
	/* one local rank once per host: sorted by host, local rank, rank */
	qsort(hs, l->world, sizeof(*hs), hello_cmp);
	for (uint32_t i = 1; i < l->world; i++)
		if (hs[i].local >= 0 && hs[i].local == hs[i - 1].local &&
		    !strcmp(hs[i].host, hs[i - 1].host)) {
			snprintf(err, errlen, "ranks %u and %u on host %s both have local rank %lld",
				 hs[i - 1].rank, hs[i].rank, hs[i].host, hs[i].local);
			free(hs);
			return hello_refused(l, -EINVAL);
		}
	free(hs);
	l->local = local >= 0 ? (uint32_t)local : below;
	l->gpu = (int)l->local < gpu_count() ? (int)l->local : -1;
	return 0;
}

int launch_open(const struct launch_opts *lo, uint32_t timeout_ms, struct launch *l, char *err,
		size_t errlen)
{
	int rc = launch_settle(lo, l, err, errlen);

	return rc ? rc : launch_join(lo, timeout_ms, l, err, errlen);
}

int launch_exchange(struct launch *l, const char *name, int status, const char *why,
		    const void *blob, size_t len, const struct xfer_rdzv_blob **all, char *err,
		    size_t errlen)
{
	/* [status: i32][payload]: a failed rank's payload is its text */
	size_t plen = status ? (why ? strlen(why) + 1 : 1) : len;
	uint8_t *msg = malloc(4 + plen);
	const struct xfer_rdzv_blob *got;
	int32_t st = status;
	int rc;

	if (!msg)
		return -ENOMEM;
	memcpy(msg, &st, 4);
	if (status)
		memcpy(msg + 4, why ? why : "", plen);
	else if (len)
		memcpy(msg + 4, blob, len);
	rc = xfer_rdzv_exchange(l->r, name, msg, 4 + plen, &got);
	free(msg);
	if (rc) {
		snprintf(err, errlen, "rendezvous: %s", xfer_rdzv_last_error(l->r));
		return rc;
	}
	/* the views the caller gets skip the status: kept in a per-name array
	 * that lives as long as the handle's blobs (freed at close) */
	struct xfer_rdzv_blob *v = calloc(l->world, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (uint32_t r = 0; r < l->world; r++) {
		if (got[r].len < 4) {
			snprintf(err, errlen, "exchange '%s': rank %u's blob is %zu bytes", name, r,
				 got[r].len);
			free(v);
			return -EBADMSG;
		}
		memcpy(&st, got[r].data, 4);
		if (st && status == 0) {
			const char *t = (const char *)got[r].data + 4;

			snprintf(err, errlen, "rank %u failed: %.*s", r, (int)(got[r].len - 4), t);
			free(v);
			return st < 0 ? st : -ECANCELED;
		}
		v[r].data = (const uint8_t *)got[r].data + 4;
		v[r].len = got[r].len - 4;
	}
	if (status) {
		free(v);
		return status;
	}
	/* one view per exchange: the tools exchange a handful of names */
	for (uint32_t i = 0; i < sizeof(l->views) / sizeof(l->views[0]); i++)
		if (!l->views[i]) {
			l->views[i] = v;
			*all = v;
			return 0;
		}
	free(v);
	snprintf(err, errlen, "exchange '%s': more exchanges than the tool keeps views of", name);
	return -ENOSPC;
}

int launch_barrier(struct launch *l, const char *name, char *err, size_t errlen)
{
	int rc = xfer_rdzv_barrier(l->r, name);

	if (rc)
		snprintf(err, errlen, "rendezvous: %s", xfer_rdzv_last_error(l->r));
	return rc;
}

int launch_close(struct launch *l, char *err, size_t errlen)
{
	int rc = 0;

	if (l->r) {
		rc = xfer_rdzv_close(l->r);
		if (rc && err)
			snprintf(err, errlen, "rendezvous: %s", xfer_rdzv_last_error(NULL));
		l->r = NULL;
	}
	for (uint32_t i = 0; i < sizeof(l->views) / sizeof(l->views[0]); i++) {
		free(l->views[i]);
		l->views[i] = NULL;
	}
	return rc;
}
