#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "mem_storage.h"
#include "pf_ring.h"

namespace {

pf::Reading make(int64_t ts, float v) {
  pf::Reading r;
  r.ts_ms = ts;
  r.temp = v;
  r.humidity = 50.0f;
  r.brightness = 100.0f;
  r.power = 10.0f * v;
  r.voltage = 230.0f;
  r.current = 0.5f;
  r.energy_wh = 1000.0 + v;
  return r;
}

// Sequence numbers of live records, oldest first.
std::vector<uint32_t> live_seqs(pf::RingBuffer& ring) {
  std::vector<uint32_t> out;
  for (uint32_t k = 0; k < ring.span(); ++k) {
    const uint32_t s = ring.slot_at(k);
    if (!ring.is_live(s)) continue;
    pf::Record rec;
    if (ring.read(s, &rec)) out.push_back(rec.reading.seq);
    else out.push_back(0xFFFFFFFFu);
  }
  return out;
}

std::vector<uint32_t> range(uint32_t a, uint32_t b) {
  std::vector<uint32_t> v;
  for (uint32_t i = a; i < b; ++i) v.push_back(i);
  return v;
}

std::string show_vec(const std::vector<uint32_t>& v) {
  std::string s = "[";
  for (uint32_t x : v) s += std::to_string(x) + ",";
  return s + "]";
}

#define CHECK_SEQS(ring, expected) CHECK_EQ(show_vec(live_seqs(ring)), show_vec(expected))

uint32_t slot_of_seq(pf::RingBuffer& ring, uint32_t seq) {
  for (uint32_t k = 0; k < ring.span(); ++k) {
    pf::Record rec;
    const uint32_t s = ring.slot_at(k);
    if (ring.is_live(s) && ring.read(s, &rec) && rec.reading.seq == seq) return s;
  }
  return 0xFFFFFFFFu;
}

const int64_t kT0 = 1687876200000LL;

}  // namespace

TEST(ring_push_and_order) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  CHECK_EQ(ring.stats().formatted, 1u);
  for (int i = 0; i < 5; ++i) {
    pf::Reading r = make(kT0 + i * 5000, static_cast<float>(i));
    CHECK(ring.push(r, true).ok);
    CHECK_EQ(r.seq, static_cast<uint32_t>(i));
  }
  CHECK_EQ(ring.live_count(), 5u);
  CHECK_SEQS(ring, range(0, 5));
}

TEST(ring_wraparound_drops_oldest_with_counter) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  for (int i = 0; i < 20; ++i) {
    pf::Reading r = make(kT0 + i * 5000, static_cast<float>(i));
    const pf::PushResult res = ring.push(r, true);
    CHECK(res.ok);
    CHECK_EQ(res.dropped_oldest, i >= 8);
  }
  CHECK_EQ(ring.live_count(), 8u);
  CHECK_EQ(ring.stats().dropped_overflow, 12u);
  CHECK_SEQS(ring, range(12, 20));
  // Oldest record's contents are intact after wrapping.
  pf::Record rec;
  CHECK(ring.read(ring.slot_at(0), &rec));
  CHECK_EQ(rec.reading.ts_ms, kT0 + 12 * 5000);
  CHECK_EQ(rec.reading.temp, 12.0f);
}

TEST(ring_ack_removes_only_that_record) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  for (int i = 0; i < 5; ++i) {
    pf::Reading r = make(kT0 + i, 1);
    ring.push(r, true);
  }
  CHECK(ring.ack(slot_of_seq(ring, 2), 2));  // out of order
  CHECK_SEQS(ring, (std::vector<uint32_t>{0, 1, 3, 4}));
  CHECK(!ring.ack(slot_of_seq(ring, 1), 99));  // wrong seq: refused
  CHECK_EQ(ring.live_count(), 4u);
  CHECK(ring.ack(slot_of_seq(ring, 0), 0));
  CHECK(ring.ack(slot_of_seq(ring, 1), 1));
  CHECK_SEQS(ring, (std::vector<uint32_t>{3, 4}));
  CHECK_EQ(ring.span(), 2u);  // tail skipped over the acked hole
}

TEST(ring_persistence_round_trip_after_reboot) {
  MemStorage st(pf::ring_storage_bytes(16));
  {
    pf::RingBuffer ring(st, 16);
    CHECK(ring.begin(111));
    for (int i = 0; i < 6; ++i) {
      pf::Reading r = make(kT0 + i * 5000, 20.0f + static_cast<float>(i));
      if (i == 3) r.temp = std::nanf("");  // failed sensor survives as NaN
      ring.push(r, true);
    }
    CHECK(ring.ack(slot_of_seq(ring, 0), 0));
    CHECK(ring.ack(slot_of_seq(ring, 1), 1));
    CHECK(ring.checkpoint());
  }
  pf::RingBuffer ring(st, 16);  // "reboot"
  CHECK(ring.begin(222));
  CHECK_EQ(ring.stats().formatted, 0u);
  CHECK_EQ(ring.stats().corrupt_records, 0u);
  CHECK_EQ(ring.live_count(), 4u);
  CHECK_SEQS(ring, range(2, 6));
  CHECK_EQ(ring.next_seq(), 6u);
  for (uint32_t k = 0; k < ring.span(); ++k) {
    pf::Record rec;
    CHECK(ring.read(ring.slot_at(k), &rec));
    const int i = static_cast<int>(rec.reading.seq);
    CHECK_EQ(rec.reading.ts_ms, kT0 + i * 5000);
    if (i == 3) CHECK(std::isnan(rec.reading.temp));
    else CHECK_EQ(rec.reading.temp, 20.0f + static_cast<float>(i));
    CHECK_EQ(rec.reading.energy_wh, 1000.0 + static_cast<double>(20.0f + static_cast<float>(i)));
    CHECK_EQ(rec.boot_id, 111u);
    CHECK(rec.flags & pf::kFlagSynced);
  }
  pf::Reading r = make(kT0 + 99, 1);
  CHECK(ring.push(r, true).ok);
  CHECK_EQ(r.seq, 6u);  // sequence survives the reboot
}

TEST(ring_uncheckpointed_acks_are_resent_not_lost) {
  MemStorage st(pf::ring_storage_bytes(8));
  {
    pf::RingBuffer ring(st, 8);
    CHECK(ring.begin(1));
    for (int i = 0; i < 4; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);
    }
    CHECK(ring.ack(slot_of_seq(ring, 0), 0));
    CHECK(ring.checkpoint());
    CHECK(ring.ack(slot_of_seq(ring, 1), 1));  // acked but power lost before checkpoint
  }
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(2));
  CHECK_SEQS(ring, range(1, 4));  // at-least-once: seq 1 will be sent again
}

TEST(ring_torn_record_skipped_on_recovery) {
  MemStorage st(pf::ring_storage_bytes(8));
  uint32_t torn_slot;
  {
    pf::RingBuffer ring(st, 8);
    CHECK(ring.begin(1));
    for (int i = 0; i < 5; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);
    }
    torn_slot = slot_of_seq(ring, 2);
  }
  st.data_[pf::kRingHeaderSize + torn_slot * pf::kRecordSize + 30] ^= 0x5A;  // damage seq 2
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(2));
  CHECK_EQ(ring.stats().corrupt_records, 1u);
  CHECK_SEQS(ring, (std::vector<uint32_t>{0, 1, 3, 4}));
  CHECK_EQ(ring.next_seq(), 5u);
}

TEST(ring_torn_newest_write_recovers_previous_state) {
  MemStorage st(pf::ring_storage_bytes(8));
  {
    pf::RingBuffer ring(st, 8);
    CHECK(ring.begin(1));
    for (int i = 0; i < 3; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);
    }
  }
  // Power cut during the 4th write: only its first 20 bytes reached flash.
  {
    MemStorage scratch(pf::ring_storage_bytes(8));
    scratch.data_ = st.data_;
    pf::RingBuffer ring(scratch, 8);
    CHECK(ring.begin(1));
    pf::Reading r = make(kT0 + 3, 1);
    ring.push(r, true);
    const uint32_t off = pf::kRingHeaderSize + 3 * pf::kRecordSize;
    std::memcpy(st.data_.data() + off, scratch.data_.data() + off, 20);
  }
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(2));
  CHECK_EQ(ring.stats().corrupt_records, 1u);
  CHECK_SEQS(ring, range(0, 3));
  pf::Reading r = make(kT0 + 4, 1);
  const pf::PushResult res = ring.push(r, true);
  CHECK(res.ok);
  CHECK_EQ(res.slot, 3u);  // the torn slot is reused
  CHECK_EQ(r.seq, 3u);
}

TEST(ring_wrapped_state_survives_reboot) {
  MemStorage st(pf::ring_storage_bytes(8));
  {
    pf::RingBuffer ring(st, 8);
    CHECK(ring.begin(1));
    for (int i = 0; i < 13; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);
    }
    CHECK(ring.ack(slot_of_seq(ring, 5), 5));
    CHECK(ring.ack(slot_of_seq(ring, 6), 6));
    CHECK(ring.checkpoint());
  }
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(2));
  CHECK_SEQS(ring, range(7, 13));
  for (int i = 13; i < 16; ++i) {
    pf::Reading r = make(kT0 + i, 1);
    CHECK(ring.push(r, true).ok);
  }
  CHECK_EQ(ring.stats().dropped_overflow, 1u);  // 6 live + 3 new > 8
  CHECK_SEQS(ring, range(8, 16));
}

TEST(ring_bad_header_reformats_and_ignores_stale_records) {
  MemStorage st(pf::ring_storage_bytes(8));
  {
    pf::RingBuffer ring(st, 8);
    CHECK(ring.begin(1));
    for (int i = 0; i < 4; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);
    }
  }
  st.data_[9] ^= 0xFF;  // header damaged (capacity byte) -> CRC mismatch
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(2));
  CHECK_EQ(ring.stats().formatted, 1u);
  CHECK_EQ(ring.live_count(), 0u);  // old generation records are not revived
  {
    pf::RingBuffer again(st, 8);
    CHECK(again.begin(3));
    CHECK_EQ(again.stats().formatted, 0u);
    CHECK_EQ(again.live_count(), 0u);
  }
  // Different capacity for the same storage also reformats.
  pf::RingBuffer other(st, 4);
  CHECK(other.begin(4));
  CHECK_EQ(other.stats().formatted, 1u);
}

TEST(ring_checkpoint_ab_fallback) {
  MemStorage st(pf::ring_storage_bytes(8));
  {
    pf::RingBuffer ring(st, 8);
    CHECK(ring.begin(1));
    for (int i = 0; i < 6; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);
    }
    CHECK(ring.ack(slot_of_seq(ring, 0), 0));
    CHECK(ring.checkpoint());  // counter 1 -> slot B (48), floor 1
    CHECK(ring.ack(slot_of_seq(ring, 1), 1));
    CHECK(ring.ack(slot_of_seq(ring, 2), 2));
    CHECK(ring.checkpoint());  // counter 2 -> slot A (32), floor 3
    CHECK_EQ(ring.persisted_floor(), 3u);
  }
  st.data_[32 + 9] ^= 0x01;  // tear the newest checkpoint
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(2));
  CHECK_SEQS(ring, range(1, 6));  // falls back to floor 1: resend, never lose
}

TEST(ring_unsynced_records_stamped_after_sync) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(77));
  for (int i = 0; i < 3; ++i) {
    pf::Reading r = make(1000 + i * 5000, 1);  // monotonic ms since boot
    ring.push(r, false);
  }
  CHECK(ring.is_unsynced(ring.slot_at(0)));
  // NTP answers at mono 12000 with epoch kT0.
  CHECK_EQ(ring.stamp_unsynced(kT0, 12000), 3u);
  for (uint32_t k = 0; k < 3; ++k) {
    const uint32_t s = ring.slot_at(k);
    CHECK(!ring.is_unsynced(s));
    pf::Record rec;
    CHECK(ring.read(s, &rec));
    CHECK(rec.flags & pf::kFlagSynced);
    CHECK_EQ(rec.reading.ts_ms, kT0 - 12000 + 1000 + static_cast<int64_t>(k) * 5000);
  }
  pf::RingBuffer after(st, 8);
  CHECK(after.begin(78));
  CHECK_EQ(after.live_count(), 3u);  // stamped on flash: kept across reboot
  CHECK_EQ(after.stats().dropped_unsynced, 0u);
}

TEST(ring_unsynced_from_previous_boot_dropped_once) {
  MemStorage st(pf::ring_storage_bytes(16));
  {
    pf::RingBuffer ring(st, 16);
    CHECK(ring.begin(1));
    for (int i = 0; i < 2; ++i) {
      pf::Reading r = make(kT0 + i, 1);
      ring.push(r, true);  // synced, never delivered
    }
  }
  {
    pf::RingBuffer ring(st, 16);
    CHECK(ring.begin(2));
    for (int i = 0; i < 3; ++i) {
      pf::Reading r = make(500 + i, 1);
      ring.push(r, false);  // no NTP before the next reboot
    }
  }
  {
    pf::RingBuffer ring(st, 16);
    CHECK(ring.begin(3));
    CHECK_EQ(ring.stats().dropped_unsynced, 3u);
    CHECK_SEQS(ring, range(0, 2));
    pf::Reading r = make(kT0 + 10, 1);
    ring.push(r, true);
    CHECK_EQ(r.seq, 5u);  // seq never reused
  }
  pf::RingBuffer ring(st, 16);
  CHECK(ring.begin(4));
  CHECK_EQ(ring.stats().dropped_unsynced, 0u);  // tombstoned: counted only once
  CHECK_SEQS(ring, (std::vector<uint32_t>{0, 1, 5}));
}

TEST(ring_write_failure_is_reported) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  st.fail_writes = true;
  pf::Reading r = make(kT0, 1);
  CHECK(!ring.push(r, true).ok);
  CHECK_EQ(ring.stats().storage_errors, 1u);
  CHECK_EQ(ring.live_count(), 0u);
  st.fail_writes = false;
  CHECK(ring.push(r, true).ok);
  CHECK_EQ(r.seq, 0u);
  MemStorage tiny(100);
  pf::RingBuffer bad(tiny, 8);
  CHECK(!bad.begin(1));  // storage smaller than the ring
}

TEST(ring_full_day_capacity) {
  const uint32_t cap = 17280;  // 24 h at 5 s
  MemStorage st(pf::ring_storage_bytes(cap));
  {
    pf::RingBuffer ring(st, cap);
    CHECK(ring.begin(1));
    for (uint32_t i = 0; i < cap + 100; ++i) {
      pf::Reading r = make(kT0 + static_cast<int64_t>(i) * 5000, 1);
      ring.push(r, true);
    }
    CHECK_EQ(ring.live_count(), cap);
    CHECK_EQ(ring.stats().dropped_overflow, 100u);
  }
  pf::RingBuffer ring(st, cap);
  CHECK(ring.begin(2));
  CHECK_EQ(ring.live_count(), cap);
  pf::Record first, last;
  CHECK(ring.read(ring.slot_at(0), &first));
  CHECK(ring.read(ring.slot_at(ring.span() - 1), &last));
  CHECK_EQ(first.reading.seq, 100u);
  CHECK_EQ(last.reading.seq, cap + 99);
}

TEST(ring_seq_high_water_mark_after_reformat) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));  // fresh/erased flash: seq would restart at 0
  ring.ensure_next_seq(5000);
  ring.ensure_next_seq(10);  // never lowers
  pf::Reading r;
  r.ts_ms = 1687876200000LL;
  CHECK(ring.push(r, true).ok);
  CHECK_EQ(r.seq, 5000u);
  pf::RingBuffer again(st, 8);
  CHECK(again.begin(2));
  CHECK_EQ(again.next_seq(), 5001u);
}
