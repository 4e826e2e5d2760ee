/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>

#include "xt_topo.h"

/* Normal objects carry their cpusets; I/O objects hang below a package. */
#define CPUS(c, n) "cpuset=\"" c "\" complete_cpuset=\"" c "\" nodeset=\"" n "\" complete_nodeset=\"" n "\""
#define PCI(id, type) "type=\"PCIDev\" pci_busid=\"" id "\" pci_type=\"" type "\" pci_link_speed=\"0\""
#define SWITCH(id, bus) "type=\"Bridge\" bridge_type=\"1-1\" depth=\"1\" pci_busid=\"" id \
	"\" pci_type=\"0604 [1000:c030] [0000:0000] 00\" bridge_pci=\"" bus "\" pci_link_speed=\"0\""
#define GPU_TYPE "0302 [10de:2330] [10de:16c1] a1"
#define NIC_TYPE "0207 [15b3:1021] [15b3:0041] 00"

static const char xml[] =
"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
"<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
"<topology version=\"2.0\">\n"
"<object type=\"Machine\" os_index=\"0\" " CPUS("0x00000003", "0x00000003") ">\n"
" <object type=\"Package\" os_index=\"0\" " CPUS("0x00000001", "0x00000001") ">\n"
"  <object type=\"NUMANode\" os_index=\"0\" " CPUS("0x00000001", "0x00000001") " local_memory=\"1073741824\"/>\n"
"  <object type=\"Core\" os_index=\"0\" " CPUS("0x00000001", "0x00000001") ">\n"
"   <object type=\"PU\" os_index=\"0\" " CPUS("0x00000001", "0x00000001") "/>\n"
"  </object>\n"
"  <object type=\"Bridge\" bridge_type=\"0-1\" depth=\"0\" bridge_pci=\"0000:[00-02]\">\n"
"   <object " SWITCH("0000:00:01.0", "0000:[01-02]") ">\n"
"    <object " PCI("0000:01:00.0", GPU_TYPE) "/>\n"
"    <object " PCI("0000:02:00.0", NIC_TYPE) ">\n"
"     <object type=\"OSDev\" name=\"rxe1\" osdev_type=\"3\"/>\n"
"    </object>\n"
"   </object>\n"
"  </object>\n"
" </object>\n"
" <object type=\"Package\" os_index=\"1\" " CPUS("0x00000002", "0x00000002") ">\n"
"  <object type=\"NUMANode\" os_index=\"1\" " CPUS("0x00000002", "0x00000002") " local_memory=\"1073741824\"/>\n"
"  <object type=\"Core\" os_index=\"1\" " CPUS("0x00000002", "0x00000002") ">\n"
"   <object type=\"PU\" os_index=\"1\" " CPUS("0x00000002", "0x00000002") "/>\n"
"  </object>\n"
"  <object type=\"Bridge\" bridge_type=\"0-1\" depth=\"0\" bridge_pci=\"0000:[80-85]\">\n"
"   <object " SWITCH("0000:80:01.0", "0000:[81-82]") ">\n"
"    <object " PCI("0000:81:00.0", GPU_TYPE) "/>\n"
"    <object " PCI("0000:82:00.0", NIC_TYPE) ">\n"
"     <object type=\"OSDev\" name=\"rxe0\" osdev_type=\"3\"/>\n"
"    </object>\n"
"   </object>\n"
"   <object " PCI("0000:85:00.0", GPU_TYPE) "/>\n"
"  </object>\n"
" </object>\n"
"</object>\n"
"</topology>\n";

int xt_topo_write(const char *path)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return -errno;
	ok = fputs(xml, f) >= 0;
	if (fclose(f) || !ok)
		return -EIO;
	return 0;
}
