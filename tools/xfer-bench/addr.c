/* SPDX-License-Identifier: MIT */
/*
 * What an engine publishes, in words: the rail addresses inside an engine
 * address (the wire format docs/design.md describes: a 56-byte header, the
 * backend's wire id at byte 24, the rail count at 28, then per rail a
 * 24-byte header whose first two bytes are the address length, and the
 * address padded to 8 bytes). For fabric engines libfabric itself writes
 * them out (fi_av_straddr on an address vector of the same provider), so a
 * loopback address published across hosts shows as what it is.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include "bench.h"
#include "xfer_fabric.h"

#define WIRE_FABRIC 1
#define ADDR_HDR 56
#define ADDR_RAIL_HDR 24

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An address vector of prov, to format its addresses (NULL if none). */
struct av_for {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
};

static void av_close(struct av_for *a)
{
	if (a->av)
		fi_close(&a->av->fid);
	if (a->domain)
		fi_close(&a->domain->fid);
	if (a->fabric)
		fi_close(&a->fabric->fid);
	if (a->info)
		fi_freeinfo(a->info);
}

static int av_open(struct av_for *a, const char *prov, const char *node)
{
	struct fi_info *h = xfer_fabric_hints(prov);
	struct fi_av_attr ava = { .type = FI_AV_TABLE };
	bool ip = strncmp(prov, "shm", 3) != 0 && strncmp(prov, "efa", 3) != 0;
	int ret;

	memset(a, 0, sizeof(*a));
	if (!h)
		return -1;
	ret = fi_getinfo(FI_VERSION(1, 14), ip ? node : NULL, NULL, ip && node ? FI_SOURCE : 0, h,
			 &a->info);
	fi_freeinfo(h);
	if (!ret)
		ret = fi_fabric(a->info->fabric_attr, &a->fabric, NULL);
	if (!ret)
		ret = fi_domain(a->fabric, a->info, &a->domain, NULL);
	if (!ret)
		ret = fi_av_open(a->domain, &ava, &a->av, NULL);
	if (ret)
		av_close(a);
	return ret;
}

json_object *addr_describe(const char *prov, const char *node, const void *addr, size_t len)
{
	const uint8_t *p = addr;
	json_object *out = json_object_new_array();
	struct av_for av;
	bool have_av = false;
	uint32_t rails;
	size_t off = ADDR_HDR;

	if (len < ADDR_HDR)
		return out;
	rails = le32(p + 28);
	if (le32(p + 24) == WIRE_FABRIC && prov)
		have_av = av_open(&av, prov, node) == 0;
	for (uint32_t i = 0; i < rails && i < XFER_MAX_RAILS; i++) {
		char s[256] = "";
		size_t rl, slen = sizeof(s);

		if (len - off < ADDR_RAIL_HDR)
			break;
		rl = (size_t)p[off] | (size_t)p[off + 1] << 8;
		if (rl > len - off - ADDR_RAIL_HDR)
			break;
		if (!have_av || !fi_av_straddr(av.av, p + off + ADDR_RAIL_HDR, s, &slen)) {
			/* not libfabric's (verbs, local): the bytes */
			for (size_t k = 0; k < rl && 2 * k + 3 < sizeof(s); k++)
				snprintf(s + 2 * k, 3, "%02x", p[off + ADDR_RAIL_HDR + k]);
		}
		json_object_array_add(out, json_object_new_string(s));
		off += ADDR_RAIL_HDR + ((rl + 7) & ~(size_t)7);
	}
	if (have_av)
		av_close(&av);
	return out;
}

void sock_local_ip(int fd, char *buf, size_t len)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	buf[0] = 0;
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 && sa.sin_family == AF_INET)
		inet_ntop(AF_INET, &sa.sin_addr, buf, (socklen_t)len);
}
