/* SPDX-License-Identifier: MIT */
/*
 * NIC and worker placement from the PCIe topology (lib/core/topo.c), on the
 * described two-socket GPU node of tests/harness/xt_topo.h read by hwloc
 * through HWLOC_XMLFILE:
 *  - each GPU gets the NIC behind its own switch first, then the rest by
 *    distance; a GPU with no NIC of its own gets its socket's NIC first;
 *  - `max` caps the list; no GPU, or an index past the last GPU, gives none;
 *  - CUDA_VISIBLE_DEVICES renumbers ("2,0": device 0 is the third GPU), and
 *    what cannot be resolved without CUDA (UUIDs, an empty list) gives none;
 *  - the worker goes to a core of the GPU's socket;
 *  - an engine on a provider without those NICs (shm, tcp) still opens, on
 *    the provider's own rail: topology names are a preference.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "xt_topo.h"

static char names[8][XFER_TOPO_NAME];

/* The ranking for `gpu` joined by commas ("" for none). */
static const char *ranked(int gpu, int max)
{
	static char out[256];
	struct xfer_topo *topo = NULL;
	int n = xfer_topo_nics_near_gpu(&topo, gpu, names, max);

	xfer_topo_free(topo);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, names[i]);
	}
	return out;
}

#define RANKED(gpu, max, want)                                                        \
	do {                                                                           \
		const char *got_ = ranked(gpu, max);                                   \
		EXPECT_STREQ(want, got_) TH_LOG("gpu %d: \"%s\", want \"%s\"", gpu, got_, want); \
	} while (0)

/* The described node installed for hwloc (HWLOC_XMLFILE), CUDA_VISIBLE_DEVICES unset. */
FIXTURE(topo) {
	char path[32];
};

FIXTURE_SETUP(topo)
{
	ASSERT_EQ(0, xt_topo_install(self->path)) TH_LOG("topology description written");
	unsetenv("CUDA_VISIBLE_DEVICES");
}

FIXTURE_TEARDOWN(topo)
{
	xt_topo_remove(self->path);
}

/* NICs ranked by PCIe distance from each GPU. */
TEST_F(topo, nics_ranked_by_pcie_distance)
{
	RANKED(0, 8, "rxe1,rxe0");
	RANKED(1, 8, "rxe0,rxe1");
	RANKED(2, 8, "rxe0,rxe1");   /* no NIC of its own: its socket's first */
	RANKED(0, 1, "rxe1");
	RANKED(3, 8, "");            /* only three GPUs */
	RANKED(-1, 8, "");
}

/* CUDA_VISIBLE_DEVICES renumbers; what cannot be resolved gives none. */
TEST_F(topo, cuda_visible_devices_renumbers)
{
	setenv("CUDA_VISIBLE_DEVICES", "2,0", 1);
	RANKED(0, 8, "rxe0,rxe1");
	RANKED(1, 8, "rxe1,rxe0");
	RANKED(2, 8, "");            /* only two visible */
	setenv("CUDA_VISIBLE_DEVICES", "GPU-5f0e4c1a-0000-0000-0000-000000000000", 1);
	RANKED(0, 8, "");
	setenv("CUDA_VISIBLE_DEVICES", "", 1);
	RANKED(0, 8, "");
	unsetenv("CUDA_VISIBLE_DEVICES");
}

/* The worker goes to a core of the GPU's socket. */
TEST_F(topo, worker_on_gpu_socket_core)
{
	struct xfer_topo *topo = NULL;   /* one load answers all four */

	EXPECT_EQ(0, xfer_topo_worker_cpu(&topo, 0, NULL));
	EXPECT_EQ(1, xfer_topo_worker_cpu(&topo, 1, NULL));
	EXPECT_EQ(1, xfer_topo_worker_cpu(&topo, 2, NULL));
	EXPECT_EQ(-1, xfer_topo_worker_cpu(&topo, -1, NULL));
	xfer_topo_free(topo);
}

/* A provider without the topology's NICs opens its own. */
TEST_F(topo, provider_without_topology_nics_opens_its_own)
{
	const char *provs[4];
	int np = xt_providers(provs, 4);
	struct xfer_engine_attr a;
	struct xfer_engine_info info = { .size = sizeof(info) };
	xfer_engine *e = NULL;

	ASSERT_TRUE(np > 0) TH_LOG("no loopback provider");
	xfer_engine_attr_init(&a);
	a.provider = provs[0];
	a.node = "127.0.0.1";
	a.gpu = 0;   /* the topology says rxe1, which this provider does not have */
	XT_ASSERT_OK(xfer_engine_create(&a, &e));
	XT_EXPECT_OK(xfer_engine_query(e, &info));
	EXPECT_TRUE(strcmp(info.rail_names[0], "rxe1") != 0) TH_LOG("%s opened a rail named rxe1", provs[0]);
	xfer_engine_destroy(e);
}

TEST_HARNESS_MAIN
