/* SPDX-License-Identifier: MIT */
/*
 * libfabric, loaded on first use instead of at program start.
 *
 * Why: Debian's libfabric links the PSM providers, and loading
 * libinfinipath runs a constructor that calibrates a clock with ~700
 * usleep(125) calls: 0.2 s added to the start of every program that links
 * libfabric, whether it opens a fabric or not (a tool refusing a bad option,
 * xferctl, a `local` or verbs engine). Loaded here, only programs that open
 * a libfabric rail pay it, and a node without libfabric still runs verbs and
 * local.
 *
 * The library and the tools call the four libfabric functions that are real
 * symbols (everything else in libfabric's API is an inline call through the
 * ops tables of objects these return). This file defines those four under
 * libfabric's own names, so the headers' inline helpers (fi_allocinfo calls
 * fi_dupinfo) resolve here too; it is built with hidden visibility, so the
 * definitions never leave the library or the tool that links them, and
 * libfabric's own calls stay its own. dlsym takes the default version of
 * each symbol, the one a link against the same library would bind.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include <rdma/fabric.h>

#include "xfer_fabric_load.h"

#define XFER_STR_(x) #x
#define XFER_STR(x) XFER_STR_(x)
#define LIBFABRIC_SONAME "libfabric.so." XFER_STR(FI_MAJOR_VERSION)

static struct {
	int (*getinfo)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
		       struct fi_info **);
	void (*freeinfo)(struct fi_info *);
	struct fi_info *(*dupinfo)(const struct fi_info *);
	int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
} fab;
static pthread_once_t fab_once = PTHREAD_ONCE_INIT;

static void fab_load(void)
{
	/* Never closed: providers keep threads and handlers for the process. */
	void *h = dlopen(LIBFABRIC_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		return;
	*(void **)&fab.getinfo = dlsym(h, "fi_getinfo");
	*(void **)&fab.freeinfo = dlsym(h, "fi_freeinfo");
	*(void **)&fab.dupinfo = dlsym(h, "fi_dupinfo");
	*(void **)&fab.fabric = dlsym(h, "fi_fabric");
	if (!fab.getinfo || !fab.freeinfo || !fab.dupinfo || !fab.fabric)
		fab.getinfo = NULL;   /* not the libfabric we were built for */
}

int xfer_fabric_load(void)
{
	pthread_once(&fab_once, fab_load);
	return fab.getinfo ? 0 : -ELIBACC;
}

int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
	       const struct fi_info *hints, struct fi_info **info)
{
	int ret = xfer_fabric_load();

	if (ret)
		return ret;
	return fab.getinfo(version, node, service, flags, hints, info);
}

void fi_freeinfo(struct fi_info *info)
{
	if (info && xfer_fabric_load() == 0)
		fab.freeinfo(info);
}

struct fi_info *fi_dupinfo(const struct fi_info *info)
{
	if (xfer_fabric_load()) {
		errno = ELIBACC;
		return NULL;
	}
	return fab.dupinfo(info);
}

int fi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
	int ret = xfer_fabric_load();

	if (ret)
		return ret;
	return fab.fabric(attr, fabric, context);
}
