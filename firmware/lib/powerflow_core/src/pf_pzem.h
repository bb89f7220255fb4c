// PZEM-004T v3.0 Modbus-RTU framing (9600 8N1). Read 10 input registers
// starting at 0x0000: voltage (0.1 V), current (32-bit, 0.001 A), power
// (32-bit, 0.1 W), energy (32-bit, 1 Wh), frequency (0.1 Hz), power factor
// (0.01), alarm. 32-bit values are sent low word first, each word big-endian.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {

constexpr uint8_t kPzemGeneralAddress = 0xF8;
constexpr size_t kPzemRequestLen = 8;
constexpr size_t kPzemResponseLen = 25;

struct PzemValues {
  float voltage = 0;    // V
  float current = 0;    // A
  float power = 0;      // W
  uint32_t energy_wh = 0;
  float frequency = 0;  // Hz
  float pf = 0;
  bool alarm = false;
};

// Builds the "read input registers 0..9" request. Returns 8.
size_t pzem_build_read_request(uint8_t addr, uint8_t out[kPzemRequestLen]);
// Parses a 25-byte response; checks length, function code, byte count and
// CRC (and the address unless the request used the general address 0xF8).
bool pzem_parse_response(const uint8_t* buf, size_t len, uint8_t addr, PzemValues* out);

}  // namespace pf
