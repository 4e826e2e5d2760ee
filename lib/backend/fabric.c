/* SPDX-License-Identifier: MIT */
/*
 * The libfabric backend: one RDM endpoint per rail (EFA on AWS; shm,
 * tcp;ofi_rxm and sockets for development). Each rail has its own fabric,
 * domain, address vector and completion queue so that rails stand for
 * separate NICs even on loopback providers.
 *
 * All calls come from the engine's worker thread (FI_THREAD_DOMAIN).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "backend.h"
#include "xfer_fabric.h"
#include "xfer_fabric_load.h"
#include "clock.h"
#include "compiler.h"

#define FAB_VERSION FI_VERSION(1, 14)
#define FAB_CQ_SIZE 4096
#define SHM_INJECT_SIZE 4096    /* shm 1.17's SMR_INJECT_SIZE */

/* Per posted write: the fi_context2 libfabric needs plus our context. */
struct fab_slot {
	struct fi_context2 fctx;
	void *user;
	uint32_t peer;
	struct fab_slot *next_free;
};

/* Slots come in chunks that live as long as the rail: a write to a peer
 * removed from the address vector may be completed by the provider late or
 * never, so its slot can neither be reused nor freed before the rail closes;
 * new chunks replace what such writes hold. */
#define FAB_SLOT_CHUNK 256
struct fab_chunk {
	struct fab_chunk *next;
	struct fab_slot slot[FAB_SLOT_CHUNK];
};

struct xfer_rail {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_ep *ep;
	struct fid_av *av;
	struct fid_cq *cq;
	bool virt_addr, prov_key, mr_endpoint;
	bool delivery_ok;       /* the provider accepts FI_DELIVERY_COMPLETE */
	/* ... also on a zero-byte write: libfabric 1.17's shm never completes
	 * one (an immediate alone) with that flag, so there it goes without */
	bool delivery_zero_ok;
	bool small_in_order;    /* see fab_post: small writes need no delivery-complete */
	int wait_fd;            /* the CQ's wait fd, or -1 */
	uint64_t next_key;
	fi_addr_t peers[XFER_MAX_PEERS];
	bool posted[XFER_MAX_PEERS];   /* work was ever posted to the peer (see remove) */
	uint32_t inflight[XFER_MAX_PEERS];   /* posted and not completed */
	bool stranded[XFER_MAX_PEERS];       /* removed with writes in flight (see fab_close) */
	bool rxm;               /* tcp;ofi_rxm or verbs;ofi_rxm */
	struct fab_chunk *chunks;
	struct fab_slot *free_slots;
	uint64_t max_msg;
};

static int fab_err(int ret)
{
	/* libfabric's FI_E* equal errno values for the common ones */
	if (ret > 0)
		ret = -ret;
	if (ret == -FI_EAGAIN)
		return -EAGAIN;
	return ret < -4096 ? -EIO : ret;
}

/* The hints every xfer endpoint is opened with (xfer_fabric.h). */
XFER_EXPORT struct fi_info *xfer_fabric_hints(const char *prov)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->ep_attr->type = FI_EP_RDM;
	h->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				  FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->tx_attr->op_flags = FI_COMPLETION;
	if (prov && *prov)
		h->fabric_attr->prov_name = strdup(prov);
	return h;
}

/* A domain is named by its NIC: "rdmap16s27" picks EFA's "rdmap16s27-rdm"
 * (the ibverbs name, as the topology and operators know the NIC). */
static bool domain_is(const char *domain, const char *device)
{
	size_t n = strlen(device);

	return strncmp(domain, device, n) == 0 && (domain[n] == '\0' || domain[n] == '-');
}

/* The index-th distinct domain (NIC) the provider offers, or the one named. */
static struct fi_info *pick_domain(struct fi_info *list, const char *device, uint32_t index)
{
	const char *seen[64];
	uint32_t nseen = 0;

	for (struct fi_info *i = list; i; i = i->next) {
		const char *name = i->domain_attr->name ? i->domain_attr->name : "";
		bool dup = false;

		if (device)
			if (domain_is(name, device))
				return i;
		for (uint32_t k = 0; k < nseen; k++)
			dup |= strcmp(seen[k], name) == 0;
		if (dup || device)
			continue;
		if (nseen == index)
			return i;
		if (nseen < ARRAY_SIZE(seen))
			seen[nseen++] = name;
	}
	/* Loopback providers offer one domain: every rail opens it again. */
	return device ? NULL : list;
}

static int try_getinfo(const char *prov, const struct xfer_rail_attr *a, struct fi_info **out)
{
	struct fi_info *h, *list = NULL;
	uint64_t flags = 0;
	const char *node = NULL;
	int ret = xfer_fabric_load();

	if (ret)
		return ret;   /* no libfabric on this node: -ELIBACC, not -ENOMEM */
	h = xfer_fabric_hints(prov);
	if (!h)
		return -ENOMEM;
	if (a->node && strncmp(prov, "shm", 3) != 0 && strncmp(prov, "efa", 3) != 0) {
		node = a->node;
		flags = FI_SOURCE;
	}
	ret = fi_getinfo(FAB_VERSION, node, NULL, flags, h, &list);
	fi_freeinfo(h);
	/* No provider of that name here: libfabric says -FI_ENODATA; the API
	 * promises -ENODEV (xfer_engine_create(3)). */
	if (ret == -FI_ENODATA)
		return -ENODEV;
	if (ret)
		return fab_err(ret);
	struct fi_info *pick = pick_domain(list, a->device, a->index);
	if (!pick) {
		fi_freeinfo(list);
		return -ENODEV;
	}
	*out = fi_dupinfo(pick);
	fi_freeinfo(list);
	return *out ? 0 : -ENOMEM;
}

static int fab_poll(struct xfer_rail *r, struct xfer_cqe *out, int n);

/*
 * libfabric 1.17's rxm crashes (SIGSEGV in fi_close of the endpoint) when a
 * connection still holds writes to a peer that stopped answering without
 * closing it: a host's cable cut, its socket retransmitting for minutes
 * (tests/cluster/run.sh). At close, the completions still to come from
 * removed peers get 200 ms to arrive (a peer that died, its socket reset,
 * fails its writes at once); if some never do, the rail is left open,
 * whole: it makes no progress once the engine's worker is gone, and the
 * process's exit takes it. True when it must be left.
 */
static bool stranded_writes(struct xfer_rail *r)
{
	uint64_t until = xfer_now_ns() + 200000000ull;
	struct xfer_cqe c[64];

	if (!r->rxm)
		return false;
	for (;;) {
		bool left = false;

		for (uint32_t p = 0; p < XFER_MAX_PEERS && !left; p++)
			left = r->stranded[p] && r->inflight[p];
		if (!left)
			return false;
		if (xfer_now_ns() >= until)
			return true;
		if (fab_poll(r, c, (int)ARRAY_SIZE(c)) <= 0)
			usleep(1000);
	}
}

static void fab_close(struct xfer_rail *r)
{
	if (!r)
		return;
	if (stranded_writes(r))
		return;
	if (r->ep)
		fi_close(&r->ep->fid);
	if (r->av)
		fi_close(&r->av->fid);
	if (r->cq)
		fi_close(&r->cq->fid);
	if (r->domain)
		fi_close(&r->domain->fid);
	if (r->fabric)
		fi_close(&r->fabric->fid);
	if (r->info)
		fi_freeinfo(r->info);
	while (r->chunks) {
		struct fab_chunk *c = r->chunks;

		r->chunks = c->next;
		free(c);
	}
	free(r);
}

static int fab_open_once(const struct xfer_rail_attr *a, struct xfer_rail **out)
{
	static const char *const auto_order[] = { "efa", "verbs;ofi_rxm", "tcp;ofi_rxm", "shm" };
	struct xfer_rail *r;
	struct fi_cq_attr cqa = { .format = FI_CQ_FORMAT_DATA, .size = FAB_CQ_SIZE };
	struct fi_av_attr ava = { .type = FI_AV_TABLE };
	int ret = -ENODEV;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->wait_fd = -1;
	if (!a->provider || !*a->provider || strcmp(a->provider, "auto") == 0) {
		for (size_t i = 0; i < ARRAY_SIZE(auto_order) && ret; i++)
			ret = try_getinfo(auto_order[i], a, &r->info);
	} else {
		ret = try_getinfo(a->provider, a, &r->info);
	}
	if (ret)
		goto err;

	r->virt_addr = r->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
	r->prov_key = r->info->domain_attr->mr_mode & FI_MR_PROV_KEY;
	r->mr_endpoint = r->info->domain_attr->mr_mode & FI_MR_ENDPOINT;
	r->max_msg = r->info->ep_attr->max_msg_size;
	r->delivery_ok = true;   /* until the provider refuses the flag */
	r->delivery_zero_ok = strncmp(r->info->fabric_attr->prov_name, "shm", 3) != 0;
	r->rxm = strstr(r->info->fabric_attr->prov_name, "ofi_rxm") != NULL;
	if (r->info->domain_attr->cq_data_size < 4) {
		ret = -EOPNOTSUPP;   /* immediates need 32 bits of CQ data */
		goto err;
	}
	r->next_key = ((uint64_t)a->index << 32) | 1;

	ret = fi_fabric(r->info->fabric_attr, &r->fabric, NULL);
	if (!ret)
		ret = fi_domain(r->fabric, r->info, &r->domain, NULL);
	if (!ret) {
		/* A CQ with a wait fd lets the idle worker sleep until traffic
		 * arrives. Not on shm: its wait fd says nothing about commands
		 * arriving from peers (a write with an immediate needs this side's
		 * progress), so an engine asleep on it would sleep out its timeout
		 * on every such write. Providers without wait fds are polled. */
		bool shm = strncmp(r->info->fabric_attr->prov_name, "shm", 3) == 0;

		r->small_in_order = shm && a->num_rails == 1;

		cqa.wait_obj = shm ? FI_WAIT_NONE : FI_WAIT_FD;
		ret = fi_cq_open(r->domain, &cqa, &r->cq, NULL);
		if (ret && !shm) {
			cqa.wait_obj = FI_WAIT_NONE;
			ret = fi_cq_open(r->domain, &cqa, &r->cq, NULL);
		} else if (!ret && !shm &&
			   (fi_control(&r->cq->fid, FI_GETWAIT, &r->wait_fd) || r->wait_fd < 0)) {
			r->wait_fd = -1;
		}
	}
	if (!ret)
		ret = fi_av_open(r->domain, &ava, &r->av, NULL);
	if (!ret)
		ret = fi_endpoint(r->domain, r->info, &r->ep, NULL);
	if (!ret)
		ret = fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV);
	if (!ret)
		ret = fi_ep_bind(r->ep, &r->av->fid, 0);
	if (!ret)
		ret = fi_enable(r->ep);
	if (ret) {
		ret = fab_err(ret);
		goto err;
	}

	for (uint32_t i = 0; i < XFER_MAX_PEERS; i++)
		r->peers[i] = FI_ADDR_NOTAVAIL;
	*out = r;
	return 0;
err:
	fab_close(r);
	return ret;
}

/* Whether /proc/self/maps shows /dev/shm/<name> mapped in this process. */
static bool shm_mapped_here(const char *name)
{
	char line[512], want[300];
	FILE *f = fopen("/proc/self/maps", "r");
	bool found = false;

	if (!f)
		return true;   /* cannot tell: treat it as ours */
	snprintf(want, sizeof(want), "/dev/shm/%s\n", name);
	while (!found && fgets(line, sizeof(line), f)) {
		size_t n = strlen(line), w = strlen(want);

		found = n >= w && strcmp(line + n - w, want) == 0;
	}
	fclose(f);
	return found;
}

/* shm (1.17) names an endpoint's region /dev/shm/<pid>:<n>:<m>. A process
 * killed with SIGKILL leaves its files behind, and a later process that gets
 * the same pid cannot create its first endpoint (-EBUSY). Files named for
 * our pid that this process does not map were left by a dead process with
 * our pid: remove them. (Only on that error: a file another thread of ours
 * has just created and not yet mapped would go too.) */
static void shm_remove_stale(void)
{
	char prefix[32];
	DIR *d = opendir("/dev/shm");
	struct dirent *de;

	if (!d)
		return;
	snprintf(prefix, sizeof(prefix), "%d:", (int)getpid());
	while ((de = readdir(d))) {
		char path[300];

		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || shm_mapped_here(de->d_name))
			continue;
		snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
		unlink(path);
	}
	closedir(d);
}

static int fab_open(const struct xfer_rail_attr *a, struct xfer_rail **out)
{
	int ret = fab_open_once(a, out);

	/* shm's own error path removes the file it found in use (1.17), so
	 * one more try needs no removal here; other stale files of ours go
	 * first all the same. */
	if (ret == -EBUSY) {
		shm_remove_stale();
		ret = fab_open_once(a, out);
	}
	return ret;
}

static void fab_info(struct xfer_rail *r, char *prov, size_t plen, char *dev, size_t dlen,
		     uint64_t *max_msg)
{
	snprintf(prov, plen, "%s", r->info->fabric_attr->prov_name);
	snprintf(dev, dlen, "%s", r->info->domain_attr->name ? r->info->domain_attr->name : "");
	*max_msg = r->max_msg;
}

static int fab_addr(struct xfer_rail *r, void *buf, size_t *len)
{
	int ret = fi_getname(&r->ep->fid, buf, len);

	return ret == -FI_ETOOSMALL ? -ENOSPC : fab_err(ret);
}

/* Whether addr has the form of the addresses this rail's provider makes.
 * Never hand an AV anything else: libfabric 1.17's tcp;ofi_rxm takes a
 * zeroed sockaddr without inserting it (returns 0), and from then on
 * refuses every insert with -EINVAL, good addresses included: one bad
 * address would make every later peer unreachable. */
static bool addr_plausible(struct xfer_rail *r, const void *addr, size_t len)
{
	sa_family_t fam;

	switch (r->info->addr_format) {
	case FI_SOCKADDR_IN:
	case FI_SOCKADDR_IN6:
	case FI_SOCKADDR:
		if (len < sizeof(fam))
			return false;
		memcpy(&fam, addr, sizeof(fam));
		if (fam == AF_INET)
			return r->info->addr_format != FI_SOCKADDR_IN6 &&
			       len >= sizeof(struct sockaddr_in);
		if (fam == AF_INET6)
			return r->info->addr_format != FI_SOCKADDR_IN &&
			       len >= sizeof(struct sockaddr_in6);
		return false;
	case FI_ADDR_STR: {
		/* "prov://...", NUL-terminated, of this rail's own scheme (shm) */
		char self[128];
		size_t slen = sizeof(self);
		const char *sep, *a = addr;

		if (!len || !memchr(a, '\0', len) || !a[0])
			return false;
		if (fi_getname(&r->ep->fid, self, &slen) || !memchr(self, '\0', slen) ||
		    !(sep = strstr(self, "://")))
			return true;   /* nothing to compare with */
		return strncmp(a, self, (size_t)(sep - self) + 3) == 0;
	}
	default:
		return true;   /* provider formats (EFA, verbs): the provider checks */
	}
}

static int fab_add_peer(struct xfer_rail *r, uint32_t peer, const void *addr, size_t len)
{
	fi_addr_t fa = FI_ADDR_NOTAVAIL;
	int ret;

	if (peer >= XFER_MAX_PEERS || !addr_plausible(r, addr, len))
		return -EINVAL;
	ret = fi_av_insert(r->av, addr, 1, &fa, 0, NULL);
	if (ret != 1)
		return ret < 0 ? fab_err(ret) : -EINVAL;
	r->peers[peer] = fa;
	return 0;
}

static void fab_remove_peer(struct xfer_rail *r, uint32_t peer)
{
	if (peer < XFER_MAX_PEERS && r->peers[peer] != FI_ADDR_NOTAVAIL) {
		/* A peer posted to keeps its entry, unused, until the rail
		 * closes: libfabric 1.17 frees what the entry holds while work
		 * in flight still points at it. shm unmaps the peer's region
		 * (a SIGSEGV in fi_cq_read once a peer that died with work in
		 * flight is removed); tcp;ofi_rxm drops the connection under its
		 * queued writes (a SIGSEGV in fi_close of the endpoint, seen when
		 * a host's cable is cut mid-transfer: tests/cluster/run.sh). A
		 * peer never posted to (an add undone because a later rail
		 * refused it) has nothing in flight: its entry goes, or failed
		 * adds would fill shm's 256-entry AV. */
		if (!r->posted[peer])
			fi_av_remove(r->av, &r->peers[peer], 1, 0);
		if (r->inflight[peer])
			r->stranded[peer] = true;
		r->peers[peer] = FI_ADDR_NOTAVAIL;
		r->posted[peer] = false;
	}
}

static int fab_mr_reg(struct xfer_rail *r, void *addr, size_t len, uint32_t kind, int dmabuf_fd,
		      uint64_t dmabuf_off, int remote_write, struct xfer_rail_mr *out)
{
	struct fid_mr *mr = NULL;
	struct iovec iov = { .iov_base = addr, .iov_len = len };
	struct fi_mr_attr ma = {
		.mr_iov = &iov,
		.iov_count = 1,
		.access = FI_WRITE | (remote_write ? FI_REMOTE_WRITE : 0),
		.requested_key = r->next_key++,
		.iface = FI_HMEM_SYSTEM,
	};
	int ret;

	if (kind == XFER_MEM_CUDA) {
		if (!(r->info->caps & FI_HMEM))
			return -EOPNOTSUPP;
		ma.iface = FI_HMEM_CUDA;
	} else if (kind == XFER_MEM_DMABUF) {
		/* FI_MR_DMABUF arrived after libfabric 1.17: refuse clearly. */
		(void)dmabuf_fd;
		(void)dmabuf_off;
		return -EOPNOTSUPP;
	}
	ret = fi_mr_regattr(r->domain, &ma, 0, &mr);
	if (ret)
		return fab_err(ret);
	if (r->mr_endpoint) {
		ret = fi_mr_bind(mr, &r->ep->fid, 0);
		if (!ret)
			ret = fi_mr_enable(mr);
		if (ret) {
			fi_close(&mr->fid);
			return fab_err(ret);
		}
	}
	out->handle = mr;
	out->desc = fi_mr_desc(mr);
	out->rkey = fi_mr_key(mr);
	out->raddr = r->virt_addr ? (uint64_t)(uintptr_t)addr : 0;
	return 0;
}

static void fab_mr_dereg(struct xfer_rail *r, struct xfer_rail_mr *mr)
{
	if (mr->handle)
		fi_close(&((struct fid_mr *)mr->handle)->fid);
	mr->handle = NULL;
}

static struct fab_slot *slot_get(struct xfer_rail *r)
{
	if (!r->free_slots) {
		struct fab_chunk *c = calloc(1, sizeof(*c));

		if (!c)
			return NULL;
		c->next = r->chunks;
		r->chunks = c;
		for (int i = FAB_SLOT_CHUNK - 1; i >= 0; i--) {
			c->slot[i].next_free = r->free_slots;
			r->free_slots = &c->slot[i];
		}
	}
	return r->free_slots;
}

static int fab_post(struct xfer_rail *r, uint32_t peer, const struct xfer_wr *wrs, int n)
{
	fi_addr_t dest;
	int i;

	if (peer >= XFER_MAX_PEERS || (dest = r->peers[peer]) == FI_ADDR_NOTAVAIL)
		return -ENOTCONN;
	r->posted[peer] = true;
	for (i = 0; i < n; i++) {
		const struct xfer_wr *w = &wrs[i];
		struct fab_slot *s = slot_get(r);
		ssize_t ret;

		if (!s)
			return i ? i : -ENOMEM;
		s->user = w->ctx;
		s->peer = peer;
		/* Delivery-complete makes shm (1.17) send even a 4 KiB page by
		 * its SAR protocol: rounds of both sides' progress and a response
		 * per page, 5-10x slower with an idle receiver (issue 12). It is
		 * not needed for order there when one rail carries everything:
		 * writes up to SMR_INJECT_SIZE go inline or by inject, which the
		 * target copies while it takes the commands in order, so the
		 * immediate posted after them is seen after the data. Larger
		 * writes keep it (without CMA they would go by SAR, unordered). */
		if (w->delivery && r->delivery_ok && (w->len || r->delivery_zero_ok) &&
		    !(r->small_in_order && w->len <= SHM_INJECT_SIZE)) {
			struct iovec iov = { .iov_base = (void *)w->laddr, .iov_len = w->len };
			void *desc = w->ldesc;
			struct fi_rma_iov riov = { .addr = w->raddr, .len = w->len, .key = w->rkey };
			struct fi_msg_rma msg = {
				.msg_iov = &iov, .desc = &desc, .iov_count = 1, .addr = dest,
				.rma_iov = &riov, .rma_iov_count = 1, .context = &s->fctx,
				.data = w->imm,
			};
			ret = fi_writemsg(r->ep, &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE |
					  (w->has_imm ? FI_REMOTE_CQ_DATA : 0));
			if (ret == -FI_EBADFLAGS || ret == -FI_EOPNOTSUPP || ret == -FI_ENOSYS) {
				r->delivery_ok = false;
				i--;
				continue;
			}
		} else if (w->has_imm)
			ret = fi_writedata(r->ep, w->laddr, w->len, w->ldesc, w->imm, dest,
					   w->raddr, w->rkey, &s->fctx);
		else
			ret = fi_write(r->ep, w->laddr, w->len, w->ldesc, dest, w->raddr,
				       w->rkey, &s->fctx);
		if (ret == -FI_EAGAIN)
			break;
		if (ret)
			return i ? i : fab_err((int)ret);
		r->free_slots = s->next_free;
		r->inflight[peer]++;
	}
	return i;
}

static void *slot_done(struct xfer_rail *r, void *op_context)
{
	struct fab_slot *s = op_context;
	void *user;

	if (!s)
		return NULL;
	user = s->user;
	r->inflight[s->peer]--;
	s->next_free = r->free_slots;
	r->free_slots = s;
	return user;
}

static int fab_poll(struct xfer_rail *r, struct xfer_cqe *out, int n)
{
	struct fi_cq_data_entry ent[32];
	int got = 0;

	while (got < n) {
		int want = n - got < (int)ARRAY_SIZE(ent) ? n - got : (int)ARRAY_SIZE(ent);
		ssize_t ret = fi_cq_read(r->cq, ent, want);

		if (ret == -FI_EAGAIN)
			break;
		if (ret == -FI_EAVAIL) {
			struct fi_cq_err_entry err = { 0 };

			if (fi_cq_readerr(r->cq, &err, 0) != 1)
				break;
			if ((err.flags & FI_REMOTE_WRITE) && !err.op_context)
				continue;   /* a failed arrival: nothing of ours to fail */
			out[got++] = (struct xfer_cqe){
				.kind = XFER_CQE_LOCAL,
				.status = err.err ? -(int)err.err : -EIO,
				.ctx = slot_done(r, err.op_context),
			};
			continue;
		}
		if (ret < 0)
			return got ? got : fab_err((int)ret);
		for (ssize_t i = 0; i < ret; i++) {
			/* An arrival has both flags (VM-NOTES: op_context and FI_RMA
			 * are not reliable on every provider). */
			if ((ent[i].flags & FI_REMOTE_WRITE) && (ent[i].flags & FI_REMOTE_CQ_DATA)) {
				out[got++] = (struct xfer_cqe){
					.kind = XFER_CQE_IMM,
					.imm = (uint32_t)ent[i].data,
					.len = ent[i].len,
				};
			} else {
				out[got++] = (struct xfer_cqe){
					.kind = XFER_CQE_LOCAL,
					.ctx = slot_done(r, ent[i].op_context),
				};
			}
		}
		if (ret < want)
			break;
	}
	return got;
}

static int fab_wait_fd(struct xfer_rail *r)
{
	return r->wait_fd;
}

static int fab_trywait(struct xfer_rail *r)
{
	struct fid *f = &r->cq->fid;

	return r->wait_fd >= 0 && fi_trywait(r->fabric, &f, 1) == FI_SUCCESS ? 0 : -EAGAIN;
}

/* shm stays on the host; tcp, sockets and udp do here, where they run on
 * loopback addresses (a real NIC would be named by an RDMA provider). */
static bool fab_loopback(const char *prov)
{
	return strcmp(prov, "shm") == 0 || strstr(prov, "tcp") || strstr(prov, "sockets") ||
	       strstr(prov, "udp");
}

/* shm 1.17 writes through a forged or stale key's range (issue 12); the
 * others check keys and ranges in the provider or the NIC. */
static bool fab_checks_rkeys(const char *prov)
{
	return strcmp(prov, "shm") != 0;
}

const struct xfer_backend_ops xfer_fabric_ops = {
	.size = sizeof(struct xfer_backend_ops),
	.name = "fabric",
	.wire_id = XFER_WIRE_FABRIC,
	.loopback = fab_loopback,
	.rail_open = fab_open,
	.rail_close = fab_close,
	.rail_info = fab_info,
	.rail_addr = fab_addr,
	.rail_add_peer = fab_add_peer,
	.rail_remove_peer = fab_remove_peer,
	.mr_reg = fab_mr_reg,
	.mr_dereg = fab_mr_dereg,
	.post_write = fab_post,
	.poll = fab_poll,
	.wait_fd = fab_wait_fd,
	.trywait = fab_trywait,
	.checks_rkeys = fab_checks_rkeys,
};
