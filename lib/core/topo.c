/* SPDX-License-Identifier: MIT */
/*
 * Placement from the PCIe topology (hwloc):
 *  - the worker runs on a core of the NUMA node of the GPU (found by its PCI
 *    position, when present) or of the first NIC; -1 lets the scheduler choose;
 *  - with a GPU and no NICs named, the engine opens the RDMA NICs nearest that
 *    GPU: fewest hops up and down the PCIe tree, so a NIC behind the GPU's own
 *    switch comes before one on its root complex, before one on the other
 *    socket (GPUDirect RDMA through a shared switch never crosses the CPU).
 * HWLOC_XMLFILE makes hwloc read a described machine instead (the tests).
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>

#include "internal.h"

/* The physical GPU behind CUDA device index `gpu`: CUDA_VISIBLE_DEVICES
 * renumbers (a rank given "3" calls it device 0); UUIDs there cannot be
 * resolved without CUDA, so -1 then. */
static int gpu_physical(int gpu)
{
	const char *v = getenv("CUDA_VISIBLE_DEVICES");
	char *end;

	if (!v)
		return gpu;
	for (int i = 0;; i++) {
		long idx = strtol(v, &end, 10);

		if (end == v || idx < 0 || (*end && *end != ','))
			return -1;
		if (i == gpu)
			return (int)idx;
		if (!*end)
			return -1;   /* fewer visible devices than the index */
		v = end + 1;
	}
}

/* The PCI device of CUDA device `gpu`: NVIDIA display controllers (vendor
 * 0x10de, class 0x03xx) in PCI order, as CUDA enumerates them with
 * CUDA_DEVICE_ORDER=PCI_BUS_ID (and in practice on uniform GPU nodes). */
static hwloc_obj_t gpu_pcidev(hwloc_topology_t t, int gpu)
{
	hwloc_obj_t o = NULL;
	int n = 0;

	gpu = gpu_physical(gpu);
	if (gpu < 0)
		return NULL;
	while ((o = hwloc_get_next_pcidev(t, o)))
		if (o->attr->pcidev.vendor_id == 0x10de && (o->attr->pcidev.class_id >> 8) == 0x03)
			if (n++ == gpu)
				return o;
	return NULL;
}

static hwloc_obj_t nic_osdev(hwloc_topology_t t, const char *name)
{
	hwloc_obj_t o = NULL;

	if (!name || !*name)
		return NULL;
	while ((o = hwloc_get_next_osdev(t, o)))
		if (o->name && (strcmp(o->name, name) == 0 || strstr(name, o->name)))
			return o;
	return NULL;
}

struct xfer_topo {
	hwloc_topology_t t;
};

/* The machine's topology, loaded on first use and kept in *cache for the
 * caller's next question; NULL if hwloc cannot load it. */
static hwloc_topology_t topo_get(struct xfer_topo **cache)
{
	struct xfer_topo *c = *cache;

	if (c)
		return c->t;
	c = calloc(1, sizeof(*c));
	if (!c || hwloc_topology_init(&c->t)) {
		free(c);
		return NULL;
	}
	hwloc_topology_set_io_types_filter(c->t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	/* The libpciaccess component only adds device names (it parses pci.ids,
	 * slowly); Linux sysfs discovery still finds every PCI device. */
	hwloc_topology_set_components(c->t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
	if (hwloc_topology_load(c->t)) {
		hwloc_topology_destroy(c->t);
		free(c);
		return NULL;
	}
	*cache = c;
	return c->t;
}

void xfer_topo_free(struct xfer_topo *c)
{
	if (!c)
		return;
	hwloc_topology_destroy(c->t);
	free(c);
}

/* NVIDIA GPUs the driver lists (/proc/driver/nvidia/gpus/<bus id>). */
static int nvidia_proc_gpus(void)
{
	DIR *d = opendir("/proc/driver/nvidia/gpus");
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

int xfer_topo_gpu_exists(struct xfer_topo **cache, int gpu)
{
	hwloc_topology_t t;
	int phys = gpu_physical(gpu);

	if (gpu < 0)
		return 0;
	if (phys < 0)
		return -1;   /* CUDA_VISIBLE_DEVICES by UUID, or too short: CUDA's call */
	if (nvidia_proc_gpus() > phys)
		return 1;
	if (!(t = topo_get(cache)) || !hwloc_get_next_pcidev(t, NULL))
		return -1;   /* no PCI view (a container without sysfs): cannot tell */
	return gpu_pcidev(t, gpu) ? 1 : 0;
}

int xfer_topo_worker_cpu(struct xfer_topo **cache, int gpu, const char *nic)
{
	hwloc_topology_t t;
	hwloc_obj_t dev = NULL, anc;
	int cpu = -1;

	if (gpu < 0 && (!nic || !*nic))
		return -1;   /* nothing to be near: let the scheduler choose */
	if (!(t = topo_get(cache)))
		return -1;
	if (gpu >= 0)
		dev = gpu_pcidev(t, gpu);
	if (!dev)
		dev = nic_osdev(t, nic);
	if (dev) {
		anc = hwloc_get_non_io_ancestor_obj(t, dev);
		if (anc && anc->cpuset) {
			/* The last core of the node: core 0 tends to take interrupts. */
			int last = hwloc_bitmap_last(anc->cpuset);

			cpu = last >= 0 ? last : -1;
		}
	}
	return cpu;
}

/* Hops from a up to the lowest common ancestor of a and b, plus from b.
 * (hwloc_get_common_ancestor_obj does not take I/O objects.) */
static int tree_distance(hwloc_obj_t a, hwloc_obj_t b)
{
	int up_a = 0;

	for (hwloc_obj_t x = a; x; x = x->parent, up_a++) {
		int up_b = 0;

		for (hwloc_obj_t y = b; y; y = y->parent, up_b++)
			if (x == y)
				return up_a + up_b;
	}
	return INT_MAX;
}

struct nic_rank {
	int dist;
	char name[XFER_TOPO_NAME];
};

static int rank_cmp(const void *pa, const void *pb)
{
	const struct nic_rank *a = pa, *b = pb;

	if (a->dist != b->dist)
		return a->dist < b->dist ? -1 : 1;
	return strcmp(a->name, b->name);   /* ties: mlx5_0 before mlx5_1 */
}

int xfer_topo_nics_near_gpu(struct xfer_topo **cache, int gpu, char names[][XFER_TOPO_NAME],
			    int max)
{
	struct nic_rank r[64];
	hwloc_topology_t t;
	hwloc_obj_t g, o = NULL;
	int n = 0;

	if (gpu < 0 || max <= 0 || !(t = topo_get(cache)))
		return 0;
	g = gpu_pcidev(t, gpu);
	while (g && n < (int)(sizeof(r) / sizeof(r[0])) && (o = hwloc_get_next_osdev(t, o))) {
		if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS || !o->name ||
		    strlen(o->name) >= XFER_TOPO_NAME)
			continue;
		r[n].dist = tree_distance(g, o);
		snprintf(r[n].name, sizeof(r[n].name), "%s", o->name);
		n++;
	}
	qsort(r, (size_t)n, sizeof(r[0]), rank_cmp);
	if (n > max)
		n = max;
	for (int i = 0; i < n; i++)
		memcpy(names[i], r[i].name, XFER_TOPO_NAME);
	return n;
}
