#include "pf_pzem.h"

#include "pf_crc.h"

namespace pf {

size_t pzem_build_read_request(uint8_t addr, uint8_t out[kPzemRequestLen]) {
  out[0] = addr;
  out[1] = 0x04;  // read input registers
  out[2] = 0x00;
  out[3] = 0x00;  // start register 0
  out[4] = 0x00;
  out[5] = 0x0A;  // 10 registers
  const uint16_t crc = crc16_modbus(out, 6);
  out[6] = static_cast<uint8_t>(crc & 0xFF);
  out[7] = static_cast<uint8_t>(crc >> 8);
  return kPzemRequestLen;
}

static uint16_t reg(const uint8_t* data, int i) {
  return static_cast<uint16_t>((data[2 * i] << 8) | data[2 * i + 1]);
}

bool pzem_parse_response(const uint8_t* buf, size_t len, uint8_t addr, PzemValues* out) {
  if (buf == nullptr || len < kPzemResponseLen) return false;
  if (addr != kPzemGeneralAddress && buf[0] != addr) return false;
  if (buf[1] != 0x04 || buf[2] != 20) return false;
  const uint16_t crc = crc16_modbus(buf, 23);
  if (buf[23] != (crc & 0xFF) || buf[24] != (crc >> 8)) return false;
  const uint8_t* d = buf + 3;
  PzemValues v;
  v.voltage = reg(d, 0) / 10.0f;
  v.current = static_cast<float>((static_cast<uint32_t>(reg(d, 2)) << 16 | reg(d, 1)) / 1000.0);
  v.power = static_cast<float>((static_cast<uint32_t>(reg(d, 4)) << 16 | reg(d, 3)) / 10.0);
  v.energy_wh = static_cast<uint32_t>(reg(d, 6)) << 16 | reg(d, 5);
  v.frequency = reg(d, 7) / 10.0f;
  v.pf = reg(d, 8) / 100.0f;
  v.alarm = reg(d, 9) == 0xFFFF;
  if (out) *out = v;
  return true;
}

}  // namespace pf
