// SPDX-License-Identifier: MIT
/*
 * xferctl monitor [-i SEC] [-c COUNT] [pid N]: rates per engine and rail
 * from the deltas of the stats pages' counters between two samples, one
 * block per interval as iostat prints them (with -j: one JSON object per
 * line per interval). Until SIGINT or SIGTERM (exit 0), or COUNT blocks.
 * An engine seen in only one of two samples (started or gone between
 * them) has no rate that interval; a counter that went backwards (the
 * page is another engine's now) is left out the same way.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "xferctl.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static const char *const rate_keys[] = { "bytes_completed", "ops_completed", "ops_failed",
					 "imm_received" };
static const char *const rate_names[] = { "bytes_per_s", "ops_per_s", "failed_per_s",
					  "imm_per_s" };
#define NRATES 4

static json_object *find_engine(json_object *engines, const char *key)
{
	for (size_t i = 0; i < json_object_array_length(engines); i++) {
		json_object *e = json_object_array_get_idx(engines, i);

		if (!strcmp(json_object_get_string(json_object_object_get(e, "key")), key))
			return e;
	}
	return NULL;
}

static int64_t geti(json_object *o, const char *key)
{
	return json_object_get_int64(json_object_object_get(o, key));
}

/* The block of one interval: a row per rail of each engine in both samples. */
static json_object *rates(json_object *prev, json_object *now, double dt)
{
	json_object *rows = json_object_new_array();

	for (size_t i = 0; i < json_object_array_length(now); i++) {
		json_object *e = json_object_array_get_idx(now, i);
		json_object *p = find_engine(prev, json_object_get_string(json_object_object_get(e, "key")));
		json_object *rn = json_object_object_get(e, "rails"), *rp;

		if (!p)
			continue;
		rp = json_object_object_get(p, "rails");
		for (size_t r = 0; r < json_object_array_length(rn) && r < json_object_array_length(rp); r++) {
			json_object *a = json_object_array_get_idx(rp, r), *b = json_object_array_get_idx(rn, r);
			json_object *row = json_object_new_object(), *v = NULL;
			bool back = false;

			json_object_object_add(row, "source", json_object_get(json_object_object_get(e, "source")));
			json_object_object_add(row, "pid", json_object_get(json_object_object_get(e, "pid")));
			json_object_object_add(row, "comm", json_object_get(json_object_object_get(e, "comm")));
			json_object_object_add(row, "ctx", json_object_get(json_object_object_get(e, "ctx")));
			json_object_object_add(row, "engine_id",
					       json_object_get(json_object_object_get(e, "engine_id")));
			json_object_object_add(row, "rail", json_object_new_int64(geti(b, "rail")));
			if (json_object_object_get_ex(b, "name", &v))
				json_object_object_add(row, "name", json_object_get(v));
			for (int k = 0; k < NRATES; k++) {
				int64_t d = geti(b, rate_keys[k]) - geti(a, rate_keys[k]);

				back |= d < 0;
				json_object_object_add(row, rate_names[k],
						       json_object_new_double(d < 0 ? 0 : (double)d / dt));
			}
			if (json_object_object_get_ex(b, "ops_inflight", &v))
				json_object_object_add(row, "inflight", json_object_get(v));
			else
				json_object_object_add(row, "inflight", NULL);
			if (back)
				json_object_put(row);
			else
				json_object_array_add(rows, row);
		}
	}
	return rows;
}

static void print_text(json_object *rows, double dt)
{
	char when[32];
	time_t t = time(NULL);
	struct tm tm;

	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", localtime_r(&t, &tm));
	printf("%s  interval %.3g s  engines' rails %zu\n", when, dt, json_object_array_length(rows));
	printf("%-7s %8s %-15s %-8s %4s %-12s %14s %12s %12s %12s %9s\n", "source", "pid", "comm",
	       "engine", "rail", "name", "bytes_per_s", "ops_per_s", "failed_per_s", "imm_per_s",
	       "inflight");
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i), *v = NULL;
		char infl[24] = "-";

		if (json_object_object_get_ex(r, "inflight", &v) && v)
			snprintf(infl, sizeof(infl), "%lld", (long long)json_object_get_int64(v));
		json_object *eid = json_object_object_get(r, "engine_id");

		/* the engine id's first 8 hex digits tell a process's engines apart */
		printf("%-7s %8lld %-15.15s %-8.8s %4lld %-12.12s %14.1f %12.1f %12.1f %12.1f %9s\n",
		       json_object_get_string(json_object_object_get(r, "source")),
		       (long long)geti(r, "pid"), json_object_get_string(json_object_object_get(r, "comm")),
		       eid ? json_object_get_string(eid) : "-", (long long)geti(r, "rail"),
		       json_object_object_get_ex(r, "name", &v) ? json_object_get_string(v) : "-",
		       json_object_get_double(json_object_object_get(r, "bytes_per_s")),
		       json_object_get_double(json_object_object_get(r, "ops_per_s")),
		       json_object_get_double(json_object_object_get(r, "failed_per_s")),
		       json_object_get_double(json_object_object_get(r, "imm_per_s")), infl);
	}
	printf("\n");
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int obj_monitor(struct ctl *c, const char *cmd, int argc, char **argv)
{
	char *fargv[16];
	double interval = 1.0;
	uint32_t count = 0;   /* 0: until interrupted */
	struct filters f;
	struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: sleeps end */
	json_object *prev = NULL;
	const char *note;
	int fargc = 0, bad = 0;

	(void)cmd;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-i") || !strcmp(argv[i], "-c")) {
			if (i + 1 >= argc)
				return out_fail(&c->o, 0, "monitor: %s needs a value", argv[i]);
			if (argv[i][1] == 'i' ? arg_pos_double(&c->o, "-i", argv[i + 1], 86400, &interval)
					      : arg_u32(&c->o, "-c", argv[i + 1], 1, UINT32_MAX, &count)) {
				out_finish(&c->o);
				return 1;   /* said why */
			}
			i++;
		} else if (fargc < 16) {
			fargv[fargc++] = argv[i];
		} else {
			return out_fail(&c->o, 0, "monitor: too many words");
		}
	}
	if (interval < 0.01)
		return out_fail(&c->o, 0, "monitor: -i %g: the interval is at least 0.01 s", interval);
	if (filters_parse(c, "monitor", F_PID, fargc, fargv, &f)) {
		out_finish(&c->o);
		return 1;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (stats_collect(c, &f, &prev, &note))
		bad = 1;
	if (note)
		fprintf(stderr, "xferctl: monitor: %s\n", note);
	double t0 = now_s();

	for (uint32_t n = 0; !stop && (!count || n < count); n++) {
		struct timespec ts;
		double until = t0 + interval, left;
		json_object *now, *rows;

		/* Sleep to the interval's end; a signal ends it. */
		while (!stop && (left = until - now_s()) > 0) {
			ts.tv_sec = (time_t)left;
			ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
			nanosleep(&ts, NULL);
		}
		if (stop)
			break;
		if (stats_collect(c, &f, &now, &note))
			bad = 1;
		double t1 = now_s(), dt = t1 - t0;

		rows = rates(prev, now, dt);
		if (c->o.json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "time", json_object_new_int64((int64_t)time(NULL)));
			json_object_object_add(o, "interval_s", json_object_new_double(dt));
			json_object_object_add(o, "rails", rows);
			printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
			fflush(stdout);
			json_object_put(o);
		} else {
			print_text(rows, dt);
			json_object_put(rows);
		}
		json_object_put(prev);
		prev = now;
		t0 = t1;
	}
	json_object_put(prev);
	/* Each interval was its own document; a failure adds one more. */
	if (!c->o.failed) {
		json_object_put(c->o.doc);
		c->o.doc = NULL;
	}
	return bad ? 1 : 0;
}
