#include "pf_ring.h"

#include <cstring>
#include <new>

#include "pf_crc.h"
#include "pf_time.h"

namespace pf {

namespace {
constexpr uint32_t kHeaderMagic = 0x42524650;  // "PFRB"
constexpr uint32_t kCkptMagic = 0x4B434650;    // "PFCK"
constexpr uint16_t kHeaderVersion = 1;
constexpr uint32_t kCkptOffset[2] = {32, 48};
}  // namespace

RingBuffer::RingBuffer(Storage& storage, uint32_t capacity) : storage_(storage), capacity_(capacity) {}

RingBuffer::~RingBuffer() {
  delete[] live_;
  delete[] unsynced_;
  delete[] chunk_;
}

bool RingBuffer::format(uint32_t generation) {
  uint8_t h[kRingHeaderSize];
  std::memset(h, 0, sizeof h);
  put_u32(h + 0, kHeaderMagic);
  put_u16(h + 4, kHeaderVersion);
  put_u16(h + 6, static_cast<uint16_t>(kRecordSize));
  put_u32(h + 8, capacity_);
  put_u32(h + 12, generation);
  put_u32(h + 28, crc32(h, 28));
  // Checkpoints are zeroed (invalid) -> ack floor 0.
  if (!storage_.write(0, h, sizeof h)) {
    stats_.storage_errors++;
    return false;
  }
  generation_ = generation;
  ckpt_counter_ = 0;
  persisted_floor_ = 0;
  stats_.formatted = 1;
  return true;
}

bool RingBuffer::load_checkpoint() {
  bool found = false;
  uint32_t best_counter = 0, best_floor = 0;
  for (uint32_t off : kCkptOffset) {
    uint8_t c[16];
    if (!storage_.read(off, c, sizeof c)) {
      stats_.storage_errors++;
      continue;
    }
    if (get_u32(c) != kCkptMagic || get_u32(c + 12) != crc32(c, 12)) continue;
    const uint32_t counter = get_u32(c + 4);
    if (!found || counter > best_counter) {
      found = true;
      best_counter = counter;
      best_floor = get_u32(c + 8);
    }
  }
  ckpt_counter_ = found ? best_counter : 0;
  persisted_floor_ = found ? best_floor : 0;
  return found;
}

bool RingBuffer::write_checkpoint(uint32_t floor) {
  const uint32_t counter = ckpt_counter_ + 1;
  uint8_t c[16];
  put_u32(c, kCkptMagic);
  put_u32(c + 4, counter);
  put_u32(c + 8, floor);
  put_u32(c + 12, crc32(c, 12));
  if (!storage_.write(kCkptOffset[counter & 1], c, sizeof c)) {
    stats_.storage_errors++;
    return false;
  }
  ckpt_counter_ = counter;
  persisted_floor_ = floor;
  return true;
}

bool RingBuffer::begin(uint32_t boot_id) {
  mounted_ = false;
  stats_ = RingStats();
  boot_id_ = boot_id;
  if (capacity_ == 0 || storage_.size() < ring_storage_bytes(capacity_)) return false;
  const size_t bm = (capacity_ + 7) / 8;
  delete[] live_;
  delete[] unsynced_;
  delete[] chunk_;
  live_ = new (std::nothrow) uint8_t[bm];
  unsynced_ = new (std::nothrow) uint8_t[bm];
  chunk_ = new (std::nothrow) uint8_t[kRingChunkRecords * kRecordSize];
  if (!live_ || !unsynced_ || !chunk_) return false;
  std::memset(live_, 0, bm);
  std::memset(unsynced_, 0, bm);

  // Header.
  uint8_t h[32];
  bool header_ok = storage_.read(0, h, sizeof h);
  if (!header_ok) stats_.storage_errors++;
  const bool magic_ok = header_ok && get_u32(h) == kHeaderMagic && get_u32(h + 28) == crc32(h, 28);
  header_ok = magic_ok && get_u16(h + 4) == kHeaderVersion && get_u16(h + 6) == kRecordSize &&
              get_u32(h + 8) == capacity_;
  if (header_ok) {
    generation_ = get_u32(h + 12);
    load_checkpoint();
  } else {
    // New generation differs from any previous one so stale records of an
    // older layout are never mistaken for live ones.
    uint32_t gen = magic_ok ? get_u32(h + 12) + 1 : (boot_id ^ 0x5A5A5A5Au);
    if (gen == 0) gen = 1;
    if (!format(gen)) return false;
  }

  // Scan all slots, chunk by chunk.
  bool any_valid = false;
  uint32_t max_seq = 0, max_slot = 0;
  uint32_t to_drop = 0;
  for (uint32_t base = 0; base < capacity_; base += kRingChunkRecords) {
    const uint32_t n = (capacity_ - base < kRingChunkRecords) ? capacity_ - base : kRingChunkRecords;
    if (!storage_.read(slot_offset(base), chunk_, n * kRecordSize)) {
      stats_.storage_errors++;
      continue;
    }
    for (uint32_t i = 0; i < n; ++i) {
      Record rec;
      const DecodeResult d = decode_record(chunk_ + i * kRecordSize, &rec);
      if (d == DecodeResult::kCorrupt) {
        stats_.corrupt_records++;
        continue;
      }
      if (d != DecodeResult::kOk || rec.generation != generation_) continue;
      const uint32_t slot = base + i;
      const uint32_t seq = rec.reading.seq;
      if (!any_valid || seq > max_seq) {
        max_seq = seq;
        max_slot = slot;
        any_valid = true;
      }
      if ((rec.flags & kFlagDropped) || seq < persisted_floor_) continue;
      if (rec.flags & kFlagSynced) {
        set_bit(live_, slot, true);
        live_count_++;
      } else {
        set_bit(unsynced_, slot, true);  // marks "to drop" for now
        to_drop++;
      }
    }
  }
  if (to_drop > 0) {
    // Unsynced records of a previous boot: their monotonic stamp is
    // meaningless now. Tombstone them so they are counted only once.
    rewrite_selected(unsynced_, 0, 0, 0);
    stats_.dropped_unsynced += to_drop;
    std::memset(unsynced_, 0, bm);
  }
  head_ = any_valid ? (max_slot + 1) % capacity_ : 0;
  next_seq_ = any_valid ? max_seq + 1 : 0;
  if (next_seq_ < persisted_floor_) next_seq_ = persisted_floor_;
  tail_ = head_;
  used_ = 0;
  if (live_count_ > 0) {
    for (uint32_t k = 0; k < capacity_; ++k) {
      const uint32_t s = (head_ + k) % capacity_;
      if (bit(live_, s)) {
        tail_ = s;
        break;
      }
    }
    used_ = (head_ + capacity_ - tail_) % capacity_;
    if (used_ == 0) used_ = capacity_;
  }
  mounted_ = true;
  return true;
}

uint32_t RingBuffer::rewrite_selected(const uint8_t* select, int op, int64_t sync_epoch_ms,
                                      int64_t sync_mono_ms) {
  uint32_t modified = 0;
  for (uint32_t base = 0; base < capacity_; base += kRingChunkRecords) {
    const uint32_t n = (capacity_ - base < kRingChunkRecords) ? capacity_ - base : kRingChunkRecords;
    uint32_t lo = n, hi = 0;
    for (uint32_t i = 0; i < n; ++i) {
      if (bit(select, base + i)) {
        if (lo == n) lo = i;
        hi = i;
      }
    }
    if (lo == n) continue;
    const uint32_t cnt = hi - lo + 1;
    bool ok = storage_.read(slot_offset(base + lo), chunk_, cnt * kRecordSize);
    uint32_t changed = 0;
    if (ok) {
      for (uint32_t i = lo; i <= hi; ++i) {
        const uint32_t slot = base + i;
        if (!bit(select, slot)) continue;
        uint8_t* raw = chunk_ + (i - lo) * kRecordSize;
        Record rec;
        if (decode_record(raw, &rec) != DecodeResult::kOk) {
          stats_.corrupt_records++;
          if (op == 1) {  // cannot stamp what we cannot read: drop it
            kill(slot);
            stats_.dropped_unsynced++;
          }
          continue;
        }
        if (op == 0) {
          rec.flags |= kFlagDropped;
        } else {
          int64_t ts = 0;
          if (rec.boot_id == boot_id_ && stamp_from_mono(rec.reading.ts_ms, sync_epoch_ms, sync_mono_ms, &ts)) {
            rec.reading.ts_ms = ts;
            rec.flags |= kFlagSynced;
            set_bit(unsynced_, slot, false);
          } else {
            rec.flags |= kFlagDropped;
            kill(slot);
            stats_.dropped_unsynced++;
          }
        }
        encode_record(rec, raw);
        changed++;
      }
      ok = storage_.write(slot_offset(base + lo), chunk_, cnt * kRecordSize);
    }
    if (!ok) {
      stats_.storage_errors++;
      if (op == 1) {
        // RAM and flash would disagree; these records cannot be sent with a
        // correct timestamp, so they are dropped.
        for (uint32_t i = lo; i <= hi; ++i) {
          const uint32_t slot = base + i;
          if (bit(select, slot) && bit(live_, slot)) {
            kill(slot);
            stats_.dropped_unsynced++;
          }
        }
      }
      continue;
    }
    modified += changed;
  }
  return modified;
}

void RingBuffer::kill(uint32_t slot) {
  if (bit(live_, slot)) {
    set_bit(live_, slot, false);
    live_count_--;
  }
  set_bit(unsynced_, slot, false);
}

void RingBuffer::advance_tail() {
  while (used_ > 0 && !bit(live_, tail_)) {
    tail_ = (tail_ + 1) % capacity_;
    used_--;
  }
}

PushResult RingBuffer::push(Reading& reading, bool synced) {
  PushResult res;
  if (!mounted_) return res;
  if (used_ == capacity_) {
    // Full: tail == head. Overwrite the oldest record.
    if (bit(live_, tail_)) {
      res.dropped_oldest = true;
      res.dropped_slot = tail_;
      kill(tail_);
      stats_.dropped_overflow++;
    }
    tail_ = (tail_ + 1) % capacity_;
    used_--;
    advance_tail();
  }
  Record rec;
  rec.reading = reading;
  rec.reading.seq = next_seq_;
  rec.flags = synced ? kFlagSynced : 0;
  rec.boot_id = boot_id_;
  rec.generation = generation_;
  uint8_t raw[kRecordSize];
  encode_record(rec, raw);
  if (!storage_.write(slot_offset(head_), raw, sizeof raw)) {
    stats_.storage_errors++;
    return res;
  }
  reading.seq = next_seq_++;
  set_bit(live_, head_, true);
  set_bit(unsynced_, head_, !synced);
  res.ok = true;
  res.slot = head_;
  if (used_ == 0) tail_ = head_;
  head_ = (head_ + 1) % capacity_;
  used_++;
  live_count_++;
  return res;
}

bool RingBuffer::read(uint32_t slot, Record* rec) {
  if (!mounted_ || slot >= capacity_) return false;
  uint8_t raw[kRecordSize];
  if (!storage_.read(slot_offset(slot), raw, sizeof raw)) {
    stats_.storage_errors++;
    return false;
  }
  const DecodeResult d = decode_record(raw, rec);
  if (d == DecodeResult::kCorrupt) stats_.corrupt_records++;
  return d == DecodeResult::kOk && rec->generation == generation_;
}

bool RingBuffer::ack(uint32_t slot, uint32_t seq) {
  if (!mounted_ || slot >= capacity_ || !bit(live_, slot)) return false;
  Record rec;
  if (!read(slot, &rec) || rec.reading.seq != seq) return false;
  kill(slot);
  advance_tail();
  return true;
}

bool RingBuffer::discard(uint32_t slot, uint32_t seq) {
  if (!mounted_ || slot >= capacity_ || !bit(live_, slot)) return false;
  Record rec;
  if (read(slot, &rec)) {
    if (rec.reading.seq != seq) return false;
    rec.flags |= kFlagDropped;
    uint8_t raw[kRecordSize];
    encode_record(rec, raw);
    if (!storage_.write(slot_offset(slot), raw, sizeof raw)) stats_.storage_errors++;
  }
  // An unreadable record is dropped from RAM; at the next mount it is either
  // corrupt (skipped) or below the ack floor.
  kill(slot);
  advance_tail();
  return true;
}

uint32_t RingBuffer::stamp_unsynced(int64_t sync_epoch_ms, int64_t sync_mono_ms) {
  if (!mounted_) return 0;
  // Copy the selection: rewrite_selected mutates unsynced_ while iterating.
  const size_t bm = (capacity_ + 7) / 8;
  bool any = false;
  for (size_t i = 0; i < bm && !any; ++i) any = unsynced_[i] != 0;
  if (!any) return 0;
  uint8_t* sel = new (std::nothrow) uint8_t[bm];
  if (sel == nullptr) return 0;
  std::memcpy(sel, unsynced_, bm);
  rewrite_selected(sel, 1, sync_epoch_ms, sync_mono_ms);
  uint32_t stamped = 0;
  for (uint32_t s = 0; s < capacity_; ++s) {
    if (bit(sel, s) && bit(live_, s) && !bit(unsynced_, s)) stamped++;
  }
  delete[] sel;
  advance_tail();
  return stamped;
}

uint32_t RingBuffer::current_floor(bool* ok) {
  *ok = true;
  if (live_count_ == 0) return next_seq_;
  Record rec;
  if (!read(tail_, &rec)) {
    *ok = false;
    return 0;
  }
  return rec.reading.seq;
}

bool RingBuffer::checkpoint() {
  if (!mounted_) return false;
  bool ok = false;
  const uint32_t floor = current_floor(&ok);
  if (!ok) return false;
  if (floor == persisted_floor_) return true;
  return write_checkpoint(floor);
}

}  // namespace pf
