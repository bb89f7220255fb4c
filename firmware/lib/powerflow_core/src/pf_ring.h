// Persistent store-and-forward ring buffer of fixed-size records.
//
// Storage layout (all little-endian):
//   [0, 32)   header: magic "PFRB"(u32 0x42524650), version u16 (1),
//             record_size u16 (64), capacity u32, generation u32,
//             12 reserved bytes, CRC-32 of bytes 0..27 at 28
//   [32, 48)  checkpoint A: magic "PFCK" u32, counter u32, ack_floor u32, CRC-32
//   [48, 64)  checkpoint B (A/B alternate; the valid one with the higher
//             counter wins, so a torn checkpoint write falls back to the other)
//   [64, 64 + capacity*64)  record slots (see pf_record.h)
//
// A record is "live" (waiting for a broker acknowledgement) when it has a
// valid CRC, the header's generation, no DROPPED flag, and seq >= ack_floor.
// Acknowledgements only move the in-RAM state; checkpoint() persists the
// ack floor (= seq of the oldest live record). Acknowledged records that were
// not yet checkpointed are re-sent after a reboot: at-least-once, never lost.
//
// When the buffer is full the oldest record is overwritten (dropped_overflow).
#pragma once
#include <cstddef>
#include <cstdint>

#include "pf_record.h"
#include "pf_storage.h"

namespace pf {

constexpr uint32_t kRingHeaderSize = 64;
constexpr uint32_t kRingChunkRecords = 64;  // I/O batch: 64 records = 4 KiB

constexpr uint32_t ring_storage_bytes(uint32_t capacity) {
  return kRingHeaderSize + capacity * static_cast<uint32_t>(kRecordSize);
}

struct RingStats {
  uint32_t dropped_overflow = 0;  // oldest record overwritten because full
  uint32_t dropped_unsynced = 0;  // never time-stamped (reboot before NTP sync)
  uint32_t corrupt_records = 0;   // CRC failures seen at mount / read
  uint32_t storage_errors = 0;    // failed reads/writes
  uint32_t formatted = 0;         // 1 if begin() had to (re)format
};

struct PushResult {
  bool ok = false;
  bool dropped_oldest = false;  // an unacknowledged record was overwritten
  uint32_t dropped_slot = 0;
  uint32_t slot = 0;
};

class RingBuffer {
 public:
  RingBuffer(Storage& storage, uint32_t capacity);
  ~RingBuffer();
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  // Mounts (or formats) the buffer. `boot_id` identifies this boot; live
  // unsynced records from another boot can no longer be time-stamped and are
  // dropped (tombstoned) with a counter.
  bool begin(uint32_t boot_id);

  uint32_t capacity() const { return capacity_; }
  uint32_t live_count() const { return live_count_; }
  uint32_t span() const { return used_; }  // slots from oldest live to newest
  uint32_t next_seq() const { return next_seq_; }
  // Raises the next sequence number (never lowers it). The board feeds it a
  // high-water mark kept in NVS so seq stays monotonic even if the ring
  // partition is erased or reformatted.
  void ensure_next_seq(uint32_t min_seq) {
    if (next_seq_ < min_seq) next_seq_ = min_seq;
  }
  uint32_t boot_id() const { return boot_id_; }
  const RingStats& stats() const { return stats_; }

  // Appends a reading; assigns reading.seq. `synced`: ts_ms is epoch ms,
  // otherwise monotonic ms of this boot.
  PushResult push(Reading& reading, bool synced);

  // Oldest-first iteration: slot_at(0) is the oldest, k < span().
  uint32_t slot_at(uint32_t k) const { return (tail_ + k) % capacity_; }
  bool is_live(uint32_t slot) const { return bit(live_, slot); }
  bool is_unsynced(uint32_t slot) const { return bit(unsynced_, slot); }
  bool read(uint32_t slot, Record* rec);

  // Broker acknowledged the record in `slot` with sequence `seq`.
  // Returns false if that record is no longer live (e.g. overwritten).
  bool ack(uint32_t slot, uint32_t seq);
  // Permanently drops a live record (tombstone written to flash).
  bool discard(uint32_t slot, uint32_t seq);

  // Clock just got synchronised: converts every live unsynced record of this
  // boot to epoch time. Returns how many were stamped.
  uint32_t stamp_unsynced(int64_t sync_epoch_ms, int64_t sync_mono_ms);

  // Persists the ack floor if it changed. Cheap to call periodically.
  bool checkpoint();
  uint32_t persisted_floor() const { return persisted_floor_; }

 private:
  static bool bit(const uint8_t* bm, uint32_t i) { return (bm[i >> 3] >> (i & 7)) & 1; }
  static void set_bit(uint8_t* bm, uint32_t i, bool v) {
    if (v) bm[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
    else bm[i >> 3] &= static_cast<uint8_t>(~(1u << (i & 7)));
  }
  uint32_t slot_offset(uint32_t slot) const { return kRingHeaderSize + slot * static_cast<uint32_t>(kRecordSize); }
  bool format(uint32_t generation);
  bool load_checkpoint();
  bool write_checkpoint(uint32_t floor);
  void advance_tail();
  void kill(uint32_t slot);
  uint32_t current_floor(bool* ok);
  // Rewrites records selected by the `select` bitmap chunk by chunk.
  // op: 0 = tombstone, 1 = stamp with (epoch, mono). Returns records modified.
  uint32_t rewrite_selected(const uint8_t* select, int op, int64_t sync_epoch_ms, int64_t sync_mono_ms);

  Storage& storage_;
  uint32_t capacity_;
  uint8_t* live_ = nullptr;
  uint8_t* unsynced_ = nullptr;
  uint8_t* chunk_ = nullptr;
  uint32_t boot_id_ = 0;
  uint32_t generation_ = 0;
  uint32_t head_ = 0;  // next slot to write
  uint32_t tail_ = 0;  // oldest live slot (== head_ when empty)
  uint32_t used_ = 0;
  uint32_t live_count_ = 0;
  uint32_t next_seq_ = 0;
  uint32_t ckpt_counter_ = 0;
  uint32_t persisted_floor_ = 0;
  bool mounted_ = false;
  RingStats stats_;
};

}  // namespace pf
