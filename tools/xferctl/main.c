// SPDX-License-Identifier: MIT
/*
 * xferctl [OPTIONS] OBJECT [COMMAND] [FILTERS]   (after iproute2's rdma)
 *
 * Objects are matched whole (no abbreviations: a script that works today
 * must not change meaning when an object is added). Each object's first
 * command is what runs with none. Errors go through tools/common/out.c:
 * a line on stderr, and with -j also {"error": ...} on stdout; exit 1.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "xferctl.h"

struct object {
	const char *name;
	const char *const *cmds;   /* cmds[0] runs when none is given */
	int (*run)(struct ctl *c, const char *cmd, int argc, char **argv);
	const char *help;
};

static const char *const show[] = { "show", NULL };

static const struct object objects[] = {
	{ "module", show, obj_module,
	  "loaded or not, ABI version against the library's, parameters, pinned bytes vs limit" },
	{ "region", show, obj_region, "pinned regions [pid N] [region N]" },
	{ "share", show, obj_share, "shares of regions [pid N] [region N]" },
	{ "ctx", show, obj_ctx, "contexts (processes with /dev/xfer open) [pid N]" },
	{ "stat", show, obj_stat,
	  "per engine and rail counters from the stats pages [pid N] [-o prom FILE]" },
	{ "monitor", show, obj_monitor,
	  "rates per engine and rail [-i SEC] [-c COUNT] [pid N], until interrupted" },
	{ "topo", show, obj_topo, "GPUs and NICs, PCIe distance, the NICs each GPU's engine opens" },
	{ "health", show, obj_health, "exit 0 when usable, else one line per problem [nics N]" },
	{ "check", show, obj_check,
	  "self-test: module pin/share, loopback write+imm per provider\n"
	  "          [module | provider NAME] [timeout SEC]" },
};
#define NOBJ (int)(sizeof(objects) / sizeof(objects[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xferctl [OPTIONS] OBJECT [COMMAND] [FILTERS]\n"
		"       xferctl help\n"
		"OPTIONS: -j|--json  JSON output (errors too)   --pretty  indented JSON (implies -j)\n"
		"         -d|--details  health: the checks passed too; topo: PCIe hop counts\n"
		"         -h|--help     this text\n"
		"OBJECTS (COMMAND: show, the default):\n");
	for (int i = 0; i < NOBJ; i++)
		fprintf(f, "  %-7s %s\n", objects[i].name, objects[i].help);
	fprintf(f,
		"FILTERS: pid N, region N (where the object lists them); health: nics N\n"
		"Files: XFERCTL_SYSFS (default /sys), XFERCTL_DEBUGFS (/sys/kernel/debug) and\n"
		"XFER_KMOD_DEV (/dev/xfer) move where the module's files are read, XFERCTL_PROC\n"
		"(/proc) where stat and monitor look for processes, XFERCTL_STATE_DIR\n"
		"(/run/xferctl) where health keeps its last sample.\n");
}

/* Help is not a result: the document is dropped unprinted. */
static int help(struct ctl *c)
{
	usage(stdout);
	json_object_put(c->o.doc);
	c->o.doc = NULL;
	return 0;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

int main(int argc, char **argv)
{
	enum { O_PRETTY = 1000 };
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' },
		{ "pretty", no_argument, 0, O_PRETTY },
		{ "details", no_argument, 0, 'd' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct ctl c = { 0 };
	const struct object *ob = NULL;
	const char *cmd;
	int opt, rc;

	out_init(&c.o, "xferctl");
	/* Options come before the object (rdma's order): stop at the first
	 * word so that filters are never taken for options. */
	while ((opt = getopt_long(argc, argv, "+:jdh", lo, NULL)) != -1) {
		switch (opt) {
		case 'j':
			c.o.json = true;
			break;
		case O_PRETTY:
			c.o.json = c.o.pretty = true;
			break;
		case 'd':
			c.details = true;
			break;
		case 'h':
			return help(&c);
		default:
			args_getopt_error(&c.o, opt, argv, "see xferctl --help");
			out_finish(&c.o);
			return 1;
		}
	}
	c.sysfs = env_or("XFERCTL_SYSFS", "/sys");
	c.debugfs = env_or("XFERCTL_DEBUGFS", "/sys/kernel/debug");
	c.dev = env_or("XFER_KMOD_DEV", "/dev/xfer");
	c.proc = env_or("XFERCTL_PROC", "/proc");
	c.state_dir = env_or("XFERCTL_STATE_DIR", "/run/xferctl");
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return out_fail(&c.o, 0, "no object given (see xferctl --help)");
	}
	if (!strcmp(argv[0], "help"))
		return help(&c);
	for (int i = 0; i < NOBJ; i++)
		if (!strcmp(argv[0], objects[i].name))
			ob = &objects[i];
	if (!ob)
		return out_fail(&c.o, 0, "unknown object '%s' (see xferctl --help)", argv[0]);
	argc--;
	argv++;
	cmd = ob->cmds[0];
	if (argc > 0) {
		bool known = false;

		if (!strcmp(argv[0], "help"))
			return help(&c);
		for (int i = 0; ob->cmds[i]; i++)
			if (!strcmp(argv[0], ob->cmds[i]))
				known = true;
		/* A filter word after the object means "show, filtered" (rdma's
		 * `rdma res show qp lqpn 5` reads the same way). */
		if (known) {
			cmd = argv[0];
			argc--;
			argv++;
		} else if (ob->run != obj_check && strcmp(argv[0], "pid") &&
			   strcmp(argv[0], "region") && strcmp(argv[0], "nics") &&
			   argv[0][0] != '-') {
			/* check's words are its own; "-o" is stat's own option */
			return out_fail(&c.o, 0, "%s: unknown command '%s' (%s takes: show)",
					ob->name, argv[0], ob->name);
		}
	}
	rc = ob->run(&c, cmd, argc, argv);
	out_finish(&c.o);
	return rc;
}
