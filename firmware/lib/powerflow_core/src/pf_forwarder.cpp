#include "pf_forwarder.h"

namespace pf {

Forwarder::Forwarder(RingBuffer& ring, Publisher& pub, const ForwarderConfig& cfg)
    : ring_(ring), pub_(pub), cfg_(cfg), tracker_(cfg.window) {}

PushResult Forwarder::enqueue(Reading& r, bool synced) {
  PushResult res = ring_.push(r, synced);
  // The overwritten record may have been in flight; its late PUBACK must not
  // be mistaken for the new record in the same slot.
  if (res.dropped_oldest) tracker_.remove_slot(res.dropped_slot);
  return res;
}

void Forwarder::on_disconnected() {
  connected_ = false;
  tracker_.clear();
}

bool Forwarder::on_published(int msg_id) {
  InflightEntry e;
  if (!tracker_.take(msg_id, &e)) return false;
  if (ring_.ack(e.slot, e.seq)) acked_++;
  return true;
}

size_t Forwarder::pump(size_t max_new) {
  if (!connected_) return 0;
  char topic[kMaxTopicLen];
  if (build_measurement_topic(cfg_.device_code, cfg_.legacy_topic, topic, sizeof topic) == 0) return 0;
  size_t sent = 0;
  for (uint32_t k = 0; k < ring_.span() && sent < max_new && !tracker_.full(); ++k) {
    const uint32_t slot = ring_.slot_at(k);
    if (!ring_.is_live(slot)) continue;
    if (ring_.is_unsynced(slot)) break;  // keep order; wait for the clock
    if (tracker_.contains_slot(slot)) continue;
    Record rec;
    char payload[kMaxPayloadLen];
    size_t len = 0;
    if (ring_.read(slot, &rec)) {
      len = encode_measurement(rec.reading, cfg_.device_code, cfg_.fw, payload, sizeof payload);
    }
    if (len == 0) {
      // Unreadable or unencodable (e.g. absurd timestamp): drop it rather
      // than block the queue forever.
      encode_errors_++;
      if (!ring_.discard(slot, rec.reading.seq)) break;
      k = static_cast<uint32_t>(-1);  // span may have shrunk from the front: rescan
      continue;
    }
    const int msg_id = pub_.publish(topic, payload, len);
    if (msg_id <= 0) break;  // client not ready / outbox full: retry later
    tracker_.add(msg_id, slot, rec.reading.seq);
    published_++;
    sent++;
  }
  return sent;
}

}  // namespace pf
