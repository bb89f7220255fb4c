// Fixed-cadence sampling: slots at start + k*period (no drift, whatever the
// polling jitter). If the caller was late by more than one period, the
// missed slots are skipped (counted) instead of firing in a burst.
#pragma once
#include <cstdint>

namespace pf {

class FixedRateScheduler {
 public:
  explicit FixedRateScheduler(uint32_t period_ms) : period_(period_ms ? period_ms : 1) {}
  void start(int64_t now_ms) {
    start_ = now_ms;
    next_ = now_ms;
    started_ = true;
  }
  // Returns true when a sample is due; `slot_ms` receives the nominal slot time.
  bool poll(int64_t now_ms, int64_t* slot_ms = nullptr);
  uint32_t skipped() const { return skipped_; }
  uint32_t period_ms() const { return period_; }
  int64_t next_due_ms() const { return next_; }

 private:
  uint32_t period_;
  int64_t start_ = 0;
  int64_t next_ = 0;
  bool started_ = false;
  uint32_t skipped_ = 0;
};

}  // namespace pf
