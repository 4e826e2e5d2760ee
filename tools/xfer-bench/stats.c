/* SPDX-License-Identifier: MIT */
/* Medians, ranges and percentiles of repeated measurements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double median_of(const double *v, int n)
{
	double tmp[MAX_REPS];

	memcpy(tmp, v, (size_t)n * sizeof(double));
	qsort(tmp, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

json_object *range_of(const double *v, int n)
{
	double lo = v[0], hi = v[0];
	json_object *a = json_object_new_array();

	for (int i = 1; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	json_object_array_add(a, json_object_new_double(lo));
	json_object_array_add(a, json_object_new_double(hi));
	return a;
}

/* key: median of xfer; raw: median of raw; ratio: median of the paired
 * ratios (each xfer rep over the raw rep beside it); ranges beside. */
double add_figures(json_object *row, const char *key, const struct reps *r, bool have_raw)
{
	char k[64];
	double med = median_of(r->x, r->n);

	json_object_object_add(row, key, json_object_new_double(med));
	snprintf(k, sizeof(k), "%s_range", key);
	json_object_object_add(row, k, range_of(r->x, r->n));
	if (have_raw) {
		double ratios[MAX_REPS];

		for (int i = 0; i < r->n; i++)
			ratios[i] = r->raw[i] > 0 ? r->x[i] / r->raw[i] : 0;
		json_object_object_add(row, "raw", json_object_new_double(median_of(r->raw, r->n)));
		json_object_object_add(row, "raw_range", range_of(r->raw, r->n));
		json_object_object_add(row, "ratio", json_object_new_double(median_of(ratios, r->n)));
		json_object_object_add(row, "ratio_range", range_of(ratios, r->n));
	} else {
		json_object_object_add(row, "raw", NULL);
		json_object_object_add(row, "ratio", NULL);
	}
	json_object_object_add(row, "reps", json_object_new_int(r->n));
	return med;
}

double pct(double *v, uint64_t n, double q)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(uint64_t)(q * (double)(n - 1))];
}
