#include "pf_inflight.h"

namespace pf {

InflightTracker::InflightTracker(size_t window)
    : window_(window == 0 ? 1 : (window > kMaxWindow ? kMaxWindow : window)) {}

void InflightTracker::remove_at(size_t i) {
  for (size_t j = i + 1; j < count_; ++j) entries_[j - 1] = entries_[j];  // keeps send order
  count_--;
}

bool InflightTracker::add(int msg_id, uint32_t slot, uint32_t seq) {
  for (size_t i = 0; i < count_; ++i) {
    if (entries_[i].msg_id == msg_id) {
      remove_at(i);
      break;
    }
  }
  if (full()) return false;
  entries_[count_].msg_id = msg_id;
  entries_[count_].slot = slot;
  entries_[count_].seq = seq;
  count_++;
  return true;
}

bool InflightTracker::take(int msg_id, InflightEntry* out) {
  for (size_t i = 0; i < count_; ++i) {
    if (entries_[i].msg_id == msg_id) {
      if (out) *out = entries_[i];
      remove_at(i);
      return true;
    }
  }
  return false;
}

bool InflightTracker::contains_slot(uint32_t slot) const {
  for (size_t i = 0; i < count_; ++i) {
    if (entries_[i].slot == slot) return true;
  }
  return false;
}

bool InflightTracker::remove_slot(uint32_t slot) {
  for (size_t i = 0; i < count_; ++i) {
    if (entries_[i].slot == slot) {
      remove_at(i);
      return true;
    }
  }
  return false;
}

}  // namespace pf
