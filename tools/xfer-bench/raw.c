/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "xfer_fabric.h"
#include "raw.h"

#define CTX_RING 4096

struct raw_rail {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_ep *ep;
	struct fid_av *av;
	struct fid_cq *cq;
	fi_addr_t peer[RAW_MAX_PEERS];
	bool virt;
	uint64_t next_key;
	struct fi_context2 ctx[CTX_RING];
	uint32_t ctx_next;
};

static int rail_open(struct raw_rail *r, const char *prov, int index, const char *node)
{
	struct fi_info *h = xfer_fabric_hints(prov), *list = NULL;
	struct fi_cq_attr cqa = { .format = FI_CQ_FORMAT_DATA, .size = 4096 };
	struct fi_av_attr ava = { .type = FI_AV_TABLE };
	bool ip = strncmp(prov, "shm", 3) != 0 && strncmp(prov, "efa", 3) != 0;
	int ret;

	if (!h)
		return -ENOMEM;
	ret = fi_getinfo(FI_VERSION(1, 14), ip ? node : NULL, NULL, ip && node ? FI_SOURCE : 0,
			 h, &list);
	fi_freeinfo(h);
	if (ret)
		return ret;
	r->info = fi_dupinfo(list);
	fi_freeinfo(list);
	r->virt = r->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
	r->next_key = ((uint64_t)index << 32) | 0x1000;
	ret = fi_fabric(r->info->fabric_attr, &r->fabric, NULL);
	if (!ret)
		ret = fi_domain(r->fabric, r->info, &r->domain, NULL);
	if (!ret)
		ret = fi_cq_open(r->domain, &cqa, &r->cq, NULL);
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
	return ret;
}

int raw_open(struct rawfab *f, const char *prov, int nrails, const char *node)
{
	memset(f, 0, sizeof(*f));
	if (nrails < 1 || nrails > RAW_MAX_RAILS)
		return -EINVAL;
	for (int i = 0; i < nrails; i++) {
		int ret;

		f->r[i] = calloc(1, sizeof(struct raw_rail));
		if (!f->r[i])
			return -ENOMEM;
		f->nrails = i + 1;
		ret = rail_open(f->r[i], prov, i, node);
		if (ret)
			return ret < 0 ? ret : -ret;
	}
	return 0;
}

void raw_close(struct rawfab *f)
{
	for (int i = 0; i < f->nrails; i++) {
		struct raw_rail *r = f->r[i];

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
		free(r);
	}
	f->nrails = 0;
}

int raw_addr(struct rawfab *f, void *buf, size_t *len)
{
	uint8_t *p = buf;
	size_t off = 0;

	for (int i = 0; i < f->nrails; i++) {
		size_t n = 256;

		if (off + 2 + n > *len)
			return -ENOSPC;
		if (fi_getname(&f->r[i]->ep->fid, p + off + 2, &n))
			return -EIO;
		p[off] = (uint8_t)n;
		p[off + 1] = (uint8_t)(n >> 8);
		off += 2 + n;
	}
	*len = off;
	return 0;
}

int raw_add_peer(struct rawfab *f, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t off = 0;
	int idx = f->npeers;

	if (idx >= RAW_MAX_PEERS)
		return -ENOSPC;
	for (int i = 0; i < f->nrails; i++) {
		size_t n;

		if (off + 2 > len)
			return -EINVAL;
		n = p[off] | (size_t)p[off + 1] << 8;
		if (off + 2 + n > len)
			return -EINVAL;
		if (fi_av_insert(f->r[i]->av, p + off + 2, 1, &f->r[i]->peer[idx], 0, NULL) != 1)
			return -EIO;
		off += 2 + n;
	}
	f->npeers++;
	return idx;
}

int raw_reg(struct rawfab *f, void *addr, size_t len, struct raw_mr *mr)
{
	memset(mr, 0, sizeof(*mr));
	mr->addr = addr;
	mr->len = len;
	for (int i = 0; i < f->nrails; i++) {
		struct raw_rail *r = f->r[i];
		struct fid_mr *m;
		int ret = fi_mr_reg(r->domain, addr, len, FI_WRITE | FI_REMOTE_WRITE, 0,
				    r->next_key++, 0, &m, NULL);

		if (ret)
			return ret;
		if (r->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
			fi_mr_bind(m, &r->ep->fid, 0);
			fi_mr_enable(m);
		}
		mr->mr[i] = m;
		mr->desc[i] = fi_mr_desc(m);
		mr->key[i] = fi_mr_key(m);
		mr->raddr[i] = r->virt ? (uint64_t)(uintptr_t)addr : 0;
	}
	return 0;
}

void raw_dereg(struct rawfab *f, struct raw_mr *mr)
{
	for (int i = 0; i < f->nrails; i++)
		if (mr->mr[i])
			fi_close(&((struct fid_mr *)mr->mr[i])->fid);
}

void raw_rmr_of(const struct rawfab *f, const struct raw_mr *mr, struct raw_rmr *out)
{
	memset(out, 0, sizeof(*out));
	out->len = mr->len;
	for (int i = 0; i < f->nrails; i++) {
		out->key[i] = mr->key[i];
		out->raddr[i] = mr->raddr[i];
	}
}

int raw_write(struct rawfab *f, int rail, int peer, const struct raw_mr *src, uint64_t soff,
	      const struct raw_rmr *dst, uint64_t doff, uint64_t len, uint32_t data)
{
	struct raw_rail *r = f->r[rail];
	void *ctx = &r->ctx[r->ctx_next++ % CTX_RING];
	ssize_t ret;

	if (data)
		ret = fi_writedata(r->ep, (char *)src->addr + soff, len, src->desc[rail], data,
				   r->peer[peer], dst->raddr[rail] + doff, dst->key[rail], ctx);
	else
		ret = fi_write(r->ep, (char *)src->addr + soff, len, src->desc[rail],
			       r->peer[peer], dst->raddr[rail] + doff, dst->key[rail], ctx);
	if (ret == -FI_EAGAIN) {
		r->ctx_next--;
		return -EAGAIN;
	}
	return (int)ret;
}

int raw_poll(struct rawfab *f, uint64_t *imm, uint32_t *last_data)
{
	struct fi_cq_data_entry ent[64];
	int local = 0;

	for (int i = 0; i < f->nrails; i++) {
		ssize_t n = fi_cq_read(f->r[i]->cq, ent, 64);

		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = { 0 };

			fi_cq_readerr(f->r[i]->cq, &err, 0);
			return -(int)(err.err ? err.err : EIO);
		}
		for (ssize_t k = 0; k < n; k++) {
			if ((ent[k].flags & FI_REMOTE_WRITE) && (ent[k].flags & FI_REMOTE_CQ_DATA)) {
				(*imm)++;
				*last_data = (uint32_t)ent[k].data;
			} else {
				local++;
			}
		}
	}
	return local;
}
