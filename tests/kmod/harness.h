/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small test harness in the shape of the kernel's kselftest_harness.h:
 * FIXTURE/FIXTURE_SETUP/FIXTURE_TEARDOWN, TEST/TEST_F, ASSERT_xx and EXPECT_xx,
 * SKIP(). Every test runs in its own child process; the runner prints TAP
 * ("ok N - name", "not ok N - name", "ok N - name # SKIP why") and exits
 * non-zero if any test failed. After each test a hook (xt_after_each)
 * may fail it, e.g. when the test leaked kernel state.
 */
#ifndef XFER_TEST_HARNESS_H
#define XFER_TEST_HARNESS_H

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XT_SKIP_RC 4

struct xt_meta;
struct xt_test {
	const char *name;
	void (*fn)(struct xt_meta *);
	struct xt_test *next;
};

struct xt_meta {
	int failed;
	char skip_reason[256]; /* in shared memory, read by the parent */
};

static struct xt_test *xt_head, **xt_tail = &xt_head;
static struct xt_meta *xt_cur;

static inline void xt_register(struct xt_test *t)
{
	*xt_tail = t;
	xt_tail = &t->next;
}

#define XT_LOG(...) do { printf("# " __VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

/* Diagnostics of several lines: each as a TAP comment. */
static inline void xt_log_block(const char *title, const char *text)
{
	printf("# %s:\n", title);
	while (*text) {
		const char *nl = strchr(text, '\n');
		int n = nl ? (int)(nl - text) : (int)strlen(text);

		printf("#   %.*s\n", n, text);
		text += n + (nl ? 1 : 0);
	}
	fflush(stdout);
}

#define XT_FAIL_AT(fatal, ...) do {					\
	printf("# %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__);	\
	printf("\n"); fflush(stdout);					\
	xt_cur->failed = 1;						\
	if (fatal)							\
		_exit(1);						\
} while (0)

#define XT_CMP(fatal, a, op, b) do {					\
	long long _a = (long long)(a), _b = (long long)(b);		\
	if (!(_a op _b))						\
		XT_FAIL_AT(fatal, "%s %s %s: %lld vs %lld", #a, #op, #b, _a, _b); \
} while (0)

#define ASSERT_EQ(a, b) XT_CMP(1, a, ==, b)
#define ASSERT_NE(a, b) XT_CMP(1, a, !=, b)
#define ASSERT_GE(a, b) XT_CMP(1, a, >=, b)
#define ASSERT_GT(a, b) XT_CMP(1, a, >, b)
#define ASSERT_LE(a, b) XT_CMP(1, a, <=, b)
#define ASSERT_TRUE(a) XT_CMP(1, !!(a), ==, 1)
#define ASSERT_FALSE(a) XT_CMP(1, !!(a), ==, 0)
#define EXPECT_EQ(a, b) XT_CMP(0, a, ==, b)
#define EXPECT_NE(a, b) XT_CMP(0, a, !=, b)
#define EXPECT_GE(a, b) XT_CMP(0, a, >=, b)
#define EXPECT_TRUE(a) XT_CMP(0, !!(a), ==, 1)

#define SKIP(...) do {							\
	snprintf(xt_cur->skip_reason, sizeof(xt_cur->skip_reason), __VA_ARGS__); \
	_exit(XT_SKIP_RC);						\
} while (0)

#define TEST(name)							\
	static void xt_fn_##name(struct xt_meta *);			\
	static struct xt_test xt_t_##name = { #name, xt_fn_##name, NULL }; \
	__attribute__((constructor)) static void xt_reg_##name(void)	\
	{ xt_register(&xt_t_##name); }					\
	static void xt_fn_##name(struct xt_meta *_metadata __attribute__((unused)))

#define FIXTURE(fx) struct xt_fx_##fx
#define FIXTURE_SETUP(fx) static void xt_setup_##fx(struct xt_fx_##fx *self)
#define FIXTURE_TEARDOWN(fx) static void xt_teardown_##fx(struct xt_fx_##fx *self)
#define TEST_F(fx, name)						\
	static void xt_body_##fx##_##name(struct xt_fx_##fx *self);	\
	TEST(fx##_##name)						\
	{								\
		struct xt_fx_##fx self;					\
		memset(&self, 0, sizeof(self));				\
		xt_setup_##fx(&self);					\
		xt_body_##fx##_##name(&self);				\
		xt_teardown_##fx(&self);				\
	}								\
	static void xt_body_##fx##_##name(struct xt_fx_##fx *self)

/* Called in the parent after each test; returns non-zero to fail it. */
static int xt_after_each(const char *name);

static int xt_run_all(int argc, char **argv)
{
	struct xt_meta *meta;
	struct xt_test *t;
	int n = 0, total = 0, fails = 0;

	meta = mmap(NULL, sizeof(*meta), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (meta == MAP_FAILED)
		return 1;
	for (t = xt_head; t; t = t->next)
		total++;
	printf("TAP version 13\n1..%d\n", total);
	fflush(stdout);
	for (t = xt_head; t; t = t->next) {
		int status = 0, skip;
		struct timespec t0, t1;
		pid_t pid;

		n++;
		if (argc > 1 && !strstr(t->name, argv[1])) {
			printf("ok %d - %s # SKIP not selected\n", n, t->name);
			continue;
		}
		memset(meta, 0, sizeof(*meta));
		xt_cur = meta;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid = fork();
		if (pid == 0) {
			t->fn(meta);
			_exit(meta->failed ? 1 : 0);
		}
		waitpid(pid, &status, 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("# %s: %ld ms\n", t->name, (long)((t1.tv_sec - t0.tv_sec) * 1000 +
							(t1.tv_nsec - t0.tv_nsec) / 1000000));
		skip = WIFEXITED(status) && WEXITSTATUS(status) == XT_SKIP_RC;
		if (!skip && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			if (WIFSIGNALED(status))
				XT_LOG("%s: killed by signal %d", t->name, WTERMSIG(status));
			meta->failed = 1;
		}
		if (xt_after_each(t->name))
			meta->failed = 1;
		if (meta->failed) {
			printf("not ok %d - %s\n", n, t->name);
			fails++;
		} else if (skip) {
			printf("ok %d - %s # SKIP %s\n", n, t->name, meta->skip_reason);
		} else {
			printf("ok %d - %s\n", n, t->name);
		}
		fflush(stdout);
	}
	printf("# %d tests, %d failed\n", total, fails);
	return fails ? 1 : 0;
}

#endif
