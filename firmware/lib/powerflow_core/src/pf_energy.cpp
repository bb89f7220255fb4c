#include "pf_energy.h"

namespace pf {

double EnergyCounter::update(uint32_t raw_wh) {
  if (have_last_ && raw_wh < last_raw_) {
    offset_ += last_raw_;
    resets_++;
    dirty_ = true;
  }
  last_raw_ = raw_wh;
  have_last_ = true;
  return offset_ + raw_wh;
}

}  // namespace pf
