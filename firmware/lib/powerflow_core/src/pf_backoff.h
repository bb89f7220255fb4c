// Exponential backoff with "equal jitter": the n-th delay is uniformly
// distributed in [cap_n/2, cap_n] with cap_n = min(max, base * 2^n).
#pragma once
#include <cstdint>

namespace pf {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual uint32_t next_u32() = 0;
};

class Backoff {
 public:
  Backoff(uint32_t base_ms, uint32_t max_ms, RandomSource& rng);
  // Delay before the next attempt; grows until max_ms. Always within
  // [min(base,max)/2, max_ms].
  uint32_t next_delay_ms();
  void reset() { attempt_ = 0; }
  uint32_t attempts() const { return attempt_; }
  uint32_t current_cap_ms() const;

 private:
  uint32_t base_;
  uint32_t max_;
  RandomSource& rng_;
  uint32_t attempt_ = 0;
};

// Small deterministic PRNG (xorshift32) for tests and as a fallback.
class XorShift32 : public RandomSource {
 public:
  explicit XorShift32(uint32_t seed) : s_(seed ? seed : 0x9E3779B9u) {}
  uint32_t next_u32() override {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 17;
    s_ ^= s_ << 5;
    return s_;
  }

 private:
  uint32_t s_;
};

}  // namespace pf
