// powerflow ESP32 sensor firmware - board layer.
//
// Everything portable (payload encoding, store-and-forward ring buffer,
// in-flight tracking, backoff, timestamps, energy counter, scheduling, PZEM
// framing) lives in lib/powerflow_core and is unit-tested on the host. This
// file only wires it to Arduino-ESP32: LittleFS, Wi-Fi, SNTP, esp-mqtt,
// sensors, NVS and the task watchdog.
#include <Arduino.h>
#include <ArduinoJson.h>
#include <BH1750.h>
#include <LittleFS.h>
#include <Preferences.h>
#include <WiFi.h>
#include <WiFiManager.h>
#include <Wire.h>
#include <esp_idf_version.h>
#include <esp_sntp.h>
#include <esp_system.h>  // esp_random(), esp_read_mac() on IDF 4.4
#if __has_include(<esp_mac.h>)
#include <esp_mac.h>
#endif
#if __has_include(<esp_random.h>)
#include <esp_random.h>
#endif
#include <esp_task_wdt.h>
#include <esp_timer.h>
#include <freertos/FreeRTOS.h>
#include <freertos/queue.h>
#include <mqtt_client.h>
#include <sys/time.h>

#include <cmath>
#include <cstring>

#include "powerflow_core.h"

#if defined(PF_SENSOR_SHT31) && defined(PF_SENSOR_DHT22)
#error "Choose exactly one of PF_SENSOR_SHT31 / PF_SENSOR_DHT22"
#elif defined(PF_SENSOR_SHT31)
#include <Adafruit_SHT31.h>
#elif defined(PF_SENSOR_DHT22)
#include <DHT.h>
#else
#error "Define PF_SENSOR_SHT31 or PF_SENSOR_DHT22 (see platformio.ini envs)"
#endif

// ---------------------------------------------------------------- build flags
#ifndef PF_RING_CAPACITY
#define PF_RING_CAPACITY 17280  // 24 h at 5 s
#endif
#ifndef PF_SAMPLE_PERIOD_MS
#define PF_SAMPLE_PERIOD_MS 5000
#endif
#ifndef PF_INFLIGHT_WINDOW
#define PF_INFLIGHT_WINDOW 8
#endif
#ifndef PF_WDT_TIMEOUT_S
#define PF_WDT_TIMEOUT_S 30
#endif
#ifndef PF_PZEM_RX
#define PF_PZEM_RX 16
#endif
#ifndef PF_PZEM_TX
#define PF_PZEM_TX 17
#endif
#ifndef PF_PZEM_ADDR
#define PF_PZEM_ADDR 0xF8
#endif
#ifndef PF_I2C_SDA
#define PF_I2C_SDA 21
#endif
#ifndef PF_I2C_SCL
#define PF_I2C_SCL 22
#endif
#ifndef PF_DHT_PIN
#define PF_DHT_PIN 4
#endif
#ifndef PF_SHT31_ADDR
#define PF_SHT31_ADDR 0x44
#endif
#ifndef PF_PORTAL_PIN
#define PF_PORTAL_PIN 0  // BOOT button: hold at power-up to open the portal
#endif
#ifndef PF_DEFAULT_MQTT_URI
#define PF_DEFAULT_MQTT_URI ""
#endif

static const char* kConfigPath = "/config.json";
static const uint32_t kSegmentBytes = 4096;  // 64 records per LittleFS file

// ---------------------------------------------------------------- config
struct Config {
  String wifi_ssid, wifi_password;
  String mqtt_uri = PF_DEFAULT_MQTT_URI;
  String mqtt_username, mqtt_password, mqtt_client_id;
  String mqtt_ca_file = "/ca.pem";
  bool legacy_topic = false;
  String device_code;
  uint32_t sample_period_ms = PF_SAMPLE_PERIOD_MS;
  uint32_t status_period_s = 60;
  String ntp_server = "pool.ntp.org";
  String ntp_server2 = "time.google.com";
};

static Config g_cfg;

static bool load_config(Config& c) {
  File f = LittleFS.open(kConfigPath, "r");
  if (!f) return false;
  JsonDocument doc;
  const DeserializationError err = deserializeJson(doc, f);
  f.close();
  if (err) {
    log_e("config: %s is not valid JSON (%s)", kConfigPath, err.c_str());
    return false;
  }
  c.wifi_ssid = doc["wifi_ssid"] | c.wifi_ssid.c_str();
  c.wifi_password = doc["wifi_password"] | c.wifi_password.c_str();
  c.mqtt_uri = doc["mqtt_uri"] | c.mqtt_uri.c_str();
  c.mqtt_username = doc["mqtt_username"] | c.mqtt_username.c_str();
  c.mqtt_password = doc["mqtt_password"] | c.mqtt_password.c_str();
  c.mqtt_client_id = doc["mqtt_client_id"] | c.mqtt_client_id.c_str();
  c.mqtt_ca_file = doc["mqtt_ca_file"] | c.mqtt_ca_file.c_str();
  c.legacy_topic = doc["legacy_topic"] | c.legacy_topic;
  c.device_code = doc["device_code"] | c.device_code.c_str();
  c.sample_period_ms = doc["sample_period_ms"] | c.sample_period_ms;
  c.status_period_s = doc["status_period_s"] | c.status_period_s;
  c.ntp_server = doc["ntp_server"] | c.ntp_server.c_str();
  c.ntp_server2 = doc["ntp_server2"] | c.ntp_server2.c_str();
  if (c.sample_period_ms < 1000) c.sample_period_ms = 1000;
  if (c.status_period_s < 10) c.status_period_s = 10;
  return true;
}

static bool save_config(const Config& c) {
  JsonDocument doc;
  doc["wifi_ssid"] = c.wifi_ssid;
  doc["wifi_password"] = c.wifi_password;
  doc["mqtt_uri"] = c.mqtt_uri;
  doc["mqtt_username"] = c.mqtt_username;
  doc["mqtt_password"] = c.mqtt_password;
  doc["mqtt_client_id"] = c.mqtt_client_id;
  doc["mqtt_ca_file"] = c.mqtt_ca_file;
  doc["legacy_topic"] = c.legacy_topic;
  doc["device_code"] = c.device_code;
  doc["sample_period_ms"] = c.sample_period_ms;
  doc["status_period_s"] = c.status_period_s;
  doc["ntp_server"] = c.ntp_server;
  doc["ntp_server2"] = c.ntp_server2;
  File f = LittleFS.open("/config.tmp", "w");
  if (!f) return false;
  const bool ok = serializeJsonPretty(doc, f) > 0;
  f.close();
  return ok && LittleFS.rename("/config.tmp", kConfigPath);
}

// Captive portal (WiFiManager): Wi-Fi + broker settings, saved to /config.json.
static void run_portal(Config& c, const char* device_code) {
  WiFiManager wm;
  WiFiManagerParameter p_uri("mqtt_uri", "MQTT URI (mqtt://host:1883 or mqtts://host:8883)", c.mqtt_uri.c_str(), 128);
  WiFiManagerParameter p_user("mqtt_username", "MQTT username", c.mqtt_username.c_str(), 64);
  WiFiManagerParameter p_pass("mqtt_password", "MQTT password", c.mqtt_password.c_str(), 64);
  WiFiManagerParameter p_dev("device_code", "Device code (empty = MAC)", c.device_code.c_str(), 64);
  WiFiManagerParameter p_legacy("legacy_topic", "Legacy topic power/measurement (0/1)", c.legacy_topic ? "1" : "0", 2);
  wm.addParameter(&p_uri);
  wm.addParameter(&p_user);
  wm.addParameter(&p_pass);
  wm.addParameter(&p_dev);
  wm.addParameter(&p_legacy);
  wm.setConfigPortalTimeout(300);
  String ap = String("powerflow-") + String(device_code).substring(9);
  ap.replace(":", "");
  if (wm.startConfigPortal(ap.c_str())) {
    c.wifi_ssid = wm.getWiFiSSID();
    c.wifi_password = wm.getWiFiPass();
  }
  c.mqtt_uri = p_uri.getValue();
  c.mqtt_username = p_user.getValue();
  c.mqtt_password = p_pass.getValue();
  c.device_code = p_dev.getValue();
  c.legacy_topic = String(p_legacy.getValue()) == "1";
  if (!save_config(c)) log_e("config: could not save %s", kConfigPath);
}

// ---------------------------------------------------------------- storage
// Ring storage on LittleFS. Header region [0,64) -> /pf/hdr.bin; record slots
// -> /pf/sNNN.bin, 64 records (4 KiB = one LittleFS block) per file, so a
// record update rewrites one small file instead of a 1 MB one.
class LittleFsSegmentStorage : public pf::Storage {
 public:
  explicit LittleFsSegmentStorage(uint32_t bytes) : size_(bytes) {}
  uint32_t size() const override { return size_; }

  bool read(uint32_t off, void* dst, size_t len) override {
    return io(off, static_cast<uint8_t*>(dst), len, false);
  }
  bool write(uint32_t off, const void* src, size_t len) override {
    return io(off, const_cast<uint8_t*>(static_cast<const uint8_t*>(src)), len, true);
  }

 private:
  static void path_for(uint32_t file, char* out, size_t cap) {
    if (file == UINT32_MAX) snprintf(out, cap, "/pf/hdr.bin");
    else snprintf(out, cap, "/pf/s%03u.bin", static_cast<unsigned>(file));
  }
  bool io(uint32_t off, uint8_t* buf, size_t len, bool is_write) {
    if (off + len > size_) return false;
    while (len > 0) {
      uint32_t file, foff, room;
      if (off < pf::kRingHeaderSize) {
        file = UINT32_MAX;
        foff = off;
        room = pf::kRingHeaderSize - off;
      } else {
        const uint32_t rel = off - pf::kRingHeaderSize;
        file = rel / kSegmentBytes;
        foff = rel % kSegmentBytes;
        room = kSegmentBytes - foff;
      }
      const size_t n = len < room ? len : room;
      char path[24];
      path_for(file, path, sizeof path);
      esp_task_wdt_reset();  // long mount scans must not trip the watchdog
      if (is_write) {
        File f = LittleFS.exists(path) ? LittleFS.open(path, "r+") : LittleFS.open(path, "w");
        if (!f) return false;
        const bool ok = f.seek(foff) && f.write(buf, n) == n;
        f.close();  // close = commit on LittleFS
        if (!ok) return false;
      } else {
        File f = LittleFS.open(path, "r");
        size_t got = 0;
        if (f) {
          if (f.seek(foff)) got = f.read(buf, n);
          f.close();
        }
        if (got < n) memset(buf + got, 0xFF, n - got);  // never written
      }
      off += n;
      buf += n;
      len -= n;
    }
    return true;
  }
  uint32_t size_;
};

// ---------------------------------------------------------------- globals
static char g_device[pf::kMaxDeviceCodeLen + 1];
static char g_client_id[80];
static char g_status_topic[pf::kMaxTopicLen];
static char g_lwt[160];
static String g_ca_pem;
static uint32_t g_boot_id;

static LittleFsSegmentStorage g_storage(pf::ring_storage_bytes(PF_RING_CAPACITY));
static pf::RingBuffer g_ring(g_storage, PF_RING_CAPACITY);

class EspRandom : public pf::RandomSource {
 public:
  uint32_t next_u32() override { return esp_random(); }
};
static EspRandom g_rng;
static pf::Backoff g_wifi_backoff(5000, 300000, g_rng);
static pf::Backoff g_mqtt_backoff(2000, 300000, g_rng);

static esp_mqtt_client_handle_t g_mqtt = nullptr;
class MqttPublisher : public pf::Publisher {
 public:
  int publish(const char* topic, const char* payload, size_t len) override {
    if (g_mqtt == nullptr) return -1;
    return esp_mqtt_client_publish(g_mqtt, topic, payload, static_cast<int>(len), 1, 0);
  }
};
static MqttPublisher g_publisher;
static pf::Forwarder* g_fwd = nullptr;

static pf::EnergyCounter g_energy;
static Preferences g_prefs;
static pf::FixedRateScheduler* g_sched = nullptr;

// MQTT events arrive on the esp-mqtt task; they are queued and handled in
// loop() so the core is only ever touched from one task.
enum class EvType : uint8_t { kConnected, kDisconnected, kPublished };
struct MqttEv {
  EvType type;
  int msg_id;
};
static QueueHandle_t g_events;
static volatile bool g_ntp_event = false;
static bool g_clock_synced = false;
static bool g_mqtt_started = false;
static bool g_mqtt_reconnect_pending = false;
static int64_t g_mqtt_reconnect_at = 0;
static int64_t g_wifi_next_attempt = 0;
static int64_t g_last_status = 0;
static int64_t g_last_checkpoint = 0;
static int64_t g_last_energy_save = 0;
static uint32_t g_saved_raw = 0;
static bool g_status_due = false;
static uint32_t g_seq_hw = 0;  // NVS high-water mark for seq
static const uint32_t kSeqHwStep = 1000;

static int64_t mono_ms() { return esp_timer_get_time() / 1000; }

static int64_t epoch_ms() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

// ---------------------------------------------------------------- sensors
#if defined(PF_SENSOR_SHT31)
static Adafruit_SHT31 g_sht;
static bool g_sht_ok = false;
#else
static DHT g_dht(PF_DHT_PIN, DHT22);
#endif
static BH1750 g_bh;
static bool g_bh_ok = false;

static void sensors_begin() {
  Wire.begin(PF_I2C_SDA, PF_I2C_SCL);
#if defined(PF_SENSOR_SHT31)
  g_sht_ok = g_sht.begin(PF_SHT31_ADDR);
#else
  g_dht.begin();
#endif
  g_bh_ok = g_bh.begin(BH1750::CONTINUOUS_HIGH_RES_MODE);
  Serial2.begin(9600, SERIAL_8N1, PF_PZEM_RX, PF_PZEM_TX);
  Serial2.setTimeout(200);
}

static bool pzem_read(pf::PzemValues* v) {
  uint8_t req[pf::kPzemRequestLen];
  uint8_t resp[pf::kPzemResponseLen];
  pf::pzem_build_read_request(PF_PZEM_ADDR, req);
  while (Serial2.available()) Serial2.read();
  Serial2.write(req, sizeof req);
  Serial2.flush();
  const size_t n = Serial2.readBytes(resp, sizeof resp);
  return pf::pzem_parse_response(resp, n, PF_PZEM_ADDR, v);
}

static pf::Reading take_sample() {
  const float nan = NAN;
  pf::Reading r;
#if defined(PF_SENSOR_SHT31)
  if (!g_sht_ok) g_sht_ok = g_sht.begin(PF_SHT31_ADDR);
  r.temp = g_sht_ok ? g_sht.readTemperature() : nan;   // NaN on failure
  r.humidity = g_sht_ok ? g_sht.readHumidity() : nan;
#else
  r.temp = g_dht.readTemperature();  // NaN on failure
  r.humidity = g_dht.readHumidity();
#endif
  if (!g_bh_ok) g_bh_ok = g_bh.begin(BH1750::CONTINUOUS_HIGH_RES_MODE);
  const float lux = g_bh_ok ? g_bh.readLightLevel() : -1.0f;
  r.brightness = lux >= 0 ? lux : nan;  // library returns < 0 on error
  pf::PzemValues pz;
  if (pzem_read(&pz)) {
    r.voltage = pz.voltage;
    r.current = pz.current;
    r.power = pz.power;
    r.energy_wh = g_energy.update(pz.energy_wh);
  } else {
    r.voltage = r.current = r.power = nan;
    r.energy_wh = NAN;
  }
  return r;
}

static void energy_restore() {
  g_prefs.begin("pf", false);
  const bool have = g_prefs.getBool("e_have", false);
  g_energy.restore(g_prefs.getDouble("e_off", 0.0), g_prefs.getUInt("e_raw", 0), have);
  g_saved_raw = g_energy.last_raw_wh();
}

static void energy_persist(bool force) {
  // Offset: immediately after a reset. Last raw value: every 10 min (flash wear).
  const bool dirty = g_energy.take_dirty();
  if (!g_energy.have_last()) return;
  if (dirty || force || (mono_ms() - g_last_energy_save > 600000 && g_energy.last_raw_wh() != g_saved_raw)) {
    g_prefs.putDouble("e_off", g_energy.offset_wh());
    g_prefs.putUInt("e_raw", g_energy.last_raw_wh());
    g_prefs.putBool("e_have", true);
    g_saved_raw = g_energy.last_raw_wh();
    g_last_energy_save = mono_ms();
  }
}

// ---------------------------------------------------------------- MQTT
static void mqtt_event_handler(void*, esp_event_base_t, int32_t event_id, void* event_data) {
  auto* e = static_cast<esp_mqtt_event_handle_t>(event_data);
  MqttEv ev{EvType::kPublished, 0};
  switch (static_cast<esp_mqtt_event_id_t>(event_id)) {
    case MQTT_EVENT_CONNECTED: ev.type = EvType::kConnected; break;
    case MQTT_EVENT_DISCONNECTED: ev.type = EvType::kDisconnected; break;
    case MQTT_EVENT_PUBLISHED:
      ev.type = EvType::kPublished;
      ev.msg_id = e->msg_id;
      break;
    default: return;
  }
  // If the queue is ever full a PUBACK is lost: the record is simply resent
  // later (at-least-once), never dropped.
  xQueueSend(g_events, &ev, 0);
}

static bool mqtt_setup() {
  const String& uri = g_cfg.mqtt_uri;
  if (uri.length() == 0) {
    log_e("mqtt: no mqtt_uri configured");
    return false;
  }
  const bool tls = uri.startsWith("mqtts://") || uri.startsWith("wss://");
#ifdef PF_REQUIRE_TLS
  if (!tls) {
    log_e("mqtt: PF_REQUIRE_TLS set but mqtt_uri is not mqtts://");
    return false;
  }
#endif
  if (tls) {
    File f = LittleFS.open(g_cfg.mqtt_ca_file, "r");
    if (!f) {
      log_e("mqtt: TLS requested but CA file %s missing", g_cfg.mqtt_ca_file.c_str());
      return false;
    }
    g_ca_pem = f.readString();
    f.close();
  }
  // Empty mqtt_client_id: the username (powerflow's broker makes them equal anyway).
  if (pf::build_client_id(g_cfg.mqtt_client_id.c_str(), g_cfg.mqtt_username.c_str(), g_device,
                          g_client_id, sizeof g_client_id) == 0) {
    log_e("mqtt: client id longer than %u characters", unsigned(sizeof g_client_id - 1));
    return false;
  }
  pf::build_status_topic(g_device, g_status_topic, sizeof g_status_topic);
  pf::JsonWriter w(g_lwt, sizeof g_lwt);
  w.begin_object();
  w.key_string("deviceCode", g_device);
  w.key_string("state", "offline");
  w.end_object();

  esp_mqtt_client_config_t mc = {};
#if ESP_IDF_VERSION_MAJOR >= 5
  mc.broker.address.uri = uri.c_str();
  if (tls) mc.broker.verification.certificate = g_ca_pem.c_str();
  mc.credentials.client_id = g_client_id;
  if (g_cfg.mqtt_username.length()) mc.credentials.username = g_cfg.mqtt_username.c_str();
  if (g_cfg.mqtt_password.length()) mc.credentials.authentication.password = g_cfg.mqtt_password.c_str();
  mc.session.keepalive = 30;
  mc.session.last_will.topic = g_status_topic;
  mc.session.last_will.msg = g_lwt;
  mc.session.last_will.qos = 1;
  mc.session.last_will.retain = 1;
  mc.network.disable_auto_reconnect = true;  // we reconnect with our own backoff
  mc.network.timeout_ms = 10000;
#else
  mc.uri = uri.c_str();
  if (tls) mc.cert_pem = g_ca_pem.c_str();
  mc.client_id = g_client_id;
  if (g_cfg.mqtt_username.length()) mc.username = g_cfg.mqtt_username.c_str();
  if (g_cfg.mqtt_password.length()) mc.password = g_cfg.mqtt_password.c_str();
  mc.keepalive = 30;
  mc.lwt_topic = g_status_topic;
  mc.lwt_msg = g_lwt;
  mc.lwt_qos = 1;
  mc.lwt_retain = 1;
  mc.disable_auto_reconnect = true;
  mc.network_timeout_ms = 10000;
#endif
  g_mqtt = esp_mqtt_client_init(&mc);
  if (g_mqtt == nullptr) return false;
  esp_mqtt_client_register_event(g_mqtt, static_cast<esp_mqtt_event_id_t>(ESP_EVENT_ANY_ID), mqtt_event_handler, nullptr);
  return true;
}

static void publish_status(const char* state) {
  if (g_mqtt == nullptr || g_fwd == nullptr || !g_fwd->connected()) return;
  pf::StatusInfo s;
  s.state = state;
  s.ts_ms = g_clock_synced ? epoch_ms() : -1;
  s.uptime_s = static_cast<uint64_t>(mono_ms() / 1000);
  s.buffered = g_ring.live_count();
  s.in_flight = static_cast<uint32_t>(g_fwd->in_flight());
  s.dropped_overflow = g_ring.stats().dropped_overflow;
  s.dropped_unsynced = g_ring.stats().dropped_unsynced;
  s.corrupt_records = g_ring.stats().corrupt_records;
  s.storage_errors = g_ring.stats().storage_errors;
  s.skipped_samples = g_sched ? g_sched->skipped() : 0;
  s.pzem_resets = g_energy.resets();
  s.energy_offset_wh = g_energy.offset_wh();
  s.rssi = WiFi.RSSI();
  char buf[512];
  const size_t n = pf::encode_status(s, g_device, PF_FW_VERSION, buf, sizeof buf);
  if (n > 0) esp_mqtt_client_publish(g_mqtt, g_status_topic, buf, static_cast<int>(n), 1, 1);
}

static void handle_mqtt_events() {
  MqttEv ev;
  while (xQueueReceive(g_events, &ev, 0) == pdTRUE) {
    switch (ev.type) {
      case EvType::kConnected:
        log_i("mqtt: connected");
        g_mqtt_backoff.reset();
        g_mqtt_reconnect_pending = false;
        g_fwd->on_connected();
        g_status_due = true;
        break;
      case EvType::kDisconnected: {
        g_fwd->on_disconnected();  // in-flight records become unsent again
        const uint32_t delay_ms = g_mqtt_backoff.next_delay_ms();
        g_mqtt_reconnect_pending = true;
        g_mqtt_reconnect_at = mono_ms() + delay_ms;
        log_w("mqtt: disconnected, retry in %u ms", static_cast<unsigned>(delay_ms));
        break;
      }
      case EvType::kPublished:
        g_fwd->on_published(ev.msg_id);
        break;
    }
  }
}

// ---------------------------------------------------------------- network
static void wifi_service(int64_t now) {
  if (WiFi.status() == WL_CONNECTED) {
    g_wifi_backoff.reset();
    if (!g_mqtt_started && g_mqtt != nullptr) {
      g_mqtt_started = esp_mqtt_client_start(g_mqtt) == ESP_OK;
    } else if (g_mqtt_started && g_mqtt_reconnect_pending && now >= g_mqtt_reconnect_at) {
      if (esp_mqtt_client_reconnect(g_mqtt) == ESP_OK) {
        g_mqtt_reconnect_pending = false;
      } else {  // client not in its waiting state yet: try again later
        g_mqtt_reconnect_at = now + g_mqtt_backoff.next_delay_ms();
      }
    }
    return;
  }
  if (g_cfg.wifi_ssid.length() == 0 || now < g_wifi_next_attempt) return;
  const uint32_t delay_ms = g_wifi_backoff.next_delay_ms();
  g_wifi_next_attempt = now + delay_ms;
  log_w("wifi: connecting to %s (next retry in %u ms)", g_cfg.wifi_ssid.c_str(), static_cast<unsigned>(delay_ms));
  WiFi.disconnect();
  WiFi.begin(g_cfg.wifi_ssid.c_str(), g_cfg.wifi_password.c_str());
}

static void ntp_sync_cb(struct timeval*) { g_ntp_event = true; }

static void clock_service() {
  if (g_clock_synced || !g_ntp_event) return;
  // Take both clocks at the same instant; the RTC may have carried a stale
  // time over a soft reboot, so only an SNTP answer counts as "synced".
  const int64_t e = epoch_ms();
  const int64_t m = mono_ms();
  if (e < pf::kMinValidEpochMs) return;
  g_clock_synced = true;
  const uint32_t n = g_ring.stamp_unsynced(e, m);
  log_i("ntp: synchronised, %u buffered readings time-stamped", static_cast<unsigned>(n));
}

// ---------------------------------------------------------------- setup/loop
void setup() {
  Serial.begin(115200);
  g_boot_id = esp_random() | 1u;
  g_events = xQueueCreate(64, sizeof(MqttEv));
  pinMode(PF_PORTAL_PIN, INPUT_PULLUP);

  if (!LittleFS.begin(true)) log_e("littlefs: mount failed");
  LittleFS.mkdir("/pf");
  const bool have_cfg = load_config(g_cfg);

  uint8_t mac[6];
  esp_read_mac(mac, ESP_MAC_WIFI_STA);
  char mac_code[18];
  pf::format_mac(mac, mac_code, sizeof mac_code);

  bool want_portal = !have_cfg || g_cfg.wifi_ssid.length() == 0;
  if (!want_portal && digitalRead(PF_PORTAL_PIN) == LOW) {
    delay(3000);
    want_portal = digitalRead(PF_PORTAL_PIN) == LOW;
  }
  WiFi.mode(WIFI_STA);
  if (want_portal) run_portal(g_cfg, mac_code);
  WiFi.persistent(false);
  WiFi.setAutoReconnect(false);  // reconnects are ours, with backoff + jitter

  if (g_cfg.device_code.length() > 0 && pf::is_valid_device_code(g_cfg.device_code.c_str())) {
    snprintf(g_device, sizeof g_device, "%s", g_cfg.device_code.c_str());
  } else {
    if (g_cfg.device_code.length() > 0) log_e("config: invalid device_code, using MAC");
    snprintf(g_device, sizeof g_device, "%s", mac_code);
  }

  // Watchdog covers the (possibly long) ring scan as well; storage I/O feeds it.
#if ESP_IDF_VERSION_MAJOR >= 5
  esp_task_wdt_config_t wdt = {};
  wdt.timeout_ms = PF_WDT_TIMEOUT_S * 1000;
  wdt.idle_core_mask = 0;
  wdt.trigger_panic = true;
  if (esp_task_wdt_reconfigure(&wdt) != ESP_OK) esp_task_wdt_init(&wdt);
#else
  esp_task_wdt_init(PF_WDT_TIMEOUT_S, true);
#endif
  esp_task_wdt_add(nullptr);

  if (!g_ring.begin(g_boot_id)) log_e("ring: cannot mount store-and-forward buffer");
  energy_restore();  // opens the "pf" NVS namespace
  g_seq_hw = g_prefs.getUInt("seq_hw", 0);
  // Invariant: true next seq >= g_seq_hw - kSeqHwStep. If the ring reports
  // less, its contents were lost (erase/reformat): jump to the mark so no seq
  // is ever reused. A normal reboot keeps the ring's exact value (no gap).
  if (g_seq_hw >= kSeqHwStep && g_ring.next_seq() < g_seq_hw - kSeqHwStep) g_ring.ensure_next_seq(g_seq_hw);
  log_i("ring: %u buffered, %u dropped (unsynced), %u corrupt skipped, next seq %u",
        static_cast<unsigned>(g_ring.live_count()), static_cast<unsigned>(g_ring.stats().dropped_unsynced),
        static_cast<unsigned>(g_ring.stats().corrupt_records), static_cast<unsigned>(g_ring.next_seq()));

  pf::ForwarderConfig fc;
  fc.device_code = g_device;
  fc.fw = PF_FW_VERSION;
  fc.legacy_topic = g_cfg.legacy_topic;
  fc.window = PF_INFLIGHT_WINDOW;
  g_fwd = new pf::Forwarder(g_ring, g_publisher, fc);
  g_sched = new pf::FixedRateScheduler(g_cfg.sample_period_ms);

  sensors_begin();
  mqtt_setup();

  sntp_set_time_sync_notification_cb(ntp_sync_cb);
  configTime(0, 0, g_cfg.ntp_server.c_str(), g_cfg.ntp_server2.c_str());

  const int64_t now = mono_ms();
  g_sched->start(now);
  g_last_status = now;
  g_last_checkpoint = now;
  g_last_energy_save = now;
}

void loop() {
  esp_task_wdt_reset();
  const int64_t now = mono_ms();
  wifi_service(now);
  clock_service();
  handle_mqtt_events();

  if (g_sched->poll(now)) {
    pf::Reading r = take_sample();
    const bool synced = g_clock_synced;
    r.ts_ms = synced ? epoch_ms() : mono_ms();  // mono stamp until NTP answers
    const pf::PushResult res = g_fwd->enqueue(r, synced);
    if (!res.ok) log_e("ring: could not store reading");
    if (g_ring.next_seq() >= g_seq_hw) {  // one NVS write per kSeqHwStep samples
      g_seq_hw = g_ring.next_seq() + kSeqHwStep;
      g_prefs.putUInt("seq_hw", g_seq_hw);
    }
    energy_persist(false);
  }

  g_fwd->pump(4);

  if (g_status_due || now - g_last_status >= static_cast<int64_t>(g_cfg.status_period_s) * 1000) {
    if (g_fwd->connected()) {
      publish_status("online");
      g_status_due = false;
    }
    g_last_status = now;
  }
  if (now - g_last_checkpoint >= 30000) {  // persist acks (bounded duplicate window)
    g_ring.checkpoint();
    g_last_checkpoint = now;
  }
  delay(10);
}
