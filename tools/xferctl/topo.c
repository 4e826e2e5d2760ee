// SPDX-License-Identifier: MIT
/*
 * xferctl topo [show]: GPUs and RDMA NICs from hwloc, the PCIe relation of
 * every pair in nvidia-smi topo -m's words, and which NICs an engine for
 * each GPU opens, and why. Needs neither the module nor a GPU.
 *
 * Re-derived from hwloc here, with the rule of lib/core/topo.c (the
 * library has no public call for it): a GPU is an NVIDIA display
 * controller (vendor 0x10de, class 0x03xx) in PCI order; a NIC is an
 * OpenFabrics OS device; an engine for GPU g with no NICs named opens the
 * NICs fewest hops away in the PCIe tree first (ties by name), as many as
 * it has rails. HWLOC_XMLFILE describes another machine (the tests).
 *
 * Vocabulary (nvidia-smi topo -m): X itself; PIX at most one PCIe bridge
 * between them; PXB several bridges, not through the host bridge; PHB
 * through a host bridge (same root complex); NODE between host bridges of
 * one NUMA node; SYS across the interconnect between NUMA nodes.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>

#include "xferctl.h"

#define MAXDEV 64

struct dev {
	char name[64];
	const char *kind;     /* "GPU" or "NIC" */
	hwloc_obj_t obj;      /* GPU: its PCI device; NIC: its OS device */
	hwloc_obj_t pci;      /* the PCI device (NIC: the OS device's parent) */
};

static bool is_bridge(hwloc_obj_t o)
{
	return o->type == HWLOC_OBJ_BRIDGE;
}

/* Lowest common ancestor of two objects, I/O ones included. */
static hwloc_obj_t lca(hwloc_obj_t a, hwloc_obj_t b)
{
	for (hwloc_obj_t x = a; x; x = x->parent)
		for (hwloc_obj_t y = b; y; y = y->parent)
			if (x == y)
				return x;
	return NULL;
}

/* Bridges strictly between o and its ancestor top. */
static int bridges_below(hwloc_obj_t o, hwloc_obj_t top)
{
	int n = 0;

	for (hwloc_obj_t x = o->parent; x && x != top; x = x->parent)
		n += is_bridge(x);
	return n;
}

static const char *relation(hwloc_topology_t t, const struct dev *a, const struct dev *b)
{
	hwloc_obj_t l, na, nb;

	if (a == b)
		return "X";
	l = lca(a->pci, b->pci);
	if (!l)
		return "SYS";
	if (l->type == HWLOC_OBJ_PCI_DEVICE)
		return "PIX";   /* two functions of one device */
	if (is_bridge(l)) {
		if (l->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST)
			return "PHB";
		/* a switch is one bridge in hwloc's view, or an upstream port
		 * over downstream ports: both read as a single switch */
		return bridges_below(a->pci, l) <= 1 && bridges_below(b->pci, l) <= 1 ? "PIX"
											: "PXB";
	}
	na = hwloc_get_non_io_ancestor_obj(t, a->pci);
	nb = hwloc_get_non_io_ancestor_obj(t, b->pci);
	if (na && nb && na->nodeset && nb->nodeset && hwloc_bitmap_weight(na->nodeset) == 1 &&
	    hwloc_bitmap_isequal(na->nodeset, nb->nodeset))
		return "NODE";
	return "SYS";
}

/* Hops up from a to the common ancestor and down to b (lib/core/topo.c's
 * tree_distance): the engine's ranking. */
static int hops(hwloc_obj_t a, hwloc_obj_t b)
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

static int numa_of(hwloc_topology_t t, hwloc_obj_t o)
{
	hwloc_obj_t a = hwloc_get_non_io_ancestor_obj(t, o);

	if (!a || !a->nodeset || hwloc_bitmap_weight(a->nodeset) != 1)
		return -1;
	return hwloc_bitmap_first(a->nodeset);
}

struct rank {
	int hops;
	const struct dev *nic;
};

static int rank_cmp(const void *pa, const void *pb)
{
	const struct rank *a = pa, *b = pb;

	if (a->hops != b->hops)
		return a->hops < b->hops ? -1 : 1;
	return strcmp(a->nic->name, b->nic->name);
}

int obj_topo(struct ctl *c, const char *cmd, int argc, char **argv)
{
	static const char *const dcols[] = { "device", "kind", "pci", "numa" };
	static const char *const ecols[] = { "gpu", "nics", "why" };
	struct dev d[MAXDEV];
	const char *mcols[MAXDEV + 1];
	hwloc_topology_t t;
	hwloc_obj_t o = NULL;
	int n = 0, ngpu = 0, nnic = 0;

	(void)cmd;
	if (argc)
		return out_fail(&c->o, 0, "topo: unexpected '%s' (topo takes no filters)", argv[0]);
	if (hwloc_topology_init(&t))
		return out_fail(&c->o, 0, "topo: hwloc cannot start");
	hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
	if (hwloc_topology_load(t)) {
		hwloc_topology_destroy(t);
		return out_fail(&c->o, 0, "topo: hwloc cannot read this machine's topology");
	}
	while ((o = hwloc_get_next_pcidev(t, o)) && n < MAXDEV)
		if (o->attr->pcidev.vendor_id == 0x10de && (o->attr->pcidev.class_id >> 8) == 0x03) {
			snprintf(d[n].name, sizeof(d[n].name), "GPU%d", ngpu++);
			d[n].kind = "GPU";
			d[n].obj = d[n].pci = o;
			n++;
		}
	o = NULL;
	while ((o = hwloc_get_next_osdev(t, o)) && n < MAXDEV)
		if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS && o->name) {
			snprintf(d[n].name, sizeof(d[n].name), "%s", o->name);
			d[n].kind = "NIC";
			d[n].obj = o;
			d[n].pci = o->parent ? o->parent : o;
			n++;
			nnic++;
		}
	out_u64(&c->o, "gpus", (uint64_t)ngpu);
	out_u64(&c->o, "nics", (uint64_t)nnic);
	if (!ngpu)
		out_str(&c->o, "note_gpus",
			"no NVIDIA GPU found: NICs only; an engine without a GPU opens NICs in the provider's order");
	if (!nnic)
		out_str(&c->o, "note_nics",
			"no RDMA NIC (OpenFabrics device) found: engines here use the local or TCP providers");

	if (n || c->o.json)
		out_table(&c->o, "devices", dcols, 4);
	for (int i = 0; i < n; i++) {
		json_object *row = json_object_new_object();
		char bus[32];
		int numa = numa_of(t, d[i].pci);
		hwloc_obj_t p = d[i].pci;

		if (p->type == HWLOC_OBJ_PCI_DEVICE)
			snprintf(bus, sizeof(bus), "%04x:%02x:%02x.%01x", p->attr->pcidev.domain,
				 p->attr->pcidev.bus, p->attr->pcidev.dev, p->attr->pcidev.func);
		else
			snprintf(bus, sizeof(bus), "-");
		json_object_object_add(row, "device", json_object_new_string(d[i].name));
		json_object_object_add(row, "kind", json_object_new_string(d[i].kind));
		json_object_object_add(row, "pci", json_object_new_string(bus));
		json_object_object_add(row, "numa", numa < 0 ? NULL : json_object_new_int(numa));
		out_row(&c->o, row);
	}

	if (n) {
		mcols[0] = "device";
		for (int i = 0; i < n; i++)
			mcols[i + 1] = d[i].name;
		out_table(&c->o, "matrix", mcols, n + 1);
		for (int i = 0; i < n; i++) {
			json_object *row = json_object_new_object();

			json_object_object_add(row, "device", json_object_new_string(d[i].name));
			for (int j = 0; j < n; j++)
				json_object_object_add(row, d[j].name,
						       json_object_new_string(relation(t, &d[i], &d[j])));
			out_row(&c->o, row);
		}
	}

	if (n && c->details) {
		/* -d: the hop counts the engine ranks by */
		out_table(&c->o, "hops", mcols, n + 1);
		for (int i = 0; i < n; i++) {
			json_object *row = json_object_new_object();

			json_object_object_add(row, "device", json_object_new_string(d[i].name));
			for (int j = 0; j < n; j++)
				json_object_object_add(row, d[j].name,
						       json_object_new_int(hops(d[i].obj, d[j].obj)));
			out_row(&c->o, row);
		}
	}

	if (ngpu && nnic) {
		out_table(&c->o, "engines", ecols, 3);
		for (int g = 0; g < n; g++) {
			struct rank r[MAXDEV];
			char nics[512] = "", why[1024] = "";
			int k = 0;

			if (strcmp(d[g].kind, "GPU"))
				continue;
			for (int j = 0; j < n; j++)
				if (!strcmp(d[j].kind, "NIC")) {
					r[k].hops = hops(d[g].obj, d[j].obj);
					r[k++].nic = &d[j];
				}
			qsort(r, (size_t)k, sizeof(r[0]), rank_cmp);
			for (int j = 0; j < k; j++) {
				size_t a = strlen(nics), b = strlen(why);

				snprintf(nics + a, sizeof(nics) - a, "%s%s", j ? "," : "", r[j].nic->name);
				snprintf(why + b, sizeof(why) - b, "%s%s %s %d hops", j ? ", " : "",
					 r[j].nic->name, relation(t, &d[g], r[j].nic), r[j].hops);
			}
			json_object *row = json_object_new_object();

			json_object_object_add(row, "gpu", json_object_new_string(d[g].name));
			json_object_object_add(row, "nics", json_object_new_string(nics));
			json_object_object_add(row, "why", json_object_new_string(why));
			out_row(&c->o, row);
		}
		out_str(&c->o, "rule",
			"an engine for a GPU with num_rails R and no NICs named opens the first R: fewest PCIe hops (switch, then root complex, then the other socket), ties by name");
	}
	hwloc_topology_destroy(t);
	return 0;
}
