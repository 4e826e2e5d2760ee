/* SPDX-License-Identifier: MIT */
/* xfer-bench's options: every value checked (tools/common/args.c), every
 * refusal names the option and the value. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "bench.h"

static const char *const test_names[] = { "single", "paged", "imm", "scatter", NULL };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xfer-bench [options]                 loopback (forks its peers)\n"
		"       xfer-bench --server [options]        wait for a client\n"
		"       xfer-bench --client HOST [options]   run against a server\n"
		"  -p, --provider P     shm (default), tcp;ofi_rxm, efa, verbs;ofi_rxm (libfabric),\n"
		"                       verbs, local (xfer's own; local: processes on one host)\n"
		"      --rails N        NICs per engine (default 1)\n"
		"      --devices LIST   NIC names, one per rail, e.g. mlx5_0,mlx5_1\n"
		"      --gpu N          CUDA device index: with no --devices, the NICs nearest it\n"
		"  -t, --tests LIST     single,paged,imm,scatter (default all)\n"
		"  -s, --sizes LIST     write sizes of the single and scatter tests (scatter: per\n"
		"                       peer), K/M/G suffixes, e.g. 4K,1M,64M (default: single\n"
		"                       1K..64M by 4, scatter 4K,64K,1M); at most 256M\n"
		"      --page-size LIST page sizes of the paged test (default 1K,4K,16K,64K)\n"
		"      --pages LIST     pages per paged operation (default 100,1000,10000)\n"
		"  -n, --iters N        operations per measurement (default: from a byte budget)\n"
		"  -r, --reps N         repetitions, xfer and raw interleaved: medians, ranges,\n"
		"                       and the median of the paired ratios (default 1, max %d)\n"
		"      --peers N        scatter peers in loopback (default 3, max %d)\n"
		"      --raw            also measure plain libfabric and print xfer/raw ratios\n"
		"      --node ADDR      local address for IP providers (default 127.0.0.1)\n"
		"  -P, --port N         out-of-band TCP port (default %d)\n"
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
	       O_RAILS, O_PAGE_SIZE, O_PAGES };
	static const struct option lo[] = {
		{ "provider", 1, 0, 'p' }, { "rails", 1, 0, O_RAILS }, { "sizes", 1, 0, 's' },
		{ "iters", 1, 0, 'n' }, { "tests", 1, 0, 't' }, { "peers", 1, 0, O_PEERS },
		{ "raw", 0, 0, O_RAW }, { "node", 1, 0, O_NODE }, { "port", 1, 0, 'P' },
		{ "json", 0, 0, 'j' }, { "pretty", 0, 0, O_PRETTY }, { "server", 0, 0, O_SERVER },
		{ "client", 1, 0, O_CLIENT }, { "reps", 1, 0, 'r' }, { "help", 0, 0, 'h' },
		{ "devices", 1, 0, O_DEVICES }, { "gpu", 1, 0, O_GPU },
		{ "page-size", 1, 0, O_PAGE_SIZE }, { "pages", 1, 0, O_PAGES }, { 0 },
	};
	uint32_t port = PORT_DEFAULT;
	int c, rc = 0;

	*exit_now = false;
	/* -j anywhere on the line makes every message below JSON */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--json") || !strcmp(argv[i], "--pretty"))
			out->json = true;
	opterr = 0;   /* getopt's own messages are not JSON: say it here */
	while (!rc && (c = getopt_long(argc, argv, ":p:s:n:t:P:r:jh", lo, NULL)) != -1) {
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
			out_error(out, "unknown option '%s' (see --help)", argv[optind - 1]);
			rc = -1;
		}
	}
	if (!rc && optind < argc) {
		out_error(out, "unexpected argument '%s' (see --help)", argv[optind]);
		rc = -1;
	}
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
	/* The region holds the largest write and page asked for, and a scatter
	 * size once per peer (each peer's piece lies apart). */
	uint64_t need = max_of(o->sizes, o->nsizes), pmax = max_of(o->page_sizes, o->npage_sizes);
	uint32_t peers = o->client ? 1 : o->scatter_peers;

	need = pmax > need ? pmax : need;
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
