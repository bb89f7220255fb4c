#include "pf_record.h"

#include <cstring>

#include "pf_crc.h"

namespace pf {

void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

static void put_f32(uint8_t* p, float f) {
  uint32_t u;
  static_assert(sizeof u == sizeof f, "float must be 32-bit");
  std::memcpy(&u, &f, sizeof u);
  put_u32(p, u);
}
static float get_f32(const uint8_t* p) {
  const uint32_t u = get_u32(p);
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
static void put_f64(uint8_t* p, double d) {
  uint64_t u;
  static_assert(sizeof u == sizeof d, "double must be 64-bit");
  std::memcpy(&u, &d, sizeof u);
  put_u64(p, u);
}
static double get_f64(const uint8_t* p) {
  const uint64_t u = get_u64(p);
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

void encode_record(const Record& rec, uint8_t out[kRecordSize]) {
  std::memset(out, 0, kRecordSize);
  const Reading& r = rec.reading;
  put_u16(out + 0, kRecordMagic);
  out[2] = kRecordVersion;
  out[3] = rec.flags;
  put_u32(out + 4, r.seq);
  put_u64(out + 8, static_cast<uint64_t>(r.ts_ms));
  put_u32(out + 16, rec.boot_id);
  put_f32(out + 20, r.temp);
  put_f32(out + 24, r.humidity);
  put_f32(out + 28, r.brightness);
  put_f32(out + 32, r.power);
  put_f32(out + 36, r.voltage);
  put_f32(out + 40, r.current);
  put_u32(out + 44, rec.generation);
  put_f64(out + 48, r.energy_wh);
  put_u32(out + 56, 0);
  put_u32(out + 60, crc32(out, 60));
}

DecodeResult decode_record(const uint8_t in[kRecordSize], Record* rec) {
  if (get_u16(in) != kRecordMagic || in[2] != kRecordVersion) return DecodeResult::kEmpty;
  if (get_u32(in + 60) != crc32(in, 60)) return DecodeResult::kCorrupt;
  if (rec != nullptr) {
    Reading& r = rec->reading;
    rec->flags = in[3];
    r.seq = get_u32(in + 4);
    r.ts_ms = static_cast<int64_t>(get_u64(in + 8));
    rec->boot_id = get_u32(in + 16);
    r.temp = get_f32(in + 20);
    r.humidity = get_f32(in + 24);
    r.brightness = get_f32(in + 28);
    r.power = get_f32(in + 32);
    r.voltage = get_f32(in + 36);
    r.current = get_f32(in + 40);
    rec->generation = get_u32(in + 44);
    r.energy_wh = get_f64(in + 48);
  }
  return DecodeResult::kOk;
}

}  // namespace pf
