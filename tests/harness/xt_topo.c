/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xt_topo.h"

#define GPU_TYPE "0302 [10de:2330] [10de:16c1] a1"
#define NIC_TYPE "0207 [15b3:1021] [15b3:0041] 00"

static void pcidev(FILE *f, const char *busid, const char *type)
{
	fprintf(f, "    <object type=\"PCIDev\" pci_busid=\"%s\" pci_type=\"%s\" pci_link_speed=\"0\"",
		busid, type);
}

/* Socket `os` (one core, mask 1 << os): a root complex for buses
 * bus..bus+5 with a switch holding a GPU and a NIC, and optionally one
 * more GPU on the root complex itself. */
static void socket(FILE *f, int os, int bus, const char *nic, const char *lone_gpu)
{
	char cpus[160];
	char id[16];

	snprintf(cpus, sizeof(cpus), "cpuset=\"0x%x\" complete_cpuset=\"0x%x\" nodeset=\"0x%x\" "
		 "complete_nodeset=\"0x%x\"", 1 << os, 1 << os, 1 << os, 1 << os);
	fprintf(f, " <object type=\"Package\" os_index=\"%d\" %s>\n", os, cpus);
	fprintf(f, "  <object type=\"NUMANode\" os_index=\"%d\" %s local_memory=\"1073741824\"/>\n",
		os, cpus);
	fprintf(f, "  <object type=\"Core\" os_index=\"%d\" %s>\n", os, cpus);
	fprintf(f, "   <object type=\"PU\" os_index=\"%d\" %s/>\n  </object>\n", os, cpus);
	fprintf(f, "  <object type=\"Bridge\" bridge_type=\"0-1\" depth=\"0\" "
		"bridge_pci=\"0000:[%02x-%02x]\">\n", bus, bus + 5);
	fprintf(f, "   <object type=\"Bridge\" bridge_type=\"1-1\" depth=\"1\" pci_busid=\"0000:%02x:01.0\" "
		"pci_type=\"0604 [1000:c030] [0000:0000] 00\" bridge_pci=\"0000:[%02x-%02x]\" "
		"pci_link_speed=\"0\">\n", bus, bus + 1, bus + 2);
	snprintf(id, sizeof(id), "0000:%02x:00.0", bus + 1);
	pcidev(f, id, GPU_TYPE);
	fprintf(f, "/>\n");
	snprintf(id, sizeof(id), "0000:%02x:00.0", bus + 2);
	pcidev(f, id, NIC_TYPE);
	fprintf(f, ">\n     <object type=\"OSDev\" name=\"%s\" osdev_type=\"3\"/>\n    </object>\n", nic);
	fprintf(f, "   </object>\n");
	if (lone_gpu) {
		pcidev(f, lone_gpu, GPU_TYPE);
		fprintf(f, "/>\n");
	}
	fprintf(f, "  </object>\n </object>\n");
}

int xt_topo_install(char *path)
{
	FILE *f;
	int fd, ok;

	strcpy(path, "/tmp/xfer-topo-XXXXXX");   /* mkstemp's template */
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(path);
		return -EIO;
	}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n<topology version=\"2.0\">\n"
		"<object type=\"Machine\" os_index=\"0\" cpuset=\"0x3\" complete_cpuset=\"0x3\" "
		"nodeset=\"0x3\" complete_nodeset=\"0x3\">\n");
	socket(f, 0, 0x00, "rxe1", NULL);
	socket(f, 1, 0x80, "rxe0", "0000:85:00.0");
	fprintf(f, "</object>\n</topology>\n");
	ok = !ferror(f);
	if (fclose(f) || !ok) {
		unlink(path);
		return -EIO;
	}
	return setenv("HWLOC_XMLFILE", path, 1) ? -errno : 0;
}

void xt_topo_remove(const char *path)
{
	unsetenv("HWLOC_XMLFILE");
	unlink(path);
}
