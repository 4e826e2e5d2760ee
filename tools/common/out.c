/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "out.h"

void out_init(struct out *o, bool json, bool pretty)
{
	memset(o, 0, sizeof(*o));
	o->json = json;
	o->pretty = pretty;
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

		printf("%*.*f", w, d != 0 && d < 10 ? 3 : (d < 1000 ? 2 : 1), d);
		break;
	}
	case json_type_int:
		printf("%*lld", w, (long long)json_object_get_int64(v));
		break;
	case json_type_null:
		printf("%*s", w, "-");
		break;
	default:
		printf("%*s", w, json_object_get_string(v));
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
	json_object_object_add(o->doc, key, val);
	if (!o->json) {
		printf("%s: %s\n", key, json_object_get_string(val));
		fflush(stdout);
	}
}

void out_error(struct out *o, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o->json)
		json_object_object_add(o->doc, "error", json_object_new_string(msg));
	else
		fprintf(stderr, "error: %s\n", msg);
}

void out_finish(struct out *o)
{
	if (o->json)
		printf("%s\n", json_object_to_json_string_ext(o->doc, o->pretty ? JSON_C_TO_STRING_PRETTY
								: JSON_C_TO_STRING_PLAIN));
	json_object_put(o->doc);
	o->doc = NULL;
}
