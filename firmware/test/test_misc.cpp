#include <cstring>
#include <vector>

#include "harness.h"
#include "pf_backoff.h"
#include "pf_crc.h"
#include "pf_energy.h"
#include "pf_inflight.h"
#include "pf_pzem.h"
#include "pf_scheduler.h"

namespace {
class FixedRng : public pf::RandomSource {
 public:
  explicit FixedRng(uint32_t v) : v_(v) {}
  uint32_t next_u32() override { return v_; }
  uint32_t v_;
};
}  // namespace

TEST(crc_vectors) {
  CHECK_EQ(pf::crc32("123456789", 9), 0xCBF43926u);
  CHECK_EQ(pf::crc16_modbus("123456789", 9), static_cast<uint16_t>(0x4B37));
}

TEST(backoff_bounds_with_jitter) {
  pf::XorShift32 rng(12345);
  pf::Backoff b(1000, 60000, rng);
  for (int attempt = 0; attempt < 40; ++attempt) {
    const uint32_t cap = b.current_cap_ms();
    const uint32_t d = b.next_delay_ms();
    CHECK(d >= cap / 2);
    CHECK(d <= cap);
    CHECK(d <= 60000u);
    CHECK(d >= 500u);
  }
  CHECK_EQ(b.current_cap_ms(), 60000u);
  b.reset();
  CHECK_EQ(b.current_cap_ms(), 1000u);
  CHECK(b.next_delay_ms() <= 1000u);
}

TEST(backoff_deterministic_extremes) {
  FixedRng lo(0);
  pf::Backoff a(1000, 8000, lo);
  const uint32_t expect_lo[] = {500, 1000, 2000, 4000, 4000, 4000};
  for (uint32_t e : expect_lo) CHECK_EQ(a.next_delay_ms(), e);
  FixedRng hi(0xFFFFFFFFu);
  pf::Backoff b(1000, 8000, hi);
  // span+1 divides 2^32-1+1? use modulo arithmetic: (2^32-1) % (span+1)
  for (int i = 0; i < 6; ++i) {
    const uint32_t cap = b.current_cap_ms();
    const uint32_t d = b.next_delay_ms();
    CHECK_EQ(d, cap / 2 + static_cast<uint32_t>(0xFFFFFFFFull % (cap - cap / 2 + 1)));
  }
  // Huge attempt counts never overflow.
  pf::Backoff c(1, 0xFFFFFFFFu, hi);
  for (int i = 0; i < 100; ++i) CHECK(c.next_delay_ms() <= 0xFFFFFFFFu);
  CHECK_EQ(c.current_cap_ms(), 0xFFFFFFFFu);
  // max < base is clamped to base.
  pf::Backoff d(5000, 10, lo);
  CHECK_EQ(d.next_delay_ms(), 2500u);
}

TEST(energy_counter_monotonic_across_reset) {
  pf::EnergyCounter e;
  CHECK_EQ(e.update(1000), 1000.0);
  CHECK_EQ(e.update(1005), 1005.0);
  CHECK(!e.take_dirty());
  CHECK_EQ(e.update(3), 1008.0);  // PZEM counter was reset
  CHECK_EQ(e.resets(), 1u);
  CHECK(e.take_dirty());
  CHECK(!e.take_dirty());
  CHECK_EQ(e.update(10), 1015.0);
  CHECK_EQ(e.offset_wh(), 1005.0);
  CHECK_EQ(e.update(10), 1015.0);  // equal value is not a reset
  // Wrap at 9999.99 kWh (9,999,990 Wh) behaves the same way.
  pf::EnergyCounter w;
  w.update(9999990u);
  CHECK_EQ(w.update(2), 9999992.0);
}

TEST(energy_counter_restore_detects_reset_while_off) {
  pf::EnergyCounter e;
  e.restore(500.0, 2000, true);
  CHECK_EQ(e.published(), 2500.0);
  CHECK_EQ(e.update(2100), 2600.0);
  pf::EnergyCounter f;
  f.restore(500.0, 2000, true);
  CHECK_EQ(f.update(50), 2550.0);  // reset happened between persisted value and now
  pf::EnergyCounter g;  // nothing persisted: first value taken as is
  CHECK_EQ(g.update(7), 7.0);
}

TEST(scheduler_no_drift_with_jitter) {
  pf::FixedRateScheduler s(5000);
  s.start(1000);
  int64_t now = 1000;
  int fired = 0;
  uint32_t jitter = 1;
  bool aligned = true;
  while (now < 1000 + 5000LL * 1000) {  // ~83 minutes of loop iterations
    int64_t slot;
    if (s.poll(now, &slot)) {
      aligned = aligned && ((slot - 1000) % 5000 == 0) && now - slot < 50;
      fired++;
    }
    jitter = jitter * 1103515245u + 12345u;
    now += 1 + (jitter >> 16) % 37;  // uneven loop period 1..37 ms
  }
  CHECK(aligned);
  CHECK_EQ(fired, 1000);
  CHECK_EQ(s.skipped(), 0u);
}

TEST(scheduler_skips_missed_slots) {
  pf::FixedRateScheduler s(5000);
  s.start(0);
  CHECK(s.poll(0));
  CHECK(!s.poll(4999));
  CHECK(s.poll(5003));
  int64_t slot = -1;
  CHECK(s.poll(23000, &slot));  // stalled for 3.6 periods
  CHECK_EQ(slot, int64_t(20000));
  CHECK_EQ(s.skipped(), 2u);    // slots 10000 and 15000 skipped, no burst
  CHECK(!s.poll(23001));
  CHECK(!s.poll(24999));
  CHECK(s.poll(25000));
  CHECK_EQ(s.next_due_ms(), int64_t(30000));
}

TEST(inflight_tracker_window_and_ids) {
  pf::InflightTracker t(3);
  CHECK(t.add(1, 10, 100));
  CHECK(t.add(2, 11, 101));
  CHECK(t.add(3, 12, 102));
  CHECK(t.full());
  CHECK(!t.add(4, 13, 103));
  pf::InflightEntry e;
  CHECK(t.take(2, &e));
  CHECK_EQ(e.slot, 11u);
  CHECK_EQ(e.seq, 101u);
  CHECK(!t.take(2, &e));
  CHECK(t.contains_slot(12));
  CHECK(t.add(1, 20, 200));  // msg_id reuse replaces the stale entry
  CHECK_EQ(t.count(), size_t(2));
  CHECK(t.take(1, &e));
  CHECK_EQ(e.seq, 200u);
  CHECK(t.remove_slot(12));
  CHECK_EQ(t.count(), size_t(0));
  t.add(5, 1, 1);
  t.clear();
  CHECK_EQ(t.count(), size_t(0));
  pf::InflightTracker big(1000);
  CHECK_EQ(big.window(), pf::InflightTracker::kMaxWindow);
}

TEST(pzem_request_and_response) {
  uint8_t req[pf::kPzemRequestLen];
  pf::pzem_build_read_request(0xF8, req);
  const uint8_t expected[8] = {0xF8, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x64, 0x64};
  CHECK(std::memcmp(req, expected, 8) == 0);
  // 229.8 V, 5.010 A, 1150.5 W, 123456 Wh, 50.0 Hz, pf 0.99, no alarm.
  uint8_t resp[25] = {0x01, 0x04, 0x14,
                      0x08, 0xFA,              // 2298
                      0x13, 0x92, 0x00, 0x00,  // 5010 low, high
                      0x2C, 0xF1, 0x00, 0x00,  // 11505
                      0xE2, 0x40, 0x00, 0x01,  // 123456 = 0x0001E240
                      0x01, 0xF4,              // 500
                      0x00, 0x63,              // 99
                      0x00, 0x00};
  const uint16_t crc = pf::crc16_modbus(resp, 23);
  resp[23] = static_cast<uint8_t>(crc & 0xFF);
  resp[24] = static_cast<uint8_t>(crc >> 8);
  pf::PzemValues v;
  CHECK(pf::pzem_parse_response(resp, sizeof resp, 0xF8, &v));
  CHECK_EQ(v.voltage, 229.8f);
  CHECK_EQ(v.current, 5.01f);
  CHECK_EQ(v.power, 1150.5f);
  CHECK_EQ(v.energy_wh, 123456u);
  CHECK_EQ(v.frequency, 50.0f);
  CHECK_EQ(v.pf, 0.99f);
  CHECK(!v.alarm);
  CHECK(pf::pzem_parse_response(resp, sizeof resp, 0x01, &v));
  CHECK(!pf::pzem_parse_response(resp, sizeof resp, 0x02, &v));  // wrong slave
  resp[10] ^= 1;
  CHECK(!pf::pzem_parse_response(resp, sizeof resp, 0xF8, &v));  // CRC
  CHECK(!pf::pzem_parse_response(resp, 10, 0xF8, &v));           // short
}
