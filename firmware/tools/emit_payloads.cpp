// Host tool: prints "<topic>\t<json>" lines produced by the firmware's own
// encoder, for contract tests against the ingest validation.
// Usage: emit_payloads [epoch_ms]   (default: current time)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "powerflow_core.h"

static bool emit(const pf::Reading& r, const char* device, bool legacy) {
  char topic[pf::kMaxTopicLen];
  char payload[pf::kMaxPayloadLen];
  if (pf::build_measurement_topic(device, legacy, topic, sizeof topic) == 0) return false;
  if (pf::encode_measurement(r, device, PF_FW_VERSION, payload, sizeof payload) == 0) return false;
  std::printf("%s\t%s\n", topic, payload);
  return true;
}

int main(int argc, char** argv) {
  int64_t now_ms;
  if (argc > 1) {
    char* end = nullptr;
    now_ms = std::strtoll(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0') {
      std::fprintf(stderr, "usage: %s [epoch_ms]\n", argv[0]);
      return 2;
    }
  } else {
    now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  }
  const char* dev = "A4:CF:12:9B:00:01";
  bool ok = true;

  pf::Reading a;  // normal reading, 10 s ago
  a.ts_ms = now_ms - 10000;
  a.seq = 41;
  a.temp = 25.3f;
  a.humidity = 55.2f;
  a.brightness = 650.0f;
  a.power = 1150.5f;
  a.energy_wh = 123456.0;
  a.voltage = 229.8f;
  a.current = 5.01f;
  ok &= emit(a, dev, false);

  pf::Reading b = a;  // normal reading, 5 s ago, low load, negative temp
  b.ts_ms = now_ms - 5000;
  b.seq = 42;
  b.temp = -3.25f;
  b.humidity = 81.0f;
  b.brightness = 0.0f;
  b.power = 0.0f;
  b.energy_wh = 123457.0;
  b.voltage = 231.2f;
  b.current = 0.0f;
  ok &= emit(b, dev, false);

  pf::Reading c = a;  // temperature sensor failed: "temp" omitted
  c.ts_ms = now_ms;
  c.seq = 43;
  c.temp = std::nanf("");
  c.energy_wh = 123458.0;
  ok &= emit(c, dev, false);

  pf::Reading d = a;  // legacy topic, custom device code
  d.ts_ms = now_ms - 1;
  d.seq = 7;
  d.energy_wh = 42.0;
  ok &= emit(d, "meter_kitchen-2", true);

  return ok ? 0 : 1;
}
