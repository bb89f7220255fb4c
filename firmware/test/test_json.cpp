#include <cmath>
#include <limits>
#include <string>

#include "harness.h"
#include "pf_json.h"
#include "pf_payload.h"

static std::string num(double v, int dec) {
  char buf[40];
  return pf::format_number(v, dec, buf, sizeof buf) ? std::string(buf) : std::string("<omit>");
}
static std::string esc(const char* s) {
  char buf[256];
  return pf::json_escape_string(s, buf, sizeof buf) ? std::string(buf) : std::string("<fail>");
}

static pf::Reading sample() {
  pf::Reading r;
  r.ts_ms = 1687876200000LL;
  r.seq = 42;
  r.temp = 25.3f;
  r.humidity = 55.2f;
  r.brightness = 650.0f;
  r.power = 1150.5f;
  r.voltage = 229.8f;
  r.current = 5.01f;
  r.energy_wh = 123456.7;
  return r;
}

static std::string encode(const pf::Reading& r, const char* dev = "A4:CF:12:9B:00:01") {
  char buf[pf::kMaxPayloadLen];
  size_t n = pf::encode_measurement(r, dev, "1.0.0", buf, sizeof buf);
  return n ? std::string(buf, n) : std::string("<fail>");
}

TEST(json_example_payload) {
  CHECK_EQ(encode(sample()),
           std::string("{\"deviceCode\":\"A4:CF:12:9B:00:01\",\"timestamp\":\"2023-06-27T14:30:00.000Z\","
                       "\"temp\":25.3,\"humidity\":55.2,\"brightness\":650,\"electric\":1150.5,"
                       "\"energy_wh\":123456.7,\"voltage\":229.8,\"current\":5.01,\"seq\":42,\"fw\":\"1.0.0\"}"));
}

TEST(json_failed_sensor_omitted) {
  pf::Reading r = sample();
  r.temp = std::numeric_limits<float>::quiet_NaN();
  r.humidity = std::numeric_limits<float>::quiet_NaN();
  r.current = std::numeric_limits<float>::infinity();
  r.energy_wh = -std::numeric_limits<double>::infinity();
  const std::string s = encode(r);
  CHECK(s.find("temp") == std::string::npos);
  CHECK(s.find("humidity") == std::string::npos);
  CHECK(s.find("current") == std::string::npos);
  CHECK(s.find("energy_wh") == std::string::npos);
  CHECK(s.find("nan") == std::string::npos);
  CHECK(s.find("inf") == std::string::npos);
  CHECK(s.find("null") == std::string::npos);
  CHECK(s.find(",,") == std::string::npos);
  CHECK(s.find("{\"deviceCode\"") == 0);
  CHECK(s.find("\"timestamp\":\"2023-06-27T14:30:00.000Z\",\"brightness\":650,") != std::string::npos);
}

TEST(json_all_sensors_failed) {
  pf::Reading r;
  r.ts_ms = 0;
  r.seq = 0;
  const float nan = std::nanf("");
  r.temp = r.humidity = r.brightness = r.power = r.voltage = r.current = nan;
  r.energy_wh = std::nan("");
  CHECK_EQ(encode(r, "dev"),
           std::string("{\"deviceCode\":\"dev\",\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"seq\":0,\"fw\":\"1.0.0\"}"));
}

TEST(json_number_formatting) {
  CHECK_EQ(num(-0.0, 2), std::string("0"));
  CHECK_EQ(num(-0.0001, 2), std::string("0"));
  CHECK_EQ(num(0.0, 1), std::string("0"));
  CHECK_EQ(num(1e-300, 3), std::string("0"));
  CHECK_EQ(num(-12.5, 2), std::string("-12.5"));
  CHECK_EQ(num(100.0, 2), std::string("100"));
  CHECK_EQ(num(0.005, 3), std::string("0.005"));
  CHECK_EQ(num(4294967295.0, 1), std::string("4294967295"));
  CHECK_EQ(num(123456789012345.6, 1), std::string("123456789012345.6"));
  CHECK_EQ(num(1e20, 1), std::string("1e+20"));  // huge: exponent form, still valid JSON
  CHECK_EQ(num(-1.7976931348623157e308, 1), std::string("-1.7976931348623157e+308"));
  CHECK_EQ(num(std::nan(""), 1), std::string("<omit>"));
  CHECK_EQ(num(HUGE_VAL, 1), std::string("<omit>"));
  CHECK_EQ(num(static_cast<double>(25.3f), 2), std::string("25.3"));  // float noise hidden
  CHECK_EQ(num(static_cast<double>(5.01f), 3), std::string("5.01"));
}

TEST(json_negative_zero_and_extremes_in_payload) {
  pf::Reading r = sample();
  r.temp = -0.0f;
  r.current = 1e-9f;
  r.brightness = 3.0e38f;  // absurd but finite
  r.energy_wh = 4294967295.0;
  const std::string s = encode(r);
  CHECK(s.find("\"temp\":0,") != std::string::npos);
  CHECK(s.find("\"current\":0,") != std::string::npos);
  CHECK(s.find("\"brightness\":3.0000000054977558e+38,") != std::string::npos);
  CHECK(s.find("\"energy_wh\":4294967295,") != std::string::npos);
  CHECK(s.find(":-0") == std::string::npos);
}

TEST(json_string_escaping) {
  CHECK_EQ(esc("plain"), std::string("\"plain\""));
  CHECK_EQ(esc("a\"b"), std::string("\"a\\\"b\""));
  CHECK_EQ(esc("back\\slash"), std::string("\"back\\\\slash\""));
  CHECK_EQ(esc("\n\r\t\b\f"), std::string("\"\\n\\r\\t\\b\\f\""));
  CHECK_EQ(esc("\x01\x1f"), std::string("\"\\u0001\\u001f\""));
  CHECK_EQ(esc("caf\xc3\xa9"), std::string("\"caf\xc3\xa9\""));  // valid UTF-8 kept
  CHECK_EQ(esc("bad\xff"), std::string("\"bad\\ufffd\""));      // invalid byte replaced
  CHECK_EQ(esc("trunc\xe2\x82"), std::string("\"trunc\\ufffd\\ufffd\""));
  CHECK_EQ(esc(""), std::string("\"\""));
}

TEST(json_device_code_escaped_in_payload) {
  const std::string s = encode(sample(), "evil\"dev\\\n\x02");
  CHECK(s.find("{\"deviceCode\":\"evil\\\"dev\\\\\\n\\u0002\",\"timestamp\"") == 0);
}

TEST(json_buffer_too_small) {
  char buf[64];
  CHECK_EQ(pf::encode_measurement(sample(), "A4:CF:12:9B:00:01", "1.0.0", buf, sizeof buf), size_t(0));
  char tiny[3];
  CHECK_EQ(pf::json_escape_string("ab", tiny, sizeof tiny), size_t(0));
}

TEST(device_code_validation) {
  CHECK(pf::is_valid_device_code("A4:CF:12:9B:00:01"));
  CHECK(pf::is_valid_device_code("meter_1-kitchen"));
  CHECK(!pf::is_valid_device_code(""));
  CHECK(!pf::is_valid_device_code(nullptr));
  CHECK(!pf::is_valid_device_code("has space"));
  CHECK(!pf::is_valid_device_code("a/b"));
  CHECK(!pf::is_valid_device_code("a+#"));
  CHECK(!pf::is_valid_device_code("q\"uote"));
  CHECK(pf::is_valid_device_code(std::string(64, 'x').c_str()));
  CHECK(!pf::is_valid_device_code(std::string(65, 'x').c_str()));
}

TEST(topics_and_mac) {
  char t[pf::kMaxTopicLen];
  CHECK(pf::build_measurement_topic("A4:CF:12:9B:00:01", false, t, sizeof t) > 0);
  CHECK_EQ(std::string(t), std::string("power/A4:CF:12:9B:00:01/measurement"));
  CHECK(pf::build_measurement_topic("whatever", true, t, sizeof t) > 0);
  CHECK_EQ(std::string(t), std::string("power/measurement"));
  CHECK_EQ(pf::build_measurement_topic("bad/dev", false, t, sizeof t), size_t(0));
  CHECK(pf::build_status_topic("dev1", t, sizeof t) > 0);
  CHECK_EQ(std::string(t), std::string("power/dev1/status"));
  const uint8_t mac[6] = {0xA4, 0xCF, 0x12, 0x9B, 0x00, 0x01};
  char m[18];
  CHECK_EQ(pf::format_mac(mac, m, sizeof m), size_t(17));
  CHECK_EQ(std::string(m), std::string("A4:CF:12:9B:00:01"));
}

TEST(client_id_defaults_to_the_username) {
  char id[80];
  // Set explicitly: kept.
  CHECK_EQ(pf::build_client_id("my-id", "device-dev1", "dev1", id, sizeof id), size_t(5));
  CHECK_EQ(std::string(id), std::string("my-id"));
  // Empty: the username, which powerflow's broker makes the client id anyway.
  CHECK(pf::build_client_id("", "device-A4:CF:12:9B:00:01", "A4:CF:12:9B:00:01", id,
                            sizeof id) > 0);
  CHECK_EQ(std::string(id), std::string("device-A4:CF:12:9B:00:01"));
  // No account (an open lab broker): powerflow-<device>, colons removed.
  CHECK(pf::build_client_id("", "", "A4:CF:12:9B:00:01", id, sizeof id) > 0);
  CHECK_EQ(std::string(id), std::string("powerflow-A4CF129B0001"));
  CHECK(pf::build_client_id(nullptr, nullptr, "dev1", id, sizeof id) > 0);
  CHECK_EQ(std::string(id), std::string("powerflow-dev1"));
  // Too long for the buffer: refused, never cut (a cut id is another client).
  char small[8];
  CHECK_EQ(pf::build_client_id("", "device-dev1", "dev1", small, sizeof small), size_t(0));
  CHECK_EQ(std::string(small), std::string(""));
}

TEST(status_payload) {
  pf::StatusInfo s;
  s.ts_ms = 1687876200000LL;
  s.buffered = 3;
  s.dropped_overflow = 7;
  s.rssi = -67;
  s.energy_offset_wh = 1500;
  char buf[512];
  const size_t n = pf::encode_status(s, "dev1", "1.0.0", buf, sizeof buf);
  CHECK(n > 0);
  const std::string out(buf, n);
  CHECK(out.find("{\"deviceCode\":\"dev1\",\"timestamp\":\"2023-06-27T14:30:00.000Z\",\"state\":\"online\"") == 0);
  CHECK(out.find("\"buffered\":3,") != std::string::npos);
  CHECK(out.find("\"dropped_overflow\":7,") != std::string::npos);
  CHECK(out.find("\"energy_offset_wh\":1500,\"rssi\":-67}") != std::string::npos);
  s.ts_ms = -1;
  const size_t n2 = pf::encode_status(s, "dev1", "1.0.0", buf, sizeof buf);
  CHECK(n2 > 0 && std::string(buf).find("timestamp") == std::string::npos);
}
