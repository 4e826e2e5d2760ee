/* SPDX-License-Identifier: MIT */
/*
 * Strict parsing of option values, shared by every tool: the whole string
 * must be the number (no trailing junk), it must fit, and it must lie in
 * the range the option allows. On a bad value each function prints
 * "TOOL: --OPTION: VALUE: why" through out_error (so -j prints a JSON
 * error) and returns -EINVAL; the caller exits non-zero.
 */
#ifndef XFER_TOOLS_ARGS_H
#define XFER_TOOLS_ARGS_H

#include <stdint.h>

struct out;

/* Decimal or 0x-hex integer in [min, max]. */
int arg_u64(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max,
	    uint64_t *v);
int arg_u32(struct out *o, const char *opt, const char *s, uint32_t min, uint32_t max,
	    uint32_t *v);
int arg_int(struct out *o, const char *opt, const char *s, int min, int max, int *v);
/* A positive finite decimal number (rates, times), at most max. */
int arg_pos_double(struct out *o, const char *opt, const char *s, double max, double *v);
/* A byte count with an optional K, M or G suffix (powers of 1024), in [min, max]. */
int arg_size(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max,
	     uint64_t *v);
/* A comma list of sizes, at most cap of them. */
int arg_size_list(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max,
		  uint64_t *v, int cap, int *n);
/* A comma list of words, each one of names[] (NULL-terminated): sets bit i
 * of *mask for names[i]. */
int arg_word_list(struct out *o, const char *opt, const char *s, const char *const *names,
		  uint32_t *mask);

/* The end of a getopt_long loop (optstring starting with ':'): c is ':'
 * for an option missing its value, anything else for one the loop does
 * not know. Prints "OPT needs a value (HINT)" or "unknown option 'OPT'
 * (HINT)", HINT saying where the options are listed (e.g. "see --help"),
 * and returns -EINVAL. */
int args_getopt_error(struct out *o, int c, char **argv, const char *hint);
/* After the loop: an argument getopt left over is a mistake. 0 if there
 * is none, else "unexpected argument 'ARG' (HINT)" and -EINVAL. */
int args_leftover(struct out *o, int argc, char **argv, const char *hint);

#endif
