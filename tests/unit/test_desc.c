/* SPDX-License-Identifier: MIT */
/*
 * Wire formats (lib/core/desc.c): region descriptors and engine addresses.
 * Round trips; rejection (-EINVAL) of every malformed field, with the CRC
 * recomputed so that the field check itself is what refuses it; truncation
 * at every length; and a fuzz loop of random mutations whose inputs live in
 * exactly-sized heap copies, so that ASan proves there is no over-read.
 * Anything the decoder accepts must be self-consistent and re-encode to the
 * same bytes. The fuzz runs 200000 iterations, or as many as the first
 * argument says (test_desc 1000000).
 */
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "harness.h"
#include "internal.h"
#include "le.h"

#define DESC_HDR 56
#define ADDR_HDR 56
#define ADDR_HOST 64   /* the same-host section, after the rails (address version 2) */
#define FUZZ_TIMEOUT_S 30   /* 1.3 s here, 1.5 s under ASan+UBSan */


/* Recompute the CRC (field at 12..15 counts as zero) after a mutation. */
static void fix_crc(uint8_t *p, size_t len)
{
	xfer_put_le32(p + 12, 0);
	xfer_put_le32(p + 12, xfer_crc32c(p, len));
}

static uint64_t rng = 0x1234567887654321ull;
static uint64_t rnd(void)
{
	return xt_xorshift(&rng);
}

/* Decode from an exactly-sized heap copy: any over-read is an ASan error. */
static int desc_dec(const uint8_t *b, size_t len, struct xfer_desc *d)
{
	return XT_DECODE_EXACT(xfer_desc_decode, b, len, d);
}

static int addr_dec(const uint8_t *b, size_t len, struct xfer_addr *a)
{
	return XT_DECODE_EXACT(xfer_addr_decode, b, len, a);
}

static void make_desc(struct xfer_desc *d, uint32_t rails)
{
	memset(d, 0, sizeof(*d));
	d->owner_id = rnd();
	d->region_id = rnd();
	d->base = 0x7f0000000000ull + (rnd() & 0xffffff000ull);
	d->len = 1 + (rnd() & 0xffffffull);
	d->num_rails = rails;
	for (uint32_t i = 0; i < rails; i++) {
		d->rail[i].rkey = rnd();
		d->rail[i].raddr = i & 1 ? 0 : d->base;
	}
}

static void make_addr(struct xfer_addr *a, uint32_t rails, uint32_t backend)
{
	memset(a, 0, sizeof(*a));
	a->engine_id = rnd();
	a->backend = backend;
	a->num_rails = rails;
	snprintf(a->provider, sizeof(a->provider), "%s", rails & 1 ? "tcp;ofi_rxm" : "shm");
	for (uint32_t i = 0; i < rails; i++) {
		uint16_t l = (uint16_t)(1 + (i * 37 + rails) % XFER_RAIL_ADDR_MAX);

		if (i == 0)
			l = XFER_RAIL_ADDR_MAX;   /* the largest allowed */
		a->rail[i].len = l;
		for (uint16_t k = 0; k < l; k++)
			a->rail[i].bytes[k] = (uint8_t)rnd();
		a->rail[i].sink.rkey = rnd();
		a->rail[i].sink.raddr = rnd();
	}
	for (size_t k = 0; k < sizeof(a->host.boot_id); k++)
		a->host.boot_id[k] = (uint8_t)rnd();
	a->host.pidns = rnd() | 1;
	a->host.pid = (int32_t)(1 + rnd() % 4000000);
	a->host.fd = (int32_t)(rnd() % 65536);
	a->host.start_time = rnd() | 1;
	a->host.nonce = rnd() | 1;
}

static bool desc_equal(const struct xfer_desc *x, const struct xfer_desc *y)
{
	if (x->owner_id != y->owner_id || x->region_id != y->region_id || x->base != y->base ||
	    x->len != y->len || x->num_rails != y->num_rails)
		return false;
	for (uint32_t i = 0; i < x->num_rails; i++)
		if (x->rail[i].rkey != y->rail[i].rkey || x->rail[i].raddr != y->rail[i].raddr)
			return false;
	return true;
}

static bool addr_equal(const struct xfer_addr *x, const struct xfer_addr *y)
{
	if (x->engine_id != y->engine_id || x->backend != y->backend ||
	    x->num_rails != y->num_rails || strcmp(x->provider, y->provider))
		return false;
	for (uint32_t i = 0; i < x->num_rails; i++)
		if (x->rail[i].len != y->rail[i].len ||
		    memcmp(x->rail[i].bytes, y->rail[i].bytes, x->rail[i].len) ||
		    x->rail[i].sink.rkey != y->rail[i].sink.rkey ||
		    x->rail[i].sink.raddr != y->rail[i].sink.raddr)
			return false;
	return memcmp(&x->host, &y->host, sizeof(x->host)) == 0;
}

/* ---- round trips --------------------------------------------------------- */

TEST(round_trips)
{
	uint8_t buf[XFER_ADDR_MAX];
	size_t len;

	for (uint32_t r = 1; r <= XFER_MAX_RAILS; r++) {
		struct xfer_desc d, d2;

		make_desc(&d, r);
		len = 0;
		EXPECT_EQ(-ENOSPC, xfer_desc_encode(&d, NULL, &len));   /* size query */
		EXPECT_EQ(DESC_HDR + 16 * r, len);
		EXPECT_TRUE(len <= XFER_DESC_MAX) TH_LOG("descriptor of %u rails is %zu bytes", r, len);
		len = DESC_HDR + 16 * r - 1;
		EXPECT_EQ(-ENOSPC, xfer_desc_encode(&d, buf, &len));
		len = sizeof(buf);
		XT_EXPECT_OK(xfer_desc_encode(&d, buf, &len));
		EXPECT_EQ(DESC_HDR + 16 * r, len);
		memset(&d2, 0xa5, sizeof(d2));
		XT_EXPECT_OK(desc_dec(buf, len, &d2));
		EXPECT_TRUE(desc_equal(&d, &d2)) TH_LOG("descriptor of %u rails changed in a round trip", r);
	}
	for (uint32_t r = 1; r <= XFER_MAX_RAILS; r++) {
		for (uint32_t b = 1; b <= 2; b++) {
			struct xfer_addr a, a2;
			size_t need;

			make_addr(&a, r, b);
			len = 0;
			EXPECT_EQ(-ENOSPC, xfer_addr_encode(&a, NULL, &len));
			need = len;
			EXPECT_TRUE(need <= XFER_ADDR_MAX) TH_LOG("address of %u rails is %zu bytes", r, need);
			len = need - 1;
			EXPECT_EQ(-ENOSPC, xfer_addr_encode(&a, buf, &len));
			len = sizeof(buf);
			XT_EXPECT_OK(xfer_addr_encode(&a, buf, &len));
			EXPECT_EQ(need, len);
			memset(&a2, 0x5a, sizeof(a2));
			XT_EXPECT_OK(addr_dec(buf, len, &a2));
			EXPECT_TRUE(addr_equal(&a, &a2)) TH_LOG("address of %u rails changed in a round trip", r);
		}
	}
}

/* The encoder refuses what the decoder would refuse. */
TEST(encoder_refuses_invalid)
{
	uint8_t buf[XFER_ADDR_MAX];
	size_t len;
	struct xfer_desc d;
	struct xfer_addr a;

	make_desc(&d, 1);
	d.num_rails = 0;
	len = sizeof(buf);
	EXPECT_EQ(-EINVAL, xfer_desc_encode(&d, buf, &len));
	d.num_rails = XFER_MAX_RAILS + 1;
	EXPECT_EQ(-EINVAL, xfer_desc_encode(&d, buf, &len));
	make_addr(&a, 2, 1);
	a.rail[1].len = 0;
	EXPECT_EQ(-EINVAL, xfer_addr_encode(&a, buf, &len));
	a.rail[1].len = XFER_RAIL_ADDR_MAX + 1;
	EXPECT_EQ(-EINVAL, xfer_addr_encode(&a, buf, &len));
	/* a same-host section that names no process */
	make_addr(&a, 2, 1);
	a.host.pid = 0;
	EXPECT_EQ(-EINVAL, xfer_addr_encode(&a, buf, &len));
	make_addr(&a, 2, 1);
	a.host.fd = -1;
	EXPECT_EQ(-EINVAL, xfer_addr_encode(&a, buf, &len));
	make_addr(&a, 2, 1);
	a.host.nonce = 0;
	EXPECT_EQ(-EINVAL, xfer_addr_encode(&a, buf, &len));
}

/* The largest address (every rail's address at its longest) fits
 * XFER_ADDR_MAX with its same-host section. */
TEST(largest_address_fits)
{
	uint8_t buf[XFER_ADDR_MAX];
	size_t len = sizeof(buf);
	struct xfer_addr a, a2;

	make_addr(&a, XFER_MAX_RAILS, 1);
	for (uint32_t i = 0; i < XFER_MAX_RAILS; i++)
		a.rail[i].len = XFER_RAIL_ADDR_MAX;
	XT_ASSERT_OK(xfer_addr_encode(&a, buf, &len));
	EXPECT_EQ(ADDR_HDR + XFER_MAX_RAILS * (24 + XFER_RAIL_ADDR_MAX) + ADDR_HOST, len);
	XT_EXPECT_OK(addr_dec(buf, len, &a2));
	EXPECT_TRUE(addr_equal(&a, &a2));
}

/* ---- each malformed field --------------------------------------------- */

/* Mutate a copy of a good blob, fix the CRC unless told not to, expect -EINVAL. */
typedef void (*mutate_fn)(uint8_t *p, size_t *len);

static void m_magic(uint8_t *p, size_t *l) { (void)l; p[0] ^= 1; }
static void m_version0(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 4, 0); }
static void m_version2(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 4, xfer_get_le16(p + 4) + 1); }
static void m_hdrlen(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 6, 64); }
static void m_hdrlen_small(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 6, 16); }
static void m_total_big(uint8_t *p, size_t *l) { xfer_put_le32(p + 8, (uint32_t)*l + 16); }
static void m_total_small(uint8_t *p, size_t *l) { xfer_put_le32(p + 8, (uint32_t)*l - 16); }
static void m_total_huge(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 8, 0xffffffffu); }
/* desc fields */
static void d_rails0(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 48, 0); }
static void d_rails9(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 48, XFER_MAX_RAILS + 1); }
static void d_rails_more(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 48, 3); }  /* blob has 2 */
static void d_rails_less(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 48, 1); }
static void d_rails_ffff(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 48, 0xffff); }
static void d_flags(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + 50, 1); }
static void d_reserved(uint8_t *p, size_t *l) { (void)l; p[55] = 0x80; }
static void d_len0(uint8_t *p, size_t *l) { (void)l; xfer_put_le64(p + 40, 0); }
static void d_base_ovf(uint8_t *p, size_t *l) { (void)l; xfer_put_le64(p + 32, UINT64_MAX - 100); xfer_put_le64(p + 40, 101); }
static void d_raddr_ovf(uint8_t *p, size_t *l) { (void)l; xfer_put_le64(p + DESC_HDR + 16 + 8, UINT64_MAX - 10); }
static void d_extend(uint8_t *p, size_t *l) { memset(p + *l, 0, 16); *l += 16; xfer_put_le32(p + 8, (uint32_t)*l); }
static void d_extend1(uint8_t *p, size_t *l) { p[*l] = 0; *l += 1; xfer_put_le32(p + 8, (uint32_t)*l); }
/* addr fields (blob made by make_addr(2 rails): rail 0 len 96, rail 1 len 40) */
static void a_backend0(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 24, 0); }
static void a_backend4(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 24, 4); }
static void a_rails0(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 28, 0); }
static void a_rails9(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 28, XFER_MAX_RAILS + 1); }
static void a_rails_more(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 28, 3); }
static void a_rails_less(uint8_t *p, size_t *l) { (void)l; xfer_put_le32(p + 28, 1); }  /* trailing rail */
static void a_prov_nonul(uint8_t *p, size_t *l) { (void)l; memset(p + 32, 'x', XFER_PROV_NAME_MAX); }
static void a_rlen0(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + ADDR_HDR, 0); }
static void a_rlen97(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + ADDR_HDR, XFER_RAIL_ADDR_MAX + 1); }
static void a_rlen_ffff(uint8_t *p, size_t *l) { (void)l; xfer_put_le16(p + ADDR_HDR, 0xffff); }
static void a_r1len_long(uint8_t *p, size_t *l)   /* rail 1 claims more than the blob has */
{
	(void)l;
	xfer_put_le16(p + ADDR_HDR + 24 + XFER_RAIL_ADDR_MAX, XFER_RAIL_ADDR_MAX);
}
static void a_rlen_short(uint8_t *p, size_t *l)   /* rail 0 shorter: bytes left over */
{
	(void)l;
	xfer_put_le16(p + ADDR_HDR, XFER_RAIL_ADDR_MAX - 8);
}
static void a_rail_rsv2(uint8_t *p, size_t *l) { (void)l; p[ADDR_HDR + 2] = 1; }
static void a_rail_rsv4(uint8_t *p, size_t *l) { (void)l; p[ADDR_HDR + 7] = 1; }
/* the same-host section: the last ADDR_HOST bytes */
#define HOST(p, l) ((p) + *(l) - ADDR_HOST)
static void a_v1(uint8_t *p, size_t *l) { xfer_put_le16(p + 4, 1); }   /* a version 1 address has none */
static void a_v1_cut(uint8_t *p, size_t *l) { xfer_put_le16(p + 4, 1); *l -= ADDR_HOST; xfer_put_le32(p + 8, (uint32_t)*l); }
static void a_host_cut(uint8_t *p, size_t *l) { *l -= ADDR_HOST; xfer_put_le32(p + 8, (uint32_t)*l); }
static void a_host_short(uint8_t *p, size_t *l) { *l -= 8; xfer_put_le32(p + 8, (uint32_t)*l); }
static void a_boot0(uint8_t *p, size_t *l) { memset(HOST(p, l), 0, 16); }
static void a_pidns0(uint8_t *p, size_t *l) { xfer_put_le64(HOST(p, l) + 16, 0); }
static void a_pid0(uint8_t *p, size_t *l) { xfer_put_le32(HOST(p, l) + 24, 0); }
static void a_pid_neg(uint8_t *p, size_t *l) { xfer_put_le32(HOST(p, l) + 24, 0x80000001u); }
static void a_fd_neg(uint8_t *p, size_t *l) { xfer_put_le32(HOST(p, l) + 28, 0xffffffffu); }
static void a_start0(uint8_t *p, size_t *l) { xfer_put_le64(HOST(p, l) + 32, 0); }
static void a_nonce0(uint8_t *p, size_t *l) { xfer_put_le64(HOST(p, l) + 40, 0); }
static void a_host_rsv(uint8_t *p, size_t *l) { HOST(p, l)[63] = 1; }
static void a_host_rsv48(uint8_t *p, size_t *l) { HOST(p, l)[48] = 0x80; }
static void a_trailing(uint8_t *p, size_t *l) { memset(p + *l, 0, 8); *l += 8; xfer_put_le32(p + 8, (uint32_t)*l); }
static void a_trailing1(uint8_t *p, size_t *l) { p[*l] = 7; *l += 1; xfer_put_le32(p + 8, (uint32_t)*l); }

struct mcase {
	const char *name;
	mutate_fn fn;
};

static void check_mutations(struct __test_metadata *_metadata, bool addr, const uint8_t *good, size_t glen, const struct mcase *cs,
			    size_t n)
{
	uint8_t buf[XFER_ADDR_MAX + 64];

	for (size_t i = 0; i < n; i++) {
		for (int fix = 0; fix <= 1; fix++) {
			size_t len = glen;
			struct xfer_desc d;
			struct xfer_addr a;
			int ret;

			memset(buf, 0, sizeof(buf));
			memcpy(buf, good, glen);
			cs[i].fn(buf, &len);
			if (fix)
				fix_crc(buf, len);
			ret = addr ? addr_dec(buf, len, &a) : desc_dec(buf, len, &d);
			EXPECT_TRUE(ret == -EINVAL) TH_LOG("%s %s (crc %s) decoded with %d", addr ? "address" : "descriptor", cs[i].name, fix ? "fixed" : "stale", ret);
		}
	}
}

static const struct mcase common[] = {
	{ "bad magic", m_magic }, { "version 0", m_version0 }, { "next version", m_version2 },
	{ "header length", m_hdrlen }, { "small header length", m_hdrlen_small },
	{ "total length too big", m_total_big }, { "total length too small", m_total_small },
	{ "total length huge", m_total_huge },
};
static const struct mcase dcases[] = {
	{ "num_rails 0", d_rails0 }, { "num_rails > max", d_rails9 },
	{ "num_rails more than present", d_rails_more },
	{ "num_rails fewer than present", d_rails_less }, { "num_rails 0xffff", d_rails_ffff },
	{ "flags", d_flags }, { "reserved", d_reserved }, { "len 0", d_len0 },
	{ "base+len overflow", d_base_ovf }, { "raddr+len overflow", d_raddr_ovf },
	{ "extended by a rail", d_extend }, { "extended by a byte", d_extend1 },
};
static const struct mcase acases[] = {
	{ "backend 0", a_backend0 }, { "backend 4", a_backend4 },
	{ "num_rails 0", a_rails0 }, { "num_rails > max", a_rails9 },
	{ "num_rails more than present", a_rails_more },
	{ "num_rails fewer than present (trailing rail)", a_rails_less },
	{ "provider not NUL-terminated", a_prov_nonul },
	{ "rail length 0", a_rlen0 }, { "rail length too long", a_rlen97 },
	{ "rail length 0xffff", a_rlen_ffff }, { "rail 1 past the end", a_r1len_long },
	{ "rail 0 short (bytes left over)", a_rlen_short },
	{ "rail reserved 2..3", a_rail_rsv2 }, { "rail reserved 4..7", a_rail_rsv4 },
	{ "trailing bytes", a_trailing }, { "a trailing byte", a_trailing1 },
	{ "version 1 with a same-host section", a_v1 }, { "version 1 without one", a_v1_cut },
	{ "same-host section missing", a_host_cut }, { "same-host section short", a_host_short },
	{ "boot id zero", a_boot0 }, { "pid namespace zero", a_pidns0 }, { "pid 0", a_pid0 },
	{ "pid negative", a_pid_neg }, { "fd negative", a_fd_neg }, { "start time 0", a_start0 },
	{ "nonce 0", a_nonce0 }, { "same-host reserved 63", a_host_rsv },
	{ "same-host reserved 48", a_host_rsv48 },
};

/* A good descriptor (2 rails) and a good address (2 rails: 96 and 40 bytes),
 * with a no-op CRC fix. */
FIXTURE(blobs) {
	uint8_t dgood[XFER_DESC_MAX], agood[XFER_ADDR_MAX];
	size_t dlen, alen;
};

FIXTURE_SETUP(blobs)
{
	struct xfer_desc d;
	struct xfer_addr a;

	self->dlen = sizeof(self->dgood);
	self->alen = sizeof(self->agood);
	make_desc(&d, 2);
	XT_ASSERT_OK(xfer_desc_encode(&d, self->dgood, &self->dlen));
	make_addr(&a, 2, 1);
	a.rail[1].len = 40;
	XT_ASSERT_OK(xfer_addr_encode(&a, self->agood, &self->alen));
	ASSERT_EQ(ADDR_HDR + 24 + 96 + 24 + 40 + ADDR_HOST, self->alen);
	fix_crc(self->dgood, self->dlen);
	fix_crc(self->agood, self->alen);
}

FIXTURE_TEARDOWN(blobs) {}

/* The good blobs decode, also after a no-op CRC fix. */
TEST_F(blobs, good_blobs_decode)
{
	struct xfer_desc dd;
	struct xfer_addr aa;

	XT_EXPECT_OK(desc_dec(self->dgood, self->dlen, &dd));
	XT_EXPECT_OK(addr_dec(self->agood, self->alen, &aa));
}

/* Each malformed field: -EINVAL, with the CRC stale and fixed. */
TEST_F(blobs, each_malformed_field_refused)
{
	check_mutations(_metadata, false, self->dgood, self->dlen, common, ARRAY_SIZE(common));
	check_mutations(_metadata, false, self->dgood, self->dlen, dcases, ARRAY_SIZE(dcases));
	check_mutations(_metadata, true, self->agood, self->alen, common, ARRAY_SIZE(common));
	check_mutations(_metadata, true, self->agood, self->alen, acases, ARRAY_SIZE(acases));
}

/* A descriptor is not an address and vice versa. */
TEST_F(blobs, descriptor_is_not_address)
{
	struct xfer_desc dd;
	struct xfer_addr aa;

	EXPECT_EQ(-EINVAL, addr_dec(self->dgood, self->dlen, &aa));
	EXPECT_EQ(-EINVAL, desc_dec(self->agood, self->alen, &dd));
}

/* Stale CRC: every single bit flip anywhere is refused. */
TEST_F(blobs, every_bit_flip_refused)
{
	struct xfer_desc dd;
	struct xfer_addr aa;

	for (size_t i = 0; i < self->dlen * 8; i++) {
		uint8_t b[XFER_DESC_MAX];

		memcpy(b, self->dgood, self->dlen);
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		EXPECT_TRUE(desc_dec(b, self->dlen, &dd) == -EINVAL) TH_LOG("descriptor bit %zu flipped: accepted", i);
	}
	for (size_t i = 0; i < self->alen * 8; i++) {
		uint8_t b[XFER_ADDR_MAX];

		memcpy(b, self->agood, self->alen);
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		EXPECT_TRUE(addr_dec(b, self->alen, &aa) == -EINVAL) TH_LOG("address bit %zu flipped: accepted", i);
	}
}

/* Truncated at every length, also with the header's length and CRC made to
 * match; a NULL buffer. */
TEST_F(blobs, every_truncation_refused)
{
	struct xfer_desc dd;
	struct xfer_addr aa;

	for (size_t l = 0; l < self->dlen; l++) {
		uint8_t b[XFER_DESC_MAX];

		memcpy(b, self->dgood, self->dlen);
		EXPECT_TRUE(desc_dec(b, l, &dd) == -EINVAL) TH_LOG("descriptor truncated to %zu: accepted", l);
		if (l >= 16) {
			xfer_put_le32(b + 8, (uint32_t)l);
			fix_crc(b, l);
			EXPECT_TRUE(desc_dec(b, l, &dd) == -EINVAL)
				TH_LOG("descriptor truncated to %zu (length, crc fixed): accepted", l);
		}
	}
	for (size_t l = 0; l < self->alen; l++) {
		uint8_t b[XFER_ADDR_MAX];

		memcpy(b, self->agood, self->alen);
		EXPECT_TRUE(addr_dec(b, l, &aa) == -EINVAL) TH_LOG("address truncated to %zu: accepted", l);
		if (l >= 16) {
			xfer_put_le32(b + 8, (uint32_t)l);
			fix_crc(b, l);
			EXPECT_TRUE(addr_dec(b, l, &aa) == -EINVAL)
				TH_LOG("address truncated to %zu (length, crc fixed): accepted", l);
		}
	}
	EXPECT_EQ(-EINVAL, xfer_desc_decode(NULL, self->dlen, &dd));
	EXPECT_EQ(-EINVAL, xfer_addr_decode(NULL, self->alen, &aa));
}

/* ---- fuzz ------------------------------------------------------------------ */

/* An accepted descriptor must satisfy every documented invariant and
 * re-encode to exactly the bytes it was decoded from. */
static bool desc_consistent(const uint8_t *b, size_t len, const struct xfer_desc *d)
{
	uint8_t re[XFER_DESC_MAX];
	size_t rl = sizeof(re);

	if (d->num_rails == 0 || d->num_rails > XFER_MAX_RAILS || d->len == 0 ||
	    d->base + d->len < d->base)
		return false;
	for (uint32_t i = 0; i < d->num_rails; i++)
		if (d->rail[i].raddr + d->len < d->rail[i].raddr)
			return false;
	return xfer_desc_encode(d, re, &rl) == 0 && rl == len && memcmp(re, b, len) == 0;
}

static long addr_noncanon;
static bool addr_consistent(const uint8_t *b, size_t len, const struct xfer_addr *a)
{
	uint8_t re[XFER_ADDR_MAX];
	size_t rl = sizeof(re);
	struct xfer_addr a2;

	(void)b;
	if (a->num_rails == 0 || a->num_rails > XFER_MAX_RAILS || a->backend < 1 ||
	    a->backend > 3 || !memchr(a->provider, 0, sizeof(a->provider)))
		return false;
	for (uint32_t i = 0; i < a->num_rails; i++)
		if (a->rail[i].len == 0 || a->rail[i].len > XFER_RAIL_ADDR_MAX)
			return false;
	/* same length, and what it encodes to decodes to the same address */
	if (!(xfer_addr_encode(a, re, &rl) == 0 && rl == len && xfer_addr_decode(re, rl, &a2) == 0 &&
	      addr_equal(a, &a2)))
		return false;
	if (memcmp(re, b, len))
		addr_noncanon++;
	return true;
}

static void mutate(uint8_t *b, size_t *len, size_t cap)
{
	int n = 1 + (int)(rnd() % 4);

	for (int k = 0; k < n; k++) {
		switch (rnd() % 8) {
		case 0: case 1:   /* bit flip */
			if (*len)
				b[rnd() % *len] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 2:           /* random byte */
			if (*len)
				b[rnd() % *len] = (uint8_t)rnd();
			break;
		case 3:           /* truncate */
			*len = *len ? rnd() % *len : 0;
			break;
		case 4: {         /* extend with random bytes */
			size_t add = 1 + rnd() % 32;

			if (*len + add > cap)
				add = cap - *len;
			for (size_t i = 0; i < add; i++)
				b[*len + i] = (uint8_t)rnd();
			*len += add;
			break;
		}
		case 5:           /* an interesting 16-bit value at a field offset */
			if (*len >= 2) {
				static const uint16_t v[] = { 0, 1, 2, 7, 8, 9, 96, 97, 0x7fff, 0xffff };
				size_t off = (rnd() % (*len / 2)) * 2;

				xfer_put_le16(b + off, v[rnd() % ARRAY_SIZE(v)]);
			}
			break;
		case 6:           /* an interesting 64-bit value */
			if (*len >= 8) {
				static const uint64_t v[] = { 0, 1, UINT64_MAX, UINT64_MAX - 1,
							      1ull << 63, 0xffffffffull };
				size_t off = (rnd() % (*len / 8)) * 8;

				xfer_put_le64(b + off, v[rnd() % ARRAY_SIZE(v)]);
			}
			break;
		default:          /* keep the length field honest */
			if (*len >= 12)
				xfer_put_le32(b + 8, (uint32_t)*len);
			break;
		}
	}
}

static long fuzz_iters = 200000;

/* Random mutations: no over-read (ASan), whatever decodes is consistent. */
XT_TEST_TIMEOUT(fuzz, FUZZ_TIMEOUT_S)
{
	long iters = fuzz_iters;
	long dacc = 0, aacc = 0, dbad = 0, abad = 0;
	uint8_t dgood[XFER_DESC_MAX], agood[XFER_ADDR_MAX];

	for (long it = 0; it < iters; it++) {
		uint8_t b[XFER_ADDR_MAX + 64];
		size_t len = 0;
		bool is_addr = it & 1;

		if (it % 64 < 2) {   /* fresh seeds now and then */
			if (is_addr) {
				struct xfer_addr a;
				size_t l = sizeof(agood);

				make_addr(&a, 1 + (uint32_t)(rnd() % XFER_MAX_RAILS), 1 + (uint32_t)(rnd() % 2));
				XT_EXPECT_OK(xfer_addr_encode(&a, agood, &l));
				EXPECT_EQ(0, l % 8);
			} else {
				struct xfer_desc d;
				size_t l = sizeof(dgood);

				make_desc(&d, 1 + (uint32_t)(rnd() % XFER_MAX_RAILS));
				XT_EXPECT_OK(xfer_desc_encode(&d, dgood, &l));
			}
		}
		if (is_addr) {
			struct xfer_addr a;

			memcpy(b, agood, sizeof(agood));
			len = ((uint32_t)agood[8] | (uint32_t)agood[9] << 8);
			mutate(b, &len, sizeof(b));
			if (rnd() % 4)   /* mostly let the CRC pass so the fields get tested */
				if (len >= 16)
					fix_crc(b, len);
			int ret = addr_dec(b, len, &a);

			if (ret == 0) {
				aacc++;
				if (!addr_consistent(b, len, &a))
					abad++;
			} else if (ret != -EINVAL) {
				EXPECT_TRUE(0) TH_LOG("address decode returned %d", ret);
			}
		} else {
			struct xfer_desc d;

			memcpy(b, dgood, sizeof(dgood));
			len = ((uint32_t)dgood[8] | (uint32_t)dgood[9] << 8);
			mutate(b, &len, sizeof(b));
			if (rnd() % 4)
				if (len >= 16)
					fix_crc(b, len);
			int ret = desc_dec(b, len, &d);

			if (ret == 0) {
				dacc++;
				if (!desc_consistent(b, len, &d))
					dbad++;
			} else if (ret != -EINVAL) {
				EXPECT_TRUE(0) TH_LOG("descriptor decode returned %d", ret);
			}
		}
	}
	EXPECT_EQ(0, dbad);
	EXPECT_EQ(0, abad);
	/* the loop did reach the decoders' accepting paths too */
	EXPECT_TRUE(dacc > 0 && aacc > 0) TH_LOG("nothing accepted (%ld, %ld): the fuzz is not exercising decode", dacc, aacc);
	TH_LOG("non-canonical addresses accepted: %ld", addr_noncanon);
	TH_LOG("fuzz: %ld iterations, %ld descriptors and %ld addresses accepted", iters, dacc, aacc);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		fuzz_iters = atol(argv[1]);
	return test_harness_run(argc, argv);
}
