// Measurement payload / topic encoding (the wire contract with ingest).
#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {

// One sample. Sensor fields are NaN when the sensor failed; such fields are
// omitted from the JSON document.
struct Reading {
  int64_t ts_ms = 0;     // epoch ms (UTC) once synced; monotonic ms before
  uint32_t seq = 0;      // persistent sequence number
  float temp = 0;        // deg C
  float humidity = 0;    // %RH
  float brightness = 0;  // lux
  float power = 0;       // W ("electric")
  float voltage = 0;     // V
  float current = 0;     // A
  double energy_wh = 0;  // Wh, monotonic (raw PZEM counter + reset offset)
};

constexpr size_t kMaxDeviceCodeLen = 64;
constexpr size_t kMaxTopicLen = 96;
constexpr size_t kMaxPayloadLen = 512;

// True if `code` matches [A-Za-z0-9_:-]{1,64}.
bool is_valid_device_code(const char* code);

// "A4:CF:12:9B:00:01" (upper-case hex). `out` needs 18 bytes.
size_t format_mac(const uint8_t mac[6], char* out, size_t cap);

// "power/<device>/measurement", or "power/measurement" when legacy is set.
// Returns length or 0 if the device code is invalid / buffer too small.
size_t build_measurement_topic(const char* device_code, bool legacy, char* out, size_t cap);
// "power/<device>/status".
size_t build_status_topic(const char* device_code, char* out, size_t cap);

// The MQTT client id: `configured` when set; else the MQTT username, because powerflow's
// broker makes every client id its username (use_username_as_clientid) and an id that
// differs would only hide that; else (an open broker without accounts) "powerflow-<device>"
// without colons. Returns the length, or 0 if it does not fit `cap`.
size_t build_client_id(const char* configured, const char* username, const char* device_code,
                       char* out, size_t cap);

// Encodes the measurement JSON. Requires r.ts_ms to be an epoch in years
// 0000..9999. Returns the length (excluding NUL) or 0 on failure.
size_t encode_measurement(const Reading& r, const char* device_code, const char* fw,
                          char* out, size_t cap);

struct StatusInfo {
  const char* state = "online";
  int64_t ts_ms = -1;  // < 0: no timestamp member (clock not synced)
  uint64_t uptime_s = 0;
  uint32_t buffered = 0;
  uint32_t in_flight = 0;
  uint32_t dropped_overflow = 0;
  uint32_t dropped_unsynced = 0;
  uint32_t corrupt_records = 0;
  uint32_t storage_errors = 0;
  uint32_t skipped_samples = 0;
  uint32_t pzem_resets = 0;
  double energy_offset_wh = 0;
  int32_t rssi = 0;
};

size_t encode_status(const StatusInfo& s, const char* device_code, const char* fw,
                     char* out, size_t cap);

}  // namespace pf
