#include "pf_scheduler.h"

namespace pf {

bool FixedRateScheduler::poll(int64_t now_ms, int64_t* slot_ms) {
  if (!started_) start(now_ms);
  if (now_ms < next_) return false;
  // Latest slot boundary <= now.
  const int64_t k = (now_ms - start_) / period_;
  const int64_t slot = start_ + k * period_;
  skipped_ += static_cast<uint32_t>((slot - next_) / period_);
  next_ = slot + period_;
  if (slot_ms) *slot_ms = slot;
  return true;
}

}  // namespace pf
