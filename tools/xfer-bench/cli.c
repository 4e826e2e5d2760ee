/* SPDX-License-Identifier: MIT */
/* xfer-bench's options: every value checked (tools/common/args.c), every
 * refusal names the option and the value. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "bench.h"

static const char *const test_names[] = { "single", "paged", "imm", "scatter", "kv", "peers",
					  "first", NULL };
static const char *const target_names[] = { "busy", "idle", "both", NULL };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xfer-bench [options]                 loopback (forks its peers)\n"
		"       xfer-bench --server [options]        wait for a client\n"
		"       xfer-bench --client HOST [options]   run against a server\n"
		"  -p, --provider P     local (xfer's own: processes on one host; the default),\n"
		"                       verbs (xfer's own), shm, tcp;ofi_rxm, efa, verbs;ofi_rxm\n"
		"                       (libfabric); default with --raw: shm, with --server or\n"
		"                       --client: tcp;ofi_rxm\n"
		"      --rails N        NICs per engine (default 1)\n"
		"      --devices LIST   NIC names, one per rail, e.g. mlx5_0,mlx5_1\n"
		"      --gpu N          CUDA device index: with no --devices, the NICs nearest it\n"
		"  -t, --tests LIST     single,paged,imm,scatter,kv (default), and on request:\n"
		"                       peers (one writer to --peers targets, as many writers to\n"
		"                       one target), first (the first write to a new peer: cold,\n"
		"                       after xfer_engine_connect, steady)\n"
		"      --target MODE    busy, idle or both (default): how the target receives.\n"
		"                       busy: back-to-back traffic keeps its worker awake; idle:\n"
		"                       quiet for --idle-gap, then blocked in xfer_imm_wait per\n"
		"                       immediate, as an application waits\n"
		"      --idle-gap MS    quiet time before each idle measurement (default 5, 1..10000)\n"
		"      --kv L,P,S       the kv case: L layers of P pages of S bytes, one paged\n"
		"                       write and one immediate per layer (default 32,64,4K)\n"
		"  -s, --sizes LIST     write sizes of the single and scatter tests (scatter: per\n"
		"                       peer), K/M/G suffixes, e.g. 4K,1M,64M (default: single\n"
		"                       1K..64M by 4, scatter 4K,64K,1M); at most 256M\n"
		"      --page-size LIST page sizes of the paged test (default 1K,4K,16K,64K)\n"
		"      --pages LIST     pages per paged operation (default 100,1000,10000)\n"
		"  -n, --iters N        operations per measurement (default: from a byte budget)\n"
		"  -r, --reps N         repetitions, xfer and raw interleaved: medians, ranges,\n"
		"                       and the median of the paired ratios (default 1, max %d)\n"
		"      --peers N        targets of scatter and peers in loopback (default 3, max %d)\n"
		"      --raw            also measure plain libfabric and print xfer/raw ratios\n"
		"      --node ADDR      local address for IP providers and the out-of-band socket:\n"
		"                       the engine binds to it and publishes it (default: loopback\n"
		"                       127.0.0.1; --server/--client: the address the out-of-band\n"
		"                       connection runs over, which the peer can reach)\n"
		"  -v, --verbose        print the rail addresses each side publishes\n"
		"  -P, --port N         out-of-band TCP port (default %d; --rdzv: any free one)\n"
		"      --rdzv URL       launcher mode: etcd://host:port or file:///dir; two ranks\n"
		"                       (torchrun, srun, mpirun, or --rank/--world-size), rank 0\n"
		"                       the initiator, rank 1 the target, found through the store\n"
		"      --job ID --rank N --world-size N --local-rank N --rdzv-lease-s N\n"
		"                       the job, where this rank is (default: the launcher's\n"
		"                       variables), how soon a dead rank's keys vanish\n"
		"  -j, --json           one JSON document (errors too: {\"error\": ...})\n"
		"      --pretty         indented JSON (implies -j)\n"
		"  -h, --help           this text\n",
		MAX_REPS, MAX_PEERS, PORT_DEFAULT);
}

static uint64_t max_of(const uint64_t *v, int n)
{
	uint64_t m = 0;

	for (int i = 0; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

int bench_options(int argc, char **argv, struct opts *o, struct out *out, bool *exit_now)
{
	enum { O_PEERS = 256, O_RAW, O_NODE, O_PRETTY, O_SERVER, O_CLIENT, O_DEVICES, O_GPU,
	       O_RAILS, O_PAGE_SIZE, O_PAGES, O_TARGET, O_IDLE_GAP, O_KV };
	static const struct option lo[] = {
		{ "provider", 1, 0, 'p' }, { "rails", 1, 0, O_RAILS }, { "sizes", 1, 0, 's' },
		{ "iters", 1, 0, 'n' }, { "tests", 1, 0, 't' }, { "peers", 1, 0, O_PEERS },
		{ "raw", 0, 0, O_RAW }, { "node", 1, 0, O_NODE }, { "port", 1, 0, 'P' },
		{ "json", 0, 0, 'j' }, { "pretty", 0, 0, O_PRETTY }, { "server", 0, 0, O_SERVER },
		{ "client", 1, 0, O_CLIENT }, { "reps", 1, 0, 'r' }, { "help", 0, 0, 'h' },
		{ "devices", 1, 0, O_DEVICES }, { "gpu", 1, 0, O_GPU },
		{ "page-size", 1, 0, O_PAGE_SIZE }, { "pages", 1, 0, O_PAGES },
		{ "target", 1, 0, O_TARGET }, { "idle-gap", 1, 0, O_IDLE_GAP }, { "kv", 1, 0, O_KV },
		{ "verbose", 0, 0, 'v' }, LAUNCH_LONGOPTS_NO_NODE, { 0 },
	};
	uint32_t port = PORT_DEFAULT, mode;
	int c, rc = 0, nkv;

	*exit_now = false;
	/* -j anywhere on the line makes every message below JSON */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--json") || !strcmp(argv[i], "--pretty"))
			out->json = true;
	opterr = 0;   /* getopt's own messages are not JSON: say it here */
	while (!rc && (c = getopt_long(argc, argv, ":p:s:n:t:P:r:jhv", lo, NULL)) != -1) {
		switch (c) {
		case 'p': o->provider = optarg; break;
		case O_RAILS: rc = arg_u32(out, "--rails", optarg, 1, XFER_MAX_RAILS, &o->rails); break;
		case 's':
			rc = arg_size_list(out, "--sizes", optarg, 1, REGION_MAX, o->sizes, MAX_SIZES,
					   &o->nsizes);
			o->sizes_given = true;
			break;
		case O_PAGE_SIZE:
			rc = arg_size_list(out, "--page-size", optarg, 1, REGION_MAX, o->page_sizes,
					   MAX_SIZES, &o->npage_sizes);
			break;
		case O_PAGES:
			rc = arg_size_list(out, "--pages", optarg, 1, 1u << 20, o->page_counts,
					   MAX_SIZES, &o->npage_counts);
			break;
		case 'n': rc = arg_u64(out, "--iters", optarg, 1, UINT32_MAX, &o->iters); break;
		case 'r': rc = arg_u32(out, "--reps", optarg, 1, MAX_REPS, &o->reps); break;
		case 't': rc = arg_word_list(out, "--tests", optarg, test_names, &o->tests); break;
		case O_PEERS:
			rc = arg_u32(out, "--peers", optarg, 1, MAX_PEERS, &o->scatter_peers);
			break;
		case O_TARGET:
			rc = arg_word_list(out, "--target", optarg, target_names, &mode);
			if (!rc && (mode & (mode - 1))) {
				out_error(out, "--target: '%s': one of busy, idle, both", optarg);
				rc = -1;
			}
			o->target = mode & 4 ? TGT_BUSY | TGT_IDLE : mode;
			break;
		case O_IDLE_GAP:
			rc = arg_u32(out, "--idle-gap", optarg, 1, 10000, &o->idle_gap_ms);
			break;
		case O_KV:
			/* layers and pages are counts, the page size a size: one list */
			rc = arg_size_list(out, "--kv", optarg, 1, REGION_MAX, o->kv, 3, &nkv);
			if (!rc && nkv != 3) {
				out_error(out, "--kv: '%s': three values, layers,pages,page size "
					  "(e.g. 32,64,4K)", optarg);
				rc = -1;
			} else if (!rc && (o->kv[0] > 4096 || o->kv[1] > 65536 ||
					   o->kv[0] * o->kv[1] * o->kv[2] > REGION_MAX)) {
				out_error(out, "--kv: '%s': at most 4096 layers, 65536 pages, and "
					  "all pages within %llu MiB", optarg, REGION_MAX >> 20);
				rc = -1;
			}
			break;
		case 'v': o->verbose = true; break;
		case O_RAW: o->raw = true; break;
		case O_NODE: o->node = optarg; break;
		case 'P': rc = arg_u32(out, "--port", optarg, 1, 65535, &port); break;
		case 'j': out->json = true; break;
		case O_PRETTY: out->json = out->pretty = true; break;
		case O_SERVER: o->server = true; break;
		case O_CLIENT: o->client = optarg; break;
		case O_DEVICES: o->devices = optarg; break;
		case O_GPU: rc = arg_int(out, "--gpu", optarg, -1, 1023, &o->gpu); break;
		case 'h':
			usage(stdout);
			*exit_now = true;
			return 0;
		case ':':
			out_error(out, "%s needs a value (see --help)", argv[optind - 1]);
			rc = -1;
			break;
		default:
			rc = launch_opt(out, c, optarg, &o->launch);
			if (rc == 1) {
				out_error(out, "unknown option '%s' (see --help)", argv[optind - 1]);
				rc = -1;
			}
		}
	}
	if (!rc && launch_stray(&o->launch)) {
		out_error(out, "%s is for launcher mode: give --rdzv URL too",
			  launch_stray(&o->launch));
		rc = -1;
	}
	if (!rc && o->launch.url && (o->server || o->client)) {
		out_error(out, "--rdzv finds the peer through the store: not with --%s",
			  o->server ? "server" : "client");
		rc = -1;
	}
	o->launch.node = o->node;
	if (!rc && optind < argc) {
		out_error(out, "unexpected argument '%s' (see --help)", argv[optind]);
		rc = -1;
	}
	/* No provider named: on one host xfer's own "local" (libfabric 1.17's
	 * shm cannot be protected from a peer that dies in the middle of its
	 * exchange: docs/concepts.md); --raw compares with libfabric, so shm;
	 * across hosts tcp;ofi_rxm, which any IP network carries. */
	if (!o->provider)
		o->provider = o->server || o->client || o->launch.url ? "tcp;ofi_rxm"
			      : o->raw ? "shm" : "local";
	if (!rc && o->raw && (!strcmp(o->provider, "verbs") || !strcmp(o->provider, "local"))) {
		out_error(out, "--raw compares with libfabric; provider '%s' has no libfabric "
			  "counterpart (verbs: use perftest)", o->provider);
		rc = -1;
	}
	o->port = (uint16_t)port;
	if (!o->nsizes)
		for (uint64_t s = 1024; s <= (64u << 20); s *= 4)
			o->sizes[o->nsizes++] = s;
	if (!o->npage_sizes)
		for (uint64_t s = 1024; s <= 65536; s *= 4)
			o->page_sizes[o->npage_sizes++] = s;
	if (!o->npage_counts)
		for (uint64_t n = 100; n <= 10000; n *= 10)
			o->page_counts[o->npage_counts++] = n;
	if (!o->tests)
		o->tests = T_ALL;
	if (!o->target)
		o->target = TGT_BUSY | TGT_IDLE;
	if (!o->idle_gap_ms)
		o->idle_gap_ms = 5;
	if (!o->kv[0]) {
		o->kv[0] = 32;
		o->kv[1] = 64;
		o->kv[2] = 4096;
	}
	if (!rc && (o->client || o->launch.url) && (o->tests & (1u << T_PEERS))) {
		out_error(out, "-t peers forks its writers and targets on this host: loopback only, "
			  "not with --%s", o->client ? "client" : "rdzv");
		rc = -1;
	}
	/* The region holds the largest write and page asked for, and a scatter
	 * size once per peer (each peer's piece lies apart). */
	uint64_t need = max_of(o->sizes, o->nsizes), pmax = max_of(o->page_sizes, o->npage_sizes);
	uint32_t peers = o->client || o->launch.url ? 1 : o->scatter_peers;

	need = pmax > need ? pmax : need;
	/* the kv case's pages all lie apart, as in a KV cache */
	if (o->tests & (1u << T_KV)) {
		uint64_t kv = o->kv[0] * o->kv[1] * o->kv[2];

		need = need > kv ? need : kv;
	}
	o->region = need > REGION_MIN ? need : REGION_MIN;
	if (!rc && (o->tests & (1u << T_SCATTER)) && o->sizes_given) {
		uint64_t smax = max_of(o->sizes, o->nsizes);

		if (smax * peers > REGION_MAX) {
			out_error(out, "--sizes: %llu bytes to each of %u scatter peers exceed the "
				  "%llu MiB region (fewer --peers, or -t without scatter)",
				  (unsigned long long)smax, peers, REGION_MAX >> 20);
			rc = -1;
		}
		if (smax * peers > o->region)
			o->region = smax * peers;
	}
	/* round up to whole pages: the region is page-aligned and registered */
	o->region = (o->region + 4095) & ~4095ull;
	return rc ? 2 : 0;
}
