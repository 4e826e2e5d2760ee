/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "out.h"

void out_init(struct out *o, const char *prog)
{
	memset(o, 0, sizeof(*o));
	o->prog = prog;
	o->doc = json_object_new_object();
}

static int col_width(const char *name)
{
	int w = (int)strlen(name) + 2;

	return w < 10 ? 10 : w;
}

void out_table(struct out *o, const char *name, const char *const *cols, int ncols)
{
	o->rows = json_object_new_array();
	json_object_object_add(o->doc, name, o->rows);
	o->cols = cols;
	o->ncols = ncols;
	if (o->json)
		return;
	printf("\n%s\n", name);
	for (int i = 0; i < ncols; i++)
		printf("%*s", col_width(cols[i]), cols[i]);
	printf("\n");
}

static void print_cell(json_object *v, int w)
{
	switch (json_object_get_type(v)) {
	case json_type_double: {
		double d = json_object_get_double(v);

		/* a rate that collapsed (an idle receiver's) must not read as 0 */
		if (d > 0 && d < 0.01)
			printf("%*.2g", w, d);
		else
			printf("%*.*f", w, d != 0 && d < 10 ? 3 : (d < 1000 ? 2 : 1), d);
		break;
	}
	case json_type_int:
		printf("%*lld", w, (long long)json_object_get_int64(v));
		break;
	case json_type_null:
		printf("%*s", w, "-");
		break;
	default: {
		const char *str = json_object_get_string(v);

		/* a value wider than its column keeps a space before it */
		if ((int)strlen(str) >= w)
			printf(" %s", str);
		else
			printf("%*s", w, str);
		break;
	}
	}
}

void out_row(struct out *o, json_object *row)
{
	json_object_array_add(o->rows, row);
	if (o->json)
		return;
	for (int i = 0; i < o->ncols; i++) {
		json_object *v = NULL;

		json_object_object_get_ex(row, o->cols[i], &v);
		print_cell(v, col_width(o->cols[i]));
	}
	printf("\n");
	fflush(stdout);
}

void out_set(struct out *o, const char *key, json_object *val)
{
	if (!o->json) {
		if (json_object_is_type(val, json_type_double))
			printf("%-22s %.6g\n", key, json_object_get_double(val));
		else
			printf("%-22s %s\n", key, json_object_get_string(val));
		fflush(stdout);
	}
	json_object_object_add(o->doc, key, val);
}

void out_str(struct out *o, const char *key, const char *v)
{
	out_set(o, key, json_object_new_string(v));
}

void out_u64(struct out *o, const char *key, uint64_t v)
{
	out_set(o, key, json_object_new_int64((int64_t)v));
}

void out_f64(struct out *o, const char *key, double v)
{
	out_set(o, key, json_object_new_double(v));
}

static void verror(struct out *o, int err, const char *fmt, va_list ap)
{
	char msg[1024];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);

	if (err && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err < 0 ? -err : err));
	fprintf(stderr, "%s: %s\n", o->prog ? o->prog : "error", msg);
	o->failed = true;
	if (!o->json || !o->doc)
		return;
	json_object_object_add(o->doc, "error", json_object_new_string(msg));
	if (err)
		json_object_object_add(o->doc, "errno", json_object_new_int(err < 0 ? -err : err));
}

void out_error(struct out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(o, 0, fmt, ap);
	va_end(ap);
}

void out_errno(struct out *o, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(o, err, fmt, ap);
	va_end(ap);
}

void out_finish(struct out *o)
{
	if (!o->doc)
		return;
	if (o->json)
		printf("%s\n", json_object_to_json_string_ext(o->doc, o->pretty ? JSON_C_TO_STRING_PRETTY
								: JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o->doc);
	o->doc = NULL;
}

int out_fail(struct out *o, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(o, err, fmt, ap);
	va_end(ap);
	out_finish(o);
	return 1;
}
