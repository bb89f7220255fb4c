// Tracks QoS 1 publishes awaiting PUBACK, keyed by MQTT msg_id.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {

struct InflightEntry {
  int msg_id = 0;
  uint32_t slot = 0;
  uint32_t seq = 0;
};

class InflightTracker {
 public:
  static constexpr size_t kMaxWindow = 32;
  explicit InflightTracker(size_t window = 8);

  size_t window() const { return window_; }
  size_t count() const { return count_; }
  bool full() const { return count_ >= window_; }

  // Adds an entry. A stale entry with the same msg_id (16-bit id reuse) is
  // replaced. Returns false when the window is full.
  bool add(int msg_id, uint32_t slot, uint32_t seq);
  // Removes and returns the entry for msg_id (on PUBACK). False if unknown.
  bool take(int msg_id, InflightEntry* out);
  bool contains_slot(uint32_t slot) const;
  // Forgets the entry for a slot (its record was overwritten).
  bool remove_slot(uint32_t slot);
  // Disconnect: every in-flight record becomes unsent again.
  void clear() { count_ = 0; }

 private:
  void remove_at(size_t i);
  InflightEntry entries_[kMaxWindow];
  size_t window_;
  size_t count_ = 0;
};

}  // namespace pf
