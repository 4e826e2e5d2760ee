/* SPDX-License-Identifier: MIT */
/*
 * Peers on the same host, whatever the backend: each engine publishes a
 * small shared page (a sealed memfd) that peers on this host map through
 * /proc/PID/fd/N. It holds
 *  - who we are (magic, version, nonce, pid, the pid's start time): a peer
 *    checks all of it before it trusts the page;
 *  - a doorbell: a shared futex word and a "sleeping" flag. An idle worker
 *    whose rails have no wait fd (shm, local) sleeps on it; a peer that
 *    posted work needing our progress rings it, but only when the flag
 *    says we sleep (one atomic load per batch on its hot path);
 *  - a region table: the regions registered for remote write, each with a
 *    sequence word (a seqlock: odd while the entry changes). On backends
 *    where no NIC checks an rkey (shm, local) the initiator checks each
 *    piece against it before posting (xfer_sh_piece_ok).
 * The peer's pidfd tells the worker that the peer died without a system
 * call per post: every pidfd sits in one epoll set, read once per timeout
 * scan (1 ms) and once per batch of submissions (xfer_sh_reap_dead).
 *
 * Only the worker thread touches struct xfer_samehost after creation,
 * except the doorbell of our own page (xfer_sh_wake, any thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define SH_MAGIC 0x48534658u      /* "XFSH" */
#define SH_VERSION 1u
#define SH_REGIONS 2048u          /* live remote-write regions per engine */
#define SH_PROBE 32u              /* slots an entry may sit past its home */

struct xfer_sh_region {
	_Atomic uint64_t seq;     /* even: stable; odd: being rewritten */
	_Atomic uint64_t region_id;   /* 0: free */
	_Atomic uint64_t base;
	_Atomic uint64_t len;
};

struct xfer_sh_page {
	uint32_t magic, version;
	uint64_t nonce;
	int32_t pid;
	uint32_t size;            /* sizeof(struct xfer_sh_page) */
	uint64_t start_time;
	uint8_t pad0[32];
	_Atomic uint32_t bell;    /* shared futex word: bumped to wake the worker */
	_Atomic uint32_t sleeping;   /* the worker waits on bell */
	uint8_t pad1[56];
	struct xfer_sh_region region[SH_REGIONS];
};

_Static_assert(sizeof(struct xfer_sh_page) % 64 == 0, "page layout");

#define SH_SIZE sizeof(struct xfer_sh_page)

struct xfer_sh_peer {
	struct xfer_sh_page *page;   /* mapped read-write: its doorbell */
	int pidfd;                   /* -1: not watched (down, or none) */
};

struct xfer_samehost {
	int memfd;
	struct xfer_sh_page *self;
	int epfd;                    /* the peers' pidfds */
	uint32_t watched;            /* pidfds in epfd */
	bool bell;                   /* the idle worker sleeps on our doorbell */
	bool ring_data;              /* data, not only immediates, needs the target's progress */
	bool check;                  /* no NIC checks rkeys: check peers' region tables */
	uint8_t boot_id[16];
	uint64_t pidns;
	struct xfer_sh_peer peer[XFER_MAX_PEERS];
};

/* ---- identity ------------------------------------------------------- */

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int read_boot_id(uint8_t id[16])
{
	char buf[64];
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	int k = 0;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	for (ssize_t i = 0; i < n && k < 32; i++) {
		int v = hexval(buf[i]);

		if (v < 0)
			continue;   /* the dashes and the newline */
		if (k % 2 == 0)
			id[k / 2] = (uint8_t)(v << 4);
		else
			id[k / 2] |= (uint8_t)v;
		k++;
	}
	return k == 32 ? 0 : -EIO;
}

/* Start time of pid (field 22 of /proc/PID/stat, after the comm in
 * parentheses, which may itself hold spaces and parentheses), and its
 * state letter; 0 when it cannot be read. */
static uint64_t proc_start_time(int32_t pid, char *state)
{
	char path[64], buf[1024];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');

	if (!p || p[1] != ' ')
		return 0;
	p += 2;   /* field 3, the state */
	if (state)
		*state = *p;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

/* ---- our page ------------------------------------------------------- */

int xfer_sh_create(xfer_engine *e)
{
	struct xfer_samehost *s = calloc(1, sizeof(*s));
	struct xfer_addr_host *h = &e->self.host;
	struct stat st;
	int ret;

	if (!s)
		return -ENOMEM;
	s->epfd = -1;
	s->memfd = memfd_create("xfer-samehost", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->memfd < 0) {
		ret = -errno;
		goto err;
	}
	/* Sealed at its size: a peer that mapped it can never be made to fault
	 * (SIGBUS) by our shrinking it, nor we by its growing it. */
	if (ftruncate(s->memfd, SH_SIZE) ||
	    fcntl(s->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		ret = -errno;
		goto err;
	}
	s->self = mmap(NULL, SH_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
	if (s->self == MAP_FAILED) {
		s->self = NULL;
		ret = -errno;
		goto err;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		ret = -errno;
		goto err;
	}
	for (uint32_t i = 0; i < XFER_MAX_PEERS; i++)
		s->peer[i].pidfd = -1;

	struct xfer_sh_page *pg = s->self;
	bool known = read_boot_id(s->boot_id) == 0 && stat("/proc/self/ns/pid", &st) == 0;

	pg->nonce = e->id ? e->id : 1;
	pg->pid = (int32_t)getpid();
	pg->size = (uint32_t)SH_SIZE;
	pg->start_time = known ? proc_start_time(pg->pid, NULL) : 0;
	if (!pg->start_time) {
		/* No /proc to say who we are: an identity no peer shares, so
		 * every peer is remote to us and we to it (no same-host help;
		 * the local backend needs /proc anyway). */
		if (getrandom(s->boot_id, sizeof(s->boot_id), 0) != sizeof(s->boot_id))
			memset(s->boot_id, 0x5a, sizeof(s->boot_id));
		s->boot_id[0] |= 1;
		st.st_ino = 1;
		pg->start_time = 1;
	}
	s->pidns = (uint64_t)st.st_ino;
	pg->version = SH_VERSION;
	atomic_thread_fence(memory_order_release);
	pg->magic = SH_MAGIC;

	/* Rails without a wait fd (shm, local) cannot wake an idle worker:
	 * it sleeps on the doorbell, and peers ring it. Where only immediates
	 * need our progress (local: data lands by process_vm_writev), peers
	 * ring only for those. */
	s->bell = e->epfd < 0;
	s->ring_data = e->ops->wire_id != XFER_WIRE_LOCAL;
	s->check = !(XFER_BACKEND_HAS(e->ops, checks_rkeys) && e->ops->checks_rkeys(e->provider));

	memcpy(h->boot_id, s->boot_id, sizeof(h->boot_id));
	h->pidns = s->pidns;
	h->pid = pg->pid;
	h->fd = s->memfd;
	h->start_time = pg->start_time;
	h->nonce = pg->nonce;
	e->sh = s;
	return 0;
err:
	if (s->self)
		munmap(s->self, SH_SIZE);
	if (s->memfd >= 0)
		close(s->memfd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s);
	return ret;
}

void xfer_sh_destroy(xfer_engine *e)
{
	struct xfer_samehost *s = e->sh;

	if (!s)
		return;
	for (uint32_t i = 0; i < XFER_MAX_PEERS; i++)
		xfer_sh_remove_peer(e, i);
	close(s->epfd);
	munmap(s->self, SH_SIZE);
	close(s->memfd);
	free(s);
	e->sh = NULL;
}

/* ---- peers ---------------------------------------------------------- */

void xfer_sh_remove_peer(xfer_engine *e, uint32_t peer)
{
	struct xfer_sh_peer *p = e->sh && peer < XFER_MAX_PEERS ? &e->sh->peer[peer] : NULL;

	if (!p)
		return;
	if (p->pidfd >= 0) {
		close(p->pidfd);   /* leaves the epoll set with it */
		e->sh->watched--;
	}
	if (p->page)
		munmap(p->page, SH_SIZE);
	p->page = NULL;
	p->pidfd = -1;
}

/* Down: stop watching it (its pidfd would report the death again and
 * again); its page stays mapped until the slot is reused or the engine
 * goes, as nothing posts to a peer that is down. */
void xfer_sh_peer_down(xfer_engine *e, uint32_t peer)
{
	struct xfer_sh_peer *p = e->sh && peer < XFER_MAX_PEERS ? &e->sh->peer[peer] : NULL;

	if (p && p->pidfd >= 0) {
		close(p->pidfd);
		p->pidfd = -1;
		e->sh->watched--;
	}
}

/* Map the peer's page and check it before reading anything in it: the
 * file must be exactly a page's size and sealed against changing size
 * (else a peer, or an address naming some other fd of it, could make us
 * fault), then hold our magic, version and the address's nonce and pid. */
static int page_open(const struct xfer_addr_host *h, struct xfer_sh_page **out)
{
	char path[64];
	struct stat st;
	int fd, seals;
	struct xfer_sh_page *pg;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)h->pid, (int)h->fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ECONNREFUSED : -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != SH_SIZE) {
		close(fd);
		return -EPROTO;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		close(fd);
		return -EPROTO;
	}
	pg = mmap(NULL, SH_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (pg == MAP_FAILED)
		return -errno;
	if (pg->magic != SH_MAGIC || pg->version != SH_VERSION || pg->size != SH_SIZE ||
	    pg->nonce != h->nonce || pg->pid != h->pid || pg->start_time != h->start_time) {
		munmap(pg, SH_SIZE);
		return -ECONNREFUSED;   /* that fd is not this engine's page (now) */
	}
	*out = pg;
	return 0;
}

int xfer_sh_add_peer(xfer_engine *e, uint32_t peer, const struct xfer_addr_host *h)
{
	struct xfer_samehost *s = e->sh;
	struct xfer_sh_peer *p;
	struct xfer_sh_page *pg = NULL;
	int pidfd, ret;

	if (!s || peer >= XFER_MAX_PEERS)
		return -EINVAL;
	p = &s->peer[peer];
	xfer_sh_remove_peer(e, peer);
	if (memcmp(h->boot_id, s->boot_id, sizeof(s->boot_id)) != 0 || h->pidns != s->pidns)
		return 0;   /* another host (or pid namespace): nothing to share */
	/* The pidfd first, then the page through the pid: a pid reused in
	 * between names a process whose fd does not hold our nonce. */
	pidfd = (int)syscall(SYS_pidfd_open, h->pid, 0);
	if (pidfd < 0) {
		if (errno == ESRCH)
			return -ECONNREFUSED;   /* gone already */
		return 0;   /* a kernel without pidfds: no same-host help */
	}
	ret = page_open(h, &pg);
	if (ret == -EACCES || ret == -EPERM) {
		/* Not ours to reach (another user, Yama): peers over a network
		 * provider still talk, without same-host help. */
		close(pidfd);
		return s->check ? -EACCES : 0;
	}
	/* The process behind the pidfd is the one that made the page. */
	if (!ret && proc_start_time(h->pid, NULL) != h->start_time)
		ret = -ECONNREFUSED;
	if (ret) {
		close(pidfd);
		return ret;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = peer };

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, pidfd, &ev)) {
		ret = -errno;
		munmap(pg, SH_SIZE);
		close(pidfd);
		return ret;
	}
	p->page = pg;
	p->pidfd = pidfd;
	s->watched++;
	return 0;
}

int xfer_sh_reap_dead(xfer_engine *e, uint32_t *dead, int max)
{
	struct epoll_event ev[16];
	int n, k = 0;

	if (!e->sh || !e->sh->watched)
		return 0;
	if (max > (int)ARRAY_SIZE(ev))
		max = (int)ARRAY_SIZE(ev);
	n = epoll_wait(e->sh->epfd, ev, max, 0);
	for (int i = 0; i < n; i++)
		if (ev[i].data.u32 < XFER_MAX_PEERS)
			dead[k++] = ev[i].data.u32;
	return k;
}

/* ---- the doorbell ----------------------------------------------------- */

static void futex_wake_shared(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void xfer_sh_ring(xfer_engine *e, uint32_t peer, const struct xfer_wr *wrs, int n)
{
	struct xfer_samehost *s = e->sh;
	struct xfer_sh_page *pg;

	if (!s || !s->bell || !(pg = s->peer[peer].page))
		return;
	if (!s->ring_data) {
		int i = 0;

		while (i < n && !wrs[i].has_imm)
			i++;
		if (i == n)
			return;   /* plain data: it lands without the peer */
	}
	/* Our posts are visible before we read its flag; it sets the flag
	 * before its last look for work: one of us sees the other. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&pg->sleeping, memory_order_relaxed)) {
		atomic_fetch_add(&pg->bell, 1);
		futex_wake_shared(&pg->bell);
	}
}

bool xfer_sh_uses_bell(const xfer_engine *e)
{
	return e->sh && e->sh->bell;
}

uint32_t xfer_sh_sleep_begin(xfer_engine *e)
{
	struct xfer_sh_page *pg = e->sh->self;
	uint32_t seen = atomic_load(&pg->bell);

	atomic_store(&pg->sleeping, 1);
	return seen;
}

bool xfer_sh_sleep(xfer_engine *e, uint32_t seen, uint64_t ns)
{
	struct xfer_sh_page *pg = e->sh->self;
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
			       .tv_nsec = (long)(ns % 1000000000u) };

	if (ns)
		syscall(SYS_futex, (uint32_t *)&pg->bell, FUTEX_WAIT, seen, &ts, NULL, 0);
	atomic_store(&pg->sleeping, 0);
	return atomic_load(&pg->bell) != seen;
}

void xfer_sh_wake(xfer_engine *e)
{
	struct xfer_sh_page *pg = e->sh->self;

	atomic_fetch_add(&pg->bell, 1);
	futex_wake_shared(&pg->bell);
}

/* ---- the region table ---------------------------------------------------- */

int xfer_sh_region_add(xfer_engine *e, const struct xfer_mr *mr)
{
	struct xfer_samehost *s = e->sh;

	if (!s || !(mr->flags & XFER_MR_REMOTE_WRITE) || !mr->region_id)
		return 0;
	for (uint32_t k = 0; k < SH_PROBE; k++) {
		struct xfer_sh_region *r = &s->self->region[(mr->region_id + k) % SH_REGIONS];
		uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);

		if (atomic_load_explicit(&r->region_id, memory_order_relaxed))
			continue;
		atomic_store_explicit(&r->seq, seq + 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		atomic_store_explicit(&r->base, mr->rail[0].raddr, memory_order_relaxed);
		atomic_store_explicit(&r->len, mr->len, memory_order_relaxed);
		atomic_store_explicit(&r->region_id, mr->region_id, memory_order_relaxed);
		atomic_store_explicit(&r->seq, seq + 2, memory_order_release);
		return 0;
	}
	/* Full: where peers check the table, a region missing from it could
	 * not be written at all; refuse the registration loudly. */
	return s->check ? -ENOSPC : 0;
}

/* Before the memory may be freed: from here on no peer's check passes. */
void xfer_sh_region_del(xfer_engine *e, const struct xfer_mr *mr)
{
	struct xfer_samehost *s = e->sh;

	if (!s || !(mr->flags & XFER_MR_REMOTE_WRITE) || !mr->region_id)
		return;
	for (uint32_t k = 0; k < SH_PROBE; k++) {
		struct xfer_sh_region *r = &s->self->region[(mr->region_id + k) % SH_REGIONS];

		if (atomic_load_explicit(&r->region_id, memory_order_relaxed) != mr->region_id)
			continue;
		uint64_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);

		atomic_store_explicit(&r->seq, seq + 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		atomic_store_explicit(&r->region_id, 0, memory_order_relaxed);
		atomic_store_explicit(&r->len, 0, memory_order_relaxed);
		atomic_store_explicit(&r->base, 0, memory_order_relaxed);
		atomic_store_explicit(&r->seq, seq + 2, memory_order_release);
		return;
	}
}

int xfer_sh_piece_ok(xfer_engine *e, uint32_t peer, const struct xfer_rmr *dst,
		     const struct xfer_wr *wr)
{
	struct xfer_samehost *s = e->sh;
	struct xfer_sh_page *pg;
	uint64_t id = dst->d.region_id;

	if (!s || !s->check || !wr->len || !(pg = s->peer[peer].page))
		return 0;
	for (uint32_t k = 0; k < SH_PROBE; k++) {
		struct xfer_sh_region *r = &pg->region[(id + k) % SH_REGIONS];
		uint64_t seq, base, len, rid;

		for (int tries = 0;; tries++) {
			seq = atomic_load_explicit(&r->seq, memory_order_acquire);
			rid = atomic_load_explicit(&r->region_id, memory_order_relaxed);
			base = atomic_load_explicit(&r->base, memory_order_relaxed);
			len = atomic_load_explicit(&r->len, memory_order_relaxed);
			atomic_thread_fence(memory_order_acquire);
			if (!(seq & 1) && atomic_load_explicit(&r->seq, memory_order_relaxed) == seq)
				break;
			if (tries > 1000)
				return -EACCES;   /* a peer that never finishes a write */
		}
		if (rid != id)
			continue;
		/* inside [base, base + len), without overflow */
		if (wr->raddr < base || wr->raddr - base > len || wr->len > len - (wr->raddr - base))
			return -EACCES;
		return 0;
	}
	return -EACCES;   /* not registered (any more): a stale or forged descriptor */
}
