// PZEM energy counter handling.
//
// Choice: the published energy_wh is the raw PZEM counter (Wh) plus a
// device-side offset. When the raw counter goes backwards (PZEM reset via
// button/command, or its wrap at 9999.99 kWh) the last raw value seen is
// added to the offset, so energy_wh never decreases. Energy consumed between
// the last good reading and the reset (at most one sample period) is lost.
// The offset and last raw value are persisted by the board (NVS) so a reset
// that happens while the ESP32 is running is remembered across its reboots.
#pragma once
#include <cstdint>

namespace pf {

class EnergyCounter {
 public:
  void restore(double offset_wh, uint32_t last_raw_wh, bool have_last) {
    offset_ = offset_wh;
    last_raw_ = last_raw_wh;
    have_last_ = have_last;
  }
  // Feeds a raw counter value; returns the monotonic published value.
  double update(uint32_t raw_wh);
  double published() const { return offset_ + last_raw_; }
  double offset_wh() const { return offset_; }
  uint32_t last_raw_wh() const { return last_raw_; }
  bool have_last() const { return have_last_; }
  uint32_t resets() const { return resets_; }
  // True once after each detected reset (board persists the offset then).
  bool take_dirty() {
    const bool d = dirty_;
    dirty_ = false;
    return d;
  }

 private:
  double offset_ = 0;
  uint32_t last_raw_ = 0;
  bool have_last_ = false;
  bool dirty_ = false;
  uint32_t resets_ = 0;
};

}  // namespace pf
