/* SPDX-License-Identifier: MIT */
/*
 * Engine lifetime: open the rails (one per NIC) through a backend, register
 * the immediate sink, start the worker; peers and their addresses; queries.
 */
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"
#include "struct_copy.h"

#define DEFAULT_MAX_INFLIGHT 1024
#define DEFAULT_IDLE_SPIN_US 2000

XFER_EXPORT void xfer_engine_attr_init_size(struct xfer_engine_attr *a, size_t size)
{
	const struct xfer_engine_attr def = {
		.size = sizeof(def),
		.provider = "auto",
		.num_rails = 1,
		.gpu = -1,
		.worker_cpu = -1,
	};

	if (!a)
		return;
	xfer_struct_init(a, size, &def, sizeof(def));
}

_Static_assert(XFER_ENGINE_ATTR_SIZE_VER0 == offsetof(struct xfer_engine_attr, provider),
	       "the attr's floor is size and flags");
_Static_assert(XFER_ENGINE_INFO_SIZE_VER0 == offsetof(struct xfer_engine_info, provider),
	       "the info's floor is size and num_rails");

/* Copy a caller's attr of any size (struct_copy.h): fields it does not have
 * keep xfer_engine_attr_init's defaults. */
static int attr_copy(struct xfer_engine_attr *dst, const struct xfer_engine_attr *src)
{
	int ret;

	xfer_engine_attr_init(dst);
	if (!src)
		return 0;
	ret = xfer_struct_copy_in(dst, sizeof(*dst), src, XFER_ENGINE_ATTR_SIZE_VER0);
	if (ret)
		return ret;
	if (dst->flags)
		return -EINVAL;
	if (dst->num_rails == 0)
		dst->num_rails = 1;
	if (dst->num_rails > XFER_MAX_RAILS)
		return -EINVAL;
	/* Bounds (xfer.h): past them a value is a mistake, not a tuning. */
	if (dst->max_inflight > XFER_INFLIGHT_MAX || dst->idle_spin_us > XFER_IDLE_SPIN_MAX_US ||
	    dst->gpu < -1 || dst->worker_cpu < -1)
		return -EINVAL;
	if (dst->worker_cpu >= 0) {
		cpu_set_t allowed;

		if (dst->worker_cpu >= CPU_SETSIZE ||
		    sched_getaffinity(0, sizeof(allowed), &allowed) ||
		    !CPU_ISSET(dst->worker_cpu, &allowed))
			return -EINVAL;   /* a core this thread may not run on */
	}
	if (!dst->provider)
		dst->provider = "auto";
	return 0;
}

static void rails_close(xfer_engine *e)
{
	for (uint32_t i = 0; i < e->num_rails; i++) {
		if (e->rail[i].r)
			e->ops->rail_close(e->rail[i].r);
		e->rail[i].r = NULL;
	}
}

/* The idle worker sleeps in epoll on the rails' wait fds (traffic wakes it)
 * and an eventfd (submissions wake it); without wait fds, on a futex. */
static void wait_set_open(xfer_engine *e)
{
	int nfd = 0;

	e->epfd = e->evfd = -1;
	if (!XFER_BACKEND_HAS(e->ops, wait_fd) || !XFER_BACKEND_HAS(e->ops, trywait))
		return;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->epfd < 0 || e->evfd < 0)
		goto none;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = e->evfd };

	if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &ev))
		goto none;
	for (uint32_t i = 0; i < e->num_rails; i++) {
		int fd = e->ops->wait_fd(e->rail[i].r);

		ev.data.fd = fd;
		if (fd >= 0 && epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
			nfd++;
	}
	if (nfd == 0)
		goto none;
	e->all_rails_wait = (uint32_t)nfd == e->num_rails;
	return;
none:
	if (e->epfd >= 0)
		close(e->epfd);
	if (e->evfd >= 0)
		close(e->evfd);
	e->epfd = e->evfd = -1;
}

static void wait_set_close(xfer_engine *e)
{
	if (e->epfd >= 0)
		close(e->epfd);
	if (e->evfd >= 0)
		close(e->evfd);
}

static int sink_register(xfer_engine *e)
{
	struct xfer_mr *mr = calloc(1, sizeof(*mr));
	int ret = 0;

	if (!mr)
		return -ENOMEM;
	e->sink_buf = aligned_alloc(64, XFER_SINK_SIZE);
	if (!e->sink_buf) {
		free(mr);
		return -ENOMEM;
	}
	memset(e->sink_buf, 0, XFER_SINK_SIZE);
	mr->e = e;
	mr->addr = e->sink_buf;
	mr->len = XFER_SINK_SIZE;
	for (uint32_t i = 0; i < e->num_rails && !ret; i++)
		ret = e->ops->mr_reg(e->rail[i].r, mr->addr, mr->len, XFER_MEM_HOST, -1, 0, 1,
				     &mr->rail[i]);
	e->sink = mr;
	return ret;
}

static void sink_release(xfer_engine *e)
{
	if (!e->sink)
		return;
	for (uint32_t i = 0; i < e->num_rails; i++)
		if (e->sink->rail[i].handle)
			e->ops->mr_dereg(e->rail[i].r, &e->sink->rail[i]);
	free(e->sink);
	free(e->sink_buf);
	e->sink = NULL;
}

static int build_self_addr(xfer_engine *e)
{
	struct xfer_addr *a = &e->self;

	memset(a, 0, sizeof(*a));
	a->engine_id = e->id;
	a->backend = e->ops->wire_id;
	a->num_rails = e->num_rails;
	memcpy(a->provider, e->provider, sizeof(a->provider) - 1);
	for (uint32_t i = 0; i < e->num_rails; i++) {
		size_t len = XFER_RAIL_ADDR_MAX;
		int ret = e->ops->rail_addr(e->rail[i].r, a->rail[i].bytes, &len);

		if (ret)
			return ret;
		a->rail[i].len = (uint16_t)len;
		a->rail[i].sink.rkey = e->sink->rail[i].rkey;
		a->rail[i].sink.raddr = e->sink->rail[i].raddr;
	}
	return 0;
}

/*
 * The stats page (struct xfer_ctx_stats): the module's context page when
 * /dev/xfer opens (debugfs shows it); else one page of a memfd named
 * "xfer-stats", kept open so that `xferctl stat` finds it through
 * /proc/PID/fd (same uid or root) and nothing is left behind when the
 * process dies; else (no memfd) plain memory, which only this process
 * sees. The page is zero when it comes; the version goes last (a
 * release store), so a reader that sees it sees the fields it promises;
 * before that (version 0, or a memfd still empty) xferctl skips the page
 * as an engine starting.
 */
_Static_assert(sizeof(struct xfer_ctx_stats) == XFER_CTX_STATS_SIZE_V2 &&
		       offsetof(struct xfer_ctx_stats, size) == XFER_CTX_STATS_SIZE_V1,
	       "the stats page only grows at its end");

static void stats_open(xfer_engine *e)
{
	e->stats_fd = -1;
	if (xfer_kmod_open(&e->kmod) == 0)
		e->stats = xfer_kmod_stats(e->kmod);
	if (!e->stats) {
		long pg = sysconf(_SC_PAGESIZE);
		size_t len = pg > (long)sizeof(struct xfer_ctx_stats) ? (size_t)pg
								       : sizeof(struct xfer_ctx_stats);
		int fd = memfd_create("xfer-stats", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		void *p = MAP_FAILED;

		/* Sealed at one page: a reader can rely on its size. */
		if (fd >= 0 && !ftruncate(fd, (off_t)len) &&
		    !fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
			p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			e->stats = p;
			e->stats_fd = fd;
			e->stats_len = len;
		} else if (fd >= 0) {
			close(fd);
		}
	}
	if (!e->stats)
		e->stats = &e->stats_local;
	e->stats->size = sizeof(struct xfer_ctx_stats);
	e->stats->pid = (uint32_t)getpid();
	e->stats->engine_id = e->id;
	e->stats->num_rails = e->num_rails;
	__atomic_store_n(&e->stats->version, XFER_CTX_STATS_VERSION, __ATOMIC_RELEASE);
}

static void stats_close(xfer_engine *e)
{
	if (e->stats_fd < 0)
		return;
	munmap(e->stats, e->stats_len);
	close(e->stats_fd);
	e->stats_fd = -1;
	e->stats = &e->stats_local;
}

/* A name onto the page: NUL-terminated, cut to fit. */
static void stats_name(char *dst, const char *src)
{
	size_t n = strnlen(src, XFER_CTX_STATS_NAME_LEN - 1);

	memcpy(dst, src, n);
	dst[n] = 0;
}

XFER_EXPORT int xfer_engine_create(const struct xfer_engine_attr *attr, xfer_engine **out)
{
	struct xfer_topo *topo = NULL;   /* loaded if NIC choice or placement asks */
	xfer_engine *e;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	ret = attr_copy(&e->attr, attr);
	if (ret)
		goto err_free;
	if (e->attr.gpu >= 0 && xfer_topo_gpu_exists(&topo, e->attr.gpu) == 0) {
		ret = -ENODEV;   /* no such GPU here */
		goto err_free;
	}
	e->ops = xfer_backend_for(e->attr.provider);
	if (!e->ops || !e->ops->rail_open) {
		ret = -EOPNOTSUPP;
		goto err_free;
	}
	if (getrandom(&e->id, sizeof(e->id), 0) != sizeof(e->id))
		e->id = xfer_now_ns() ^ (uint64_t)(uintptr_t)e;
	e->num_rails = e->attr.num_rails;
	e->timeout_ms = e->attr.peer_timeout_ms ? e->attr.peer_timeout_ms : XFER_DEFAULT_TIMEOUT_MS;
	e->timeout_ns = (uint64_t)e->timeout_ms * 1000000ull;
	e->stripe_threshold = e->attr.stripe_threshold ? e->attr.stripe_threshold
						       : XFER_DEFAULT_STRIPE_THRESHOLD;
	if (!e->attr.idle_spin_us)
		e->attr.idle_spin_us = DEFAULT_IDLE_SPIN_US;
	if (!e->attr.max_inflight)
		e->attr.max_inflight = DEFAULT_MAX_INFLIGHT;
	pthread_mutex_init(&e->peer_lock, NULL);
	xfer_mpsc_init(&e->q);

	stats_open(e);

	/* Devices named by the caller, one per rail. */
	char devbuf[512] = "", *dev[XFER_MAX_RAILS] = { 0 }, *save = NULL;
	if (e->attr.devices) {
		snprintf(devbuf, sizeof(devbuf), "%s", e->attr.devices);
		char *tok = strtok_r(devbuf, ",", &save);
		for (uint32_t i = 0; tok && i < XFER_MAX_RAILS; i++, tok = strtok_r(NULL, ",", &save))
			dev[i] = tok;
	}
	/* None named but a GPU given: the NICs nearest it, when the topology
	 * shows enough of them. */
	char near[XFER_MAX_RAILS][XFER_TOPO_NAME];
	int nnear = 0;

	if (!e->attr.devices && e->attr.gpu >= 0) {
		nnear = xfer_topo_nics_near_gpu(&topo, e->attr.gpu, near, XFER_MAX_RAILS);
		if (nnear < (int)e->num_rails)
			nnear = 0;
	}
	e->max_msg = UINT64_MAX;
	for (uint32_t i = 0; i < e->num_rails; i++) {
		struct xfer_rail_attr ra = {
			.provider = e->attr.provider,
			.node = e->attr.node,
			.device = dev[i] ? dev[i] : nnear ? near[i] : NULL,
			.index = i,
			.num_rails = e->num_rails,
			.max_inflight = e->attr.max_inflight,
		};
		uint64_t mm = 0;

		ret = e->ops->rail_open(&ra, &e->rail[i].r);
		if (ret && i == 0 && nnear) {
			/* a provider without those NICs (shm, tcp): its own order */
			nnear = 0;
			ra.device = NULL;
			ret = e->ops->rail_open(&ra, &e->rail[i].r);
		}
		if (ret)
			goto err_rails;
		e->ops->rail_info(e->rail[i].r, i == 0 ? e->provider : (char[32]){ 0 }, 32,
				  e->rail_names[i], sizeof(e->rail_names[i]), &mm);
		if (mm && mm < e->max_msg)
			e->max_msg = mm;
		e->rail[i].max_inflight = e->attr.max_inflight;
		e->rail[i].st = &e->stats->rail[i];
		stats_name(e->stats->rail_name[i], e->rail_names[i]);
	}
	stats_name(e->stats->provider, e->provider);
	if (e->max_msg > (1ull << 30))
		e->max_msg = 1ull << 30;
	wait_set_open(e);
	ret = sink_register(e);
	if (ret)
		goto err_sink;
	ret = build_self_addr(e);
	if (!ret)
		ret = xfer_sh_create(e);   /* the address's same-host section */
	if (ret)
		goto err_sink;

	/* Placement matters next to a GPU or a real NIC; loopback providers
	 * have neither. */
	bool loopback = XFER_BACKEND_HAS(e->ops, loopback) && e->ops->loopback(e->provider);
	e->worker_cpu = e->attr.worker_cpu >= 0 ? e->attr.worker_cpu
			: xfer_topo_worker_cpu(&topo, e->attr.gpu, loopback ? NULL : e->rail_names[0]);
	xfer_topo_free(topo);
	topo = NULL;
	ret = -pthread_create(&e->worker, NULL, xfer_worker_main, e);
	if (ret)
		goto err_sink;
	*out = e;
	return 0;

err_sink:
	xfer_sh_destroy(e);
	sink_release(e);
	wait_set_close(e);
err_rails:
	rails_close(e);
	stats_close(e);
	xfer_kmod_close(e->kmod);
err_free:
	xfer_topo_free(topo);
	free(e);
	return ret;
}

XFER_EXPORT void xfer_engine_destroy(xfer_engine *e)
{
	struct xfer_cmd c = { .kind = CMD_STOP };

	if (!e)
		return;
	if (xfer_worker_self == e) {
		/* From a callback on the worker: the worker cannot join itself,
		 * and the callback's caller still uses the engine. Stop the loop;
		 * the worker frees the engine when it has unwound (worker.c).
		 * Already stopping: a destroy is under way (this callback hears
		 * its -ECANCELED), which frees the engine itself. */
		if (atomic_load(&e->stopping))
			return;
		e->destroy_deferred = true;
		atomic_store(&e->stopping, true);
		return;
	}
	xfer_cmd_run(e, &c);
	pthread_join(e->worker, NULL);
	xfer_engine_free(e);
}

/* Everything but the worker, which has stopped (joined, or is the caller). */
void xfer_engine_free(xfer_engine *e)
{
	xfer_sh_destroy(e);
	sink_release(e);
	wait_set_close(e);
	rails_close(e);
	/* pieces still referenced by the closed rails go with the slabs */
	while (e->piece_slabs) {
		struct xfer_piece *slab = e->piece_slabs;

		e->piece_slabs = slab->next_free;
		free(slab);
	}
	free(e->imm_ready);
	free(e->imm_ready_op);
	stats_close(e);
	xfer_kmod_close(e->kmod);
	xfer_counters_free(e);
	pthread_mutex_destroy(&e->peer_lock);
	free(e);
}

XFER_EXPORT int xfer_engine_address(xfer_engine *e, void *buf, size_t *len)
{
	if (!e || !len)
		return -EINVAL;
	return xfer_addr_encode(&e->self, buf, len);
}

XFER_EXPORT int xfer_engine_add_peer(xfer_engine *e, const void *addr, size_t len, uint32_t *peer)
{
	struct xfer_addr *a;
	struct xfer_cmd c = { .kind = CMD_ADD_PEER };
	uint32_t idx;
	int ret;

	if (!e || !addr || !peer)
		return -EINVAL;
	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	ret = xfer_addr_decode(addr, len, a);
	if (ret)
		goto out;
	if (a->backend != e->self.backend || strcmp(a->provider, e->self.provider) != 0) {
		ret = -EPROTO;   /* a peer on another provider cannot be reached */
		goto out;
	}
	/* A failed add gives its slot back (the worker undid it), so that
	 * adds of an unreachable address cannot use up the table. */
	pthread_mutex_lock(&e->peer_lock);
	if (e->num_free_peers) {
		idx = e->free_peers[--e->num_free_peers];
	} else if (e->num_peers < XFER_MAX_PEERS) {
		idx = e->num_peers++;
	} else {
		pthread_mutex_unlock(&e->peer_lock);
		ret = -ENOSPC;
		goto out;
	}
	pthread_mutex_unlock(&e->peer_lock);

	c.u.add_peer.peer = idx;
	c.u.add_peer.addr = a;
	ret = xfer_cmd_run(e, &c);
	if (!ret) {
		*peer = idx;
	} else {
		pthread_mutex_lock(&e->peer_lock);
		e->free_peers[e->num_free_peers++] = idx;
		pthread_mutex_unlock(&e->peer_lock);
	}
out:
	free(a);
	return ret;
}

/* Worker side of add_peer: rail k talks to the peer's rail k mod its count. */
int xfer_worker_add_peer(xfer_engine *e, uint32_t idx, const struct xfer_addr *a)
{
	struct xfer_peer *p = &e->peers[idx];
	int ret = xfer_sh_add_peer(e, idx, &a->host);

	for (uint32_t k = 0; k < e->num_rails && !ret; k++) {
		uint32_t pr = k % a->num_rails;

		ret = e->ops->rail_add_peer(e->rail[k].r, idx, a->rail[pr].bytes, a->rail[pr].len);
	}
	if (ret) {
		/* Undo the rails that took it: the slot is free for the next add
		 * and its index was never given out. */
		for (uint32_t k = 0; k < e->num_rails; k++)
			e->ops->rail_remove_peer(e->rail[k].r, idx);
		p->used = false;
		return ret;
	}
	p->last_done_ns = 0;
	p->engine_id = a->engine_id;
	p->num_rails = a->num_rails;
	for (uint32_t k = 0; k < a->num_rails; k++)
		p->sink[k] = a->rail[k].sink;
	atomic_store(&p->status, ret);
	p->used = true;
	__atomic_store_n(&e->stats->peers_up, e->stats->peers_up + 1, __ATOMIC_RELAXED);
	return ret;
}

XFER_EXPORT int xfer_peer_status(xfer_engine *e, uint32_t peer)
{
	if (!e || peer >= XFER_MAX_PEERS || !e->peers[peer].used)
		return -EINVAL;
	return atomic_load(&e->peers[peer].status);
}

/* Filled in a struct of our own, then copied out as far as the caller's
 * size reaches (struct_copy.h). */
XFER_EXPORT int xfer_engine_query(xfer_engine *e, struct xfer_engine_info *uinfo)
{
	struct xfer_engine_info k = { .size = sizeof(k) }, *info = &k;

	if (!e || !uinfo)
		return -EINVAL;
	info->num_rails = e->num_rails;
	snprintf(info->provider, sizeof(info->provider), "%s", e->provider);
	for (uint32_t i = 0; i < e->num_rails; i++)
		snprintf(info->rail_names[i], sizeof(info->rail_names[i]), "%s", e->rail_names[i]);
	info->worker_cpu = e->worker_cpu;
	info->imm_bits = 32;
	info->max_msg_size = e->max_msg;
	return xfer_struct_copy_out(uinfo, &k, sizeof(k), XFER_ENGINE_INFO_SIZE_VER0);
}

XFER_EXPORT int xfer_engine_stats(xfer_engine *e, uint32_t rail, struct xfer_rail_stats *st)
{
	const struct xfer_ctx_stats_rail *d;

	if (!e || !st || rail >= e->num_rails)
		return -EINVAL;
	d = &e->stats->rail[rail];
	st->bytes_posted = __atomic_load_n(&d->bytes_posted, __ATOMIC_RELAXED);
	st->bytes_completed = __atomic_load_n(&d->bytes_completed, __ATOMIC_RELAXED);
	st->ops_posted = __atomic_load_n(&d->ops_posted, __ATOMIC_RELAXED);
	st->ops_completed = __atomic_load_n(&d->ops_completed, __ATOMIC_RELAXED);
	st->ops_failed = __atomic_load_n(&d->ops_failed, __ATOMIC_RELAXED);
	st->imm_received = __atomic_load_n(&d->imm_received, __ATOMIC_RELAXED);
	return 0;
}

int xfer_cmd_run(xfer_engine *e, struct xfer_cmd *c)
{
	c->qn.kind = QNODE_CMD;
	atomic_store(&c->done, 0);
	if (xfer_worker_self == e) {
		/* From a callback on the worker itself: no queue, no wait. */
		return xfer_worker_exec_cmd(e, c);
	}
	/* An async command belongs to the worker once pushed: read it first. */
	bool async = c->async;

	xfer_mpsc_push(&e->q, &c->qn);
	xfer_engine_kick(e);
	if (async)
		return 0;
	while (!atomic_load_explicit(&c->done, memory_order_acquire))
		xfer_futex_wait(&c->done, 0, -1);
	return c->result;
}
