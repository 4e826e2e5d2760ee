/* SPDX-License-Identifier: MIT */
/*
 * The verbs backend's wire formats (lib/backend/verbs_wire.c): the rail
 * address published before peers are known and the connect message carried
 * over UD. Round trips; refusal of every malformed field with the CRC
 * recomputed (so the field check itself refuses it); a newer version is
 * -EPROTO; every truncated or extended length refused; random mutations from
 * exactly-sized heap copies (ASan proves no over-read), and whatever decodes
 * re-encodes to the same bytes. Runs without any RDMA device.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#ifndef XFER_HAVE_VERBS
TEST(verbs_wire)
{
	SKIP(return, "built without libibverbs");
}
#else
#include "crc32c.h"
#include "internal.h"
#include "le.h"
#include "verbs_wire.h"


static void fix_crc(uint8_t *p)
{
	xfer_put_le32(p + 44, xfer_crc32c(p, 44));
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	return xt_xorshift(&rng);
}

/* Decode from an exactly-sized heap copy: any over-read is an ASan error. */
static int addr_dec(const uint8_t *p, size_t len, struct vw_addr *a)
{
	return XT_DECODE_EXACT(vw_addr_decode, p, len, a);
}

static int msg_dec(const uint8_t *p, size_t len, struct vw_msg *m)
{
	return XT_DECODE_EXACT(vw_msg_decode, p, len, m);
}

static const struct vw_addr good_addr = {
	.link_layer = VW_LL_ETH, .port = 1, .mtu = 3, .gid_index = 1, .lid = 0,
	.ud_qpn = 0x11, .qkey = 0x58464552,
	.gid = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1 },
	.nonce = 0x0123456789abcdefull,
};

static const struct vw_msg good_msg = {
	.flags = VW_F_NEED_REPLY, .mtu = 3, .src_nonce = 0x1111222233334444ull,
	.dst_nonce = 0x5555666677778888ull, .qpn = 0x12, .psn = 0xabcdef, .ack_qpn = 0x13,
};

TEST(rail_address_round_trip)
{
	uint8_t buf[VW_ADDR_LEN + 8];
	size_t len = sizeof(buf);
	struct vw_addr a;

	XT_EXPECT_OK(vw_addr_encode(&good_addr, buf, &len));
	EXPECT_EQ(VW_ADDR_LEN, len);
	XT_EXPECT_OK(addr_dec(buf, len, &a));
	EXPECT_TRUE(memcmp(&a, &good_addr, sizeof(a)) == 0) TH_LOG("round trip differs");
	len = VW_ADDR_LEN - 1;
	EXPECT_EQ(-ENOSPC, vw_addr_encode(&good_addr, buf, &len));
	EXPECT_TRUE(VW_ADDR_LEN <= XFER_RAIL_ADDR_MAX) TH_LOG("address does not fit the engine's slot");
}

TEST(rail_address_malformed_refused)
{
	uint8_t good[VW_ADDR_LEN], b[VW_ADDR_LEN + 1];
	size_t len = sizeof(good);
	struct vw_addr a;

	vw_addr_encode(&good_addr, good, &len);
	for (size_t l = 0; l <= VW_ADDR_LEN + 1; l++) {
		memcpy(b, good, VW_ADDR_LEN);
		b[VW_ADDR_LEN] = 0;
		if (l != VW_ADDR_LEN)
			EXPECT_EQ(-EINVAL, addr_dec(b, l, &a));
	}
	EXPECT_EQ(-EINVAL, vw_addr_decode(NULL, VW_ADDR_LEN, &a));
	/* each field made invalid, CRC fixed */
	struct { size_t off; uint8_t val; int want; } cases[] = {
		{ 0, 0x00, -EINVAL },    /* magic */
		{ 4, 2, -EPROTO },       /* newer version */
		{ 5, 0, -EINVAL },       /* link layer */
		{ 5, 7, -EINVAL },
		{ 6, 0, -EINVAL },       /* port 0 */
		{ 7, 0, -EINVAL },       /* mtu */
		{ 7, 6, -EINVAL },
		{ 9, 1, -EINVAL },       /* reserved byte */
		{ 15, 0x01, -EINVAL },   /* ud qpn > 24 bits */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		memcpy(b, good, VW_ADDR_LEN);
		b[cases[i].off] = cases[i].val;
		fix_crc(b);
		EXPECT_EQ(cases[i].want, addr_dec(b, VW_ADDR_LEN, &a));
	}
	/* ud qpn 0, nonce 0 */
	memcpy(b, good, VW_ADDR_LEN);
	memset(b + 12, 0, 4);
	fix_crc(b);
	EXPECT_EQ(-EINVAL, addr_dec(b, VW_ADDR_LEN, &a));
	memcpy(b, good, VW_ADDR_LEN);
	memset(b + 36, 0, 8);
	fix_crc(b);
	EXPECT_EQ(-EINVAL, addr_dec(b, VW_ADDR_LEN, &a));
	/* a flipped bit without a fixed CRC */
	for (size_t i = 0; i < 44 * 8; i++) {
		memcpy(b, good, VW_ADDR_LEN);
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		EXPECT_TRUE(addr_dec(b, VW_ADDR_LEN, &a) != 0) TH_LOG("bit %zu flipped was accepted", i);
	}
}

TEST(connect_message_round_trip)
{
	uint8_t buf[VW_MSG_LEN];
	struct vw_msg m;

	EXPECT_EQ(VW_MSG_LEN, vw_msg_encode(&good_msg, buf, sizeof(buf)));
	XT_EXPECT_OK(msg_dec(buf, VW_MSG_LEN, &m));
	EXPECT_TRUE(memcmp(&m, &good_msg, sizeof(m)) == 0) TH_LOG("round trip differs");
	EXPECT_EQ(-ENOSPC, vw_msg_encode(&good_msg, buf, VW_MSG_LEN - 1));
	struct vw_msg z = good_msg;
	z.ack_qpn = 0;
	z.flags = 0;
	vw_msg_encode(&z, buf, sizeof(buf));
	XT_EXPECT_OK(msg_dec(buf, VW_MSG_LEN, &m));
	EXPECT_EQ(0, m.ack_qpn);
}

TEST(connect_message_malformed_refused)
{
	uint8_t good[VW_MSG_LEN], b[VW_MSG_LEN + 1];
	struct vw_msg m;

	vw_msg_encode(&good_msg, good, sizeof(good));
	for (size_t l = 0; l <= VW_MSG_LEN + 1; l++) {
		memcpy(b, good, VW_MSG_LEN);
		b[VW_MSG_LEN] = 0;
		if (l != VW_MSG_LEN)
			EXPECT_EQ(-EINVAL, msg_dec(b, l, &m));
	}
	EXPECT_EQ(-EINVAL, vw_msg_decode(NULL, VW_MSG_LEN, &m));
	struct { size_t off; uint8_t val; int want; } cases[] = {
		{ 0, 0x00, -EINVAL },    /* magic */
		{ 4, 9, -EPROTO },       /* newer version */
		{ 5, 0x02, -EINVAL },    /* unknown flag */
		{ 6, 0, -EINVAL },       /* mtu */
		{ 7, 1, -EINVAL },       /* reserved */
		{ 27, 1, -EINVAL },      /* qpn > 24 bits */
		{ 31, 1, -EINVAL },      /* psn > 24 bits */
		{ 35, 1, -EINVAL },      /* ack qpn > 24 bits */
		{ 40, 1, -EINVAL },      /* reserved tail */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		memcpy(b, good, VW_MSG_LEN);
		b[cases[i].off] = cases[i].val;
		fix_crc(b);
		EXPECT_EQ(cases[i].want, msg_dec(b, VW_MSG_LEN, &m));
	}
	size_t zero_fields[][2] = { { 8, 8 }, { 16, 8 }, { 24, 4 } };   /* nonces, qpn */
	for (size_t i = 0; i < ARRAY_SIZE(zero_fields); i++) {
		memcpy(b, good, VW_MSG_LEN);
		memset(b + zero_fields[i][0], 0, zero_fields[i][1]);
		fix_crc(b);
		EXPECT_EQ(-EINVAL, msg_dec(b, VW_MSG_LEN, &m));
	}
	for (size_t i = 0; i < 44 * 8; i++) {
		memcpy(b, good, VW_MSG_LEN);
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		EXPECT_TRUE(msg_dec(b, VW_MSG_LEN, &m) != 0) TH_LOG("bit %zu flipped was accepted", i);
	}
}

/* Random mutations with the CRC fixed: accepted input re-encodes identically. */
TEST(random_mutations_stable_reencoding)
{
	uint8_t ga[VW_ADDR_LEN], gm[VW_MSG_LEN], b[64], again[64];
	size_t len = sizeof(ga);
	int accepted = 0;

	vw_addr_encode(&good_addr, ga, &len);
	vw_msg_encode(&good_msg, gm, sizeof(gm));
	for (int it = 0; it < 20000; it++) {
		bool is_addr = it & 1;
		size_t n = is_addr ? VW_ADDR_LEN : VW_MSG_LEN;

		memcpy(b, is_addr ? ga : gm, n);
		for (int k = 1 + (int)(rnd() % 3); k > 0; k--)
			b[rnd() % 44] = (uint8_t)rnd();
		if (rnd() % 4)
			fix_crc(b);
		if (is_addr) {
			struct vw_addr a;
			size_t l2 = sizeof(again);

			if (addr_dec(b, n, &a) == 0) {
				accepted++;
				XT_EXPECT_OK(vw_addr_encode(&a, again, &l2));
				EXPECT_TRUE(l2 == n && memcmp(again, b, n) == 0) TH_LOG("address re-encodes differently");
			}
		} else {
			struct vw_msg m;

			if (msg_dec(b, n, &m) == 0) {
				accepted++;
				vw_msg_encode(&m, again, sizeof(again));
				EXPECT_TRUE(memcmp(again, b, n) == 0) TH_LOG("message re-encodes differently");
			}
		}
	}
	EXPECT_TRUE(accepted > 0) TH_LOG("fuzz accepted nothing: mutations too coarse");
}

#endif

TEST_HARNESS_MAIN
