// Fixed-size (64 byte) little-endian on-flash record format, version 1.
//
//  off size field
//    0  2   magic 0x5046 ("PF")
//    2  1   version (1)
//    3  1   flags: bit0 SYNCED (ts is epoch ms), bit1 DROPPED (tombstone)
//    4  4   seq (uint32)
//    8  8   ts_ms (int64; epoch ms if SYNCED, else monotonic ms since boot)
//   16  4   boot_id (random per boot; used for unsynced records)
//   20  4   temp (float32, NaN = failed)
//   24  4   humidity (float32)
//   28  4   brightness (float32)
//   32  4   power (float32)
//   36  4   voltage (float32)
//   40  4   current (float32)
//   44  4   generation (must equal the ring header's generation)
//   48  8   energy_wh (float64)
//   56  4   reserved (0)
//   60  4   CRC-32 over bytes 0..59
#pragma once
#include <cstddef>
#include <cstdint>

#include "pf_payload.h"

namespace pf {

constexpr size_t kRecordSize = 64;
constexpr uint16_t kRecordMagic = 0x5046;
constexpr uint8_t kRecordVersion = 1;
constexpr uint8_t kFlagSynced = 0x01;
constexpr uint8_t kFlagDropped = 0x02;

struct Record {
  Reading reading;
  uint8_t flags = 0;
  uint32_t boot_id = 0;
  uint32_t generation = 0;
};

enum class DecodeResult { kOk, kEmpty, kCorrupt };

void encode_record(const Record& rec, uint8_t out[kRecordSize]);
// kEmpty: no record magic/version (never written or erased).
// kCorrupt: magic present but CRC mismatch (torn or damaged write).
DecodeResult decode_record(const uint8_t in[kRecordSize], Record* rec);

// Little-endian helpers (also used by the ring header).
void put_u16(uint8_t* p, uint16_t v);
void put_u32(uint8_t* p, uint32_t v);
void put_u64(uint8_t* p, uint64_t v);
uint16_t get_u16(const uint8_t* p);
uint32_t get_u32(const uint8_t* p);
uint64_t get_u64(const uint8_t* p);

}  // namespace pf
