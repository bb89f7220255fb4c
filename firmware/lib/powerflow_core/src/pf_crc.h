#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {
// CRC-32 (IEEE 802.3, reflected, init/xorout 0xFFFFFFFF). crc32("123456789") == 0xCBF43926.
uint32_t crc32(const void* data, size_t len);
// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF). crc16("123456789") == 0x4B37.
uint16_t crc16_modbus(const void* data, size_t len);
}  // namespace pf
