// Storage abstraction for the persistent ring buffer. The board implements it
// on LittleFS (segment files), host tests implement it in memory.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {

class Storage {
 public:
  virtual ~Storage() = default;
  // Total addressable bytes. Offsets in [0, size()).
  virtual uint32_t size() const = 0;
  // Reads `len` bytes. Never-written regions must read back as something
  // that fails the record CRC (e.g. 0x00 or 0xFF). Returns false on I/O error.
  virtual bool read(uint32_t offset, void* dst, size_t len) = 0;
  // Writes `len` bytes durably (data is on flash when this returns true).
  virtual bool write(uint32_t offset, const void* src, size_t len) = 0;
};

}  // namespace pf
