// In-memory Storage for host tests, with fault injection.
#pragma once
#include <cstring>
#include <vector>

#include "pf_storage.h"

class MemStorage : public pf::Storage {
 public:
  explicit MemStorage(uint32_t bytes) : data_(bytes, 0xFF) {}
  uint32_t size() const override { return static_cast<uint32_t>(data_.size()); }
  bool read(uint32_t off, void* dst, size_t len) override {
    reads++;
    if (fail_reads || off + len > data_.size()) return false;
    std::memcpy(dst, data_.data() + off, len);
    return true;
  }
  bool write(uint32_t off, const void* src, size_t len) override {
    writes++;
    if (fail_writes || off + len > data_.size()) return false;
    std::memcpy(data_.data() + off, src, len);
    return true;
  }
  std::vector<uint8_t> data_;
  bool fail_reads = false;
  bool fail_writes = false;
  unsigned reads = 0, writes = 0;
};
