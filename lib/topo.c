/* SPDX-License-Identifier: MIT */
/*
 * Worker placement from the PCIe topology (hwloc): a core on the NUMA node
 * of the GPU (found by its PCI bus id from CUDA, when present) or of the
 * first NIC; -1 lets the scheduler choose.
 */
#include <stdio.h>
#include <string.h>

#include <hwloc.h>

#include "internal.h"

/* The PCI bus id of CUDA device `gpu`, read from sysfs order of NVIDIA
 * display controllers (vendor 0x10de, class 0x03xx), as CUDA enumerates
 * them by PCI order when CUDA_DEVICE_ORDER=PCI_BUS_ID. */
static hwloc_obj_t gpu_pcidev(hwloc_topology_t t, int gpu)
{
	hwloc_obj_t o = NULL;
	int n = 0;

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

int xfer_topo_worker_cpu(int gpu, const char *nic)
{
	hwloc_topology_t t;
	hwloc_obj_t dev = NULL, anc;
	int cpu = -1;

	if (gpu < 0 && (!nic || !*nic))
		return -1;   /* nothing to be near: let the scheduler choose */
	if (hwloc_topology_init(&t))
		return -1;
	hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	/* The libpciaccess component only adds device names (it parses pci.ids,
	 * slowly); Linux sysfs discovery still finds every PCI device. */
	hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
	if (hwloc_topology_load(t)) {
		hwloc_topology_destroy(t);
		return -1;
	}
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
	hwloc_topology_destroy(t);
	return cpu;
}
