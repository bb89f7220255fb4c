// Store-and-forward engine: ring buffer + in-flight window + publisher.
// Not thread-safe: call every method from one task (the board funnels MQTT
// events through a queue into loop()).
#pragma once
#include <cstddef>
#include <cstdint>

#include "pf_inflight.h"
#include "pf_payload.h"
#include "pf_ring.h"

namespace pf {

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Publishes with QoS 1. Returns the MQTT msg_id (> 0) or < 0 on failure.
  virtual int publish(const char* topic, const char* payload, size_t len) = 0;
};

struct ForwarderConfig {
  const char* device_code = "";
  const char* fw = "";
  bool legacy_topic = false;
  size_t window = 8;  // max unacknowledged publishes
};

class Forwarder {
 public:
  Forwarder(RingBuffer& ring, Publisher& pub, const ForwarderConfig& cfg);

  // Stores a new sample (never sent directly: everything goes via flash).
  PushResult enqueue(Reading& r, bool synced);

  void on_connected() { connected_ = true; }
  // In-flight records are un-marked and will be resent oldest first.
  void on_disconnected();
  // PUBACK for msg_id: the record leaves the buffer. Returns true if it was ours.
  bool on_published(int msg_id);

  // Publishes up to `max_new` records (oldest first) while the window has
  // room. Stops at the first record that is not yet time-stamped.
  size_t pump(size_t max_new);

  bool connected() const { return connected_; }
  size_t in_flight() const { return tracker_.count(); }
  uint32_t encode_errors() const { return encode_errors_; }
  uint32_t published() const { return published_; }
  uint32_t acked() const { return acked_; }

 private:
  RingBuffer& ring_;
  Publisher& pub_;
  ForwarderConfig cfg_;
  InflightTracker tracker_;
  bool connected_ = false;
  uint32_t encode_errors_ = 0;
  uint32_t published_ = 0;
  uint32_t acked_ = 0;
};

}  // namespace pf
