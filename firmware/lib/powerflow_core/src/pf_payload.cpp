#include "pf_payload.h"

#include <cstdio>
#include <cstring>

#include "pf_json.h"
#include "pf_time.h"

namespace pf {

bool is_valid_device_code(const char* code) {
  if (code == nullptr) return false;
  size_t n = 0;
  for (const char* p = code; *p; ++p, ++n) {
    const char c = *p;
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == ':' || c == '-';
    if (!ok || n >= kMaxDeviceCodeLen) return false;
  }
  return n >= 1;
}

size_t format_mac(const uint8_t mac[6], char* out, size_t cap) {
  if (cap < 18) return 0;
  static const char hex[] = "0123456789ABCDEF";
  for (int i = 0; i < 6; ++i) {
    out[i * 3] = hex[mac[i] >> 4];
    out[i * 3 + 1] = hex[mac[i] & 0x0F];
    out[i * 3 + 2] = (i == 5) ? '\0' : ':';
  }
  return 17;
}

size_t build_measurement_topic(const char* device_code, bool legacy, char* out, size_t cap) {
  int n;
  if (legacy) {
    n = std::snprintf(out, cap, "power/measurement");
  } else {
    if (!is_valid_device_code(device_code)) return 0;
    n = std::snprintf(out, cap, "power/%s/measurement", device_code);
  }
  return (n > 0 && static_cast<size_t>(n) < cap) ? static_cast<size_t>(n) : 0;
}

size_t build_status_topic(const char* device_code, char* out, size_t cap) {
  if (!is_valid_device_code(device_code)) return 0;
  const int n = std::snprintf(out, cap, "power/%s/status", device_code);
  return (n > 0 && static_cast<size_t>(n) < cap) ? static_cast<size_t>(n) : 0;
}

size_t build_client_id(const char* configured, const char* username, const char* device_code,
                       char* out, size_t cap) {
  if (cap == 0) return 0;
  int n;
  if (configured != nullptr && configured[0] != '\0') {
    n = std::snprintf(out, cap, "%s", configured);
  } else if (username != nullptr && username[0] != '\0') {
    n = std::snprintf(out, cap, "%s", username);
  } else {
    n = std::snprintf(out, cap, "powerflow-%s", device_code != nullptr ? device_code : "");
    if (n > 0 && static_cast<size_t>(n) < cap) {
      size_t w = 0;  // MAC codes: "powerflow-A4CF129B0001"
      for (size_t r = 0; out[r] != '\0'; ++r) {
        if (out[r] != ':') out[w++] = out[r];
      }
      out[w] = '\0';
      n = static_cast<int>(w);
    }
  }
  if (n <= 0 || static_cast<size_t>(n) >= cap) {
    out[0] = '\0';
    return 0;
  }
  return static_cast<size_t>(n);
}

size_t encode_measurement(const Reading& r, const char* device_code, const char* fw,
                          char* out, size_t cap) {
  char ts[kIsoTimestampSize];
  if (format_iso8601_ms(r.ts_ms, ts, sizeof ts) == 0) return 0;
  JsonWriter w(out, cap);
  w.begin_object();
  w.key_string("deviceCode", device_code);
  w.key_string("timestamp", ts);
  // Decimals chosen from the sensors' resolution; non-finite values omitted.
  w.key_number("temp", r.temp, 2);
  w.key_number("humidity", r.humidity, 2);
  w.key_number("brightness", r.brightness, 1);
  w.key_number("electric", r.power, 1);
  w.key_number("energy_wh", r.energy_wh, 1);
  w.key_number("voltage", r.voltage, 1);
  w.key_number("current", r.current, 3);
  w.key_uint("seq", r.seq);
  w.key_string("fw", fw);
  w.end_object();
  return w.length();
}

size_t encode_status(const StatusInfo& s, const char* device_code, const char* fw,
                     char* out, size_t cap) {
  JsonWriter w(out, cap);
  w.begin_object();
  w.key_string("deviceCode", device_code);
  if (s.ts_ms >= 0) {
    char ts[kIsoTimestampSize];
    if (format_iso8601_ms(s.ts_ms, ts, sizeof ts) != 0) w.key_string("timestamp", ts);
  }
  w.key_string("state", s.state);
  w.key_string("fw", fw);
  w.key_uint("uptime_s", s.uptime_s);
  w.key_uint("buffered", s.buffered);
  w.key_uint("in_flight", s.in_flight);
  w.key_uint("dropped_overflow", s.dropped_overflow);
  w.key_uint("dropped_unsynced", s.dropped_unsynced);
  w.key_uint("corrupt_records", s.corrupt_records);
  w.key_uint("storage_errors", s.storage_errors);
  w.key_uint("skipped_samples", s.skipped_samples);
  w.key_uint("pzem_resets", s.pzem_resets);
  w.key_number("energy_offset_wh", s.energy_offset_wh, 1);
  w.key_int("rssi", s.rssi);
  w.end_object();
  return w.length();
}

}  // namespace pf
