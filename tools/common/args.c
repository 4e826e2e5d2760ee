/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "out.h"

/* strtoull alone accepts "-1" (as 2^64-1), leading blanks and an empty
 * string: refuse all three, and say which rule a value broke. */
static int parse_u64(const char *s, uint64_t *v, char **end, const char **why)
{
	errno = 0;
	if (!s || !(*s >= '0' && *s <= '9')) {
		*why = "not a number";
		return -EINVAL;
	}
	*v = strtoull(s, end, 0);
	if (errno == ERANGE) {
		*why = "too large";
		return -ERANGE;
	}
	return 0;
}

static int bad(struct out *o, const char *opt, const char *s, const char *why)
{
	out_error(o, "%s: '%s': %s", opt, s ? s : "", why);
	return -EINVAL;
}

static int bad_range(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max)
{
	out_error(o, "%s: '%s': out of range (%llu..%llu)", opt, s, (unsigned long long)min,
		  (unsigned long long)max);
	return -EINVAL;
}

int arg_u64(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max,
	    uint64_t *v)
{
	const char *why;
	char *end;
	uint64_t x;

	if (parse_u64(s, &x, &end, &why))
		return bad(o, opt, s, why);
	if (*end)
		return bad(o, opt, s, "trailing characters after the number");
	if (x < min || x > max)
		return bad_range(o, opt, s, min, max);
	*v = x;
	return 0;
}

int arg_u32(struct out *o, const char *opt, const char *s, uint32_t min, uint32_t max,
	    uint32_t *v)
{
	uint64_t x;
	int rc = arg_u64(o, opt, s, min, max, &x);

	if (!rc)
		*v = (uint32_t)x;
	return rc;
}

int arg_int(struct out *o, const char *opt, const char *s, int min, int max, int *v)
{
	char *end;
	long x;

	errno = 0;
	x = s && *s ? strtol(s, &end, 0) : 0;
	if (!s || !*s || *end || errno)
		return bad(o, opt, s, errno == ERANGE ? "too large" : "not an integer");
	if (x < min || x > max) {
		out_error(o, "%s: '%s': out of range (%d..%d)", opt, s, min, max);
		return -EINVAL;
	}
	*v = (int)x;
	return 0;
}

int arg_pos_double(struct out *o, const char *opt, const char *s, double max, double *v)
{
	char *end;
	double x;

	errno = 0;
	x = s && *s ? strtod(s, &end) : 0;
	if (!s || !*s || *end || errno || !isfinite(x))
		return bad(o, opt, s, "not a number");
	if (x <= 0 || x > max) {
		out_error(o, "%s: '%s': must be above 0 and at most %g", opt, s, max);
		return -EINVAL;
	}
	*v = x;
	return 0;
}

/* One size; `s` may be a piece of a list (ends at ',' or the end). */
static int size_one(struct out *o, const char *opt, const char *s, size_t len, uint64_t min,
		    uint64_t max, uint64_t *v)
{
	char tok[64], *end;
	const char *why;
	uint64_t x;
	unsigned shift = 0;

	if (len == 0 || len >= sizeof(tok))
		return bad(o, opt, s, len ? "too long" : "empty size");
	memcpy(tok, s, len);
	tok[len] = 0;
	if (parse_u64(tok, &x, &end, &why))
		return bad(o, opt, tok, why);
	switch (*end) {
	case 0: break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return bad(o, opt, tok, "unknown suffix (K, M or G)");
	}
	if (*end)
		return bad(o, opt, tok, "trailing characters after the size");
	if (shift && x > (UINT64_MAX >> shift))
		return bad(o, opt, tok, "too large");
	x <<= shift;
	if (x < min || x > max)
		return bad_range(o, opt, tok, min, max);
	*v = x;
	return 0;
}

int arg_size(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max,
	     uint64_t *v)
{
	return size_one(o, opt, s ? s : "", s ? strlen(s) : 0, min, max, v);
}

int arg_size_list(struct out *o, const char *opt, const char *s, uint64_t min, uint64_t max,
		  uint64_t *v, int cap, int *n)
{
	const char *p = s;

	*n = 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (*n == cap) {
			out_error(o, "%s: '%s': more than %d values", opt, s, cap);
			return -EINVAL;
		}
		if (size_one(o, opt, p, len, min, max, &v[*n]))
			return -EINVAL;
		(*n)++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int arg_word_list(struct out *o, const char *opt, const char *s, const char *const *names,
		  uint32_t *mask)
{
	const char *p = s;

	*mask = 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		int i;

		for (i = 0; names[i]; i++)
			if (strlen(names[i]) == len && !strncmp(p, names[i], len))
				break;
		if (!names[i]) {
			char known[256] = "";

			for (int k = 0; names[k]; k++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
					 k ? ", " : "", names[k]);
			out_error(o, "%s: '%.*s' is not one of %s", opt, (int)len, p, known);
			return -EINVAL;
		}
		*mask |= 1u << i;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int args_getopt_error(struct out *o, int c, char **argv, const char *hint)
{
	/* getopt has stepped past the option it refused */
	if (c == ':')
		out_error(o, "%s needs a value (%s)", argv[optind - 1], hint);
	else
		out_error(o, "unknown option '%s' (%s)", argv[optind - 1], hint);
	return -EINVAL;
}

int args_leftover(struct out *o, int argc, char **argv, const char *hint)
{
	if (optind >= argc)
		return 0;
	out_error(o, "unexpected argument '%s' (%s)", argv[optind], hint);
	return -EINVAL;
}
