#include <set>
#include <string>
#include <vector>

#include "harness.h"
#include "mem_storage.h"
#include "pf_forwarder.h"
#include "pf_time.h"

namespace {

struct Sent {
  int msg_id;
  std::string topic;
  std::string payload;
};

class FakePublisher : public pf::Publisher {
 public:
  int publish(const char* topic, const char* payload, size_t len) override {
    if (fail) return -1;
    const int id = next_id++;
    sent.push_back({id, topic, std::string(payload, len)});
    return id;
  }
  bool fail = false;
  int next_id = 1;
  std::vector<Sent> sent;
};

uint32_t seq_of(const std::string& payload) {
  const size_t p = payload.find("\"seq\":");
  return p == std::string::npos ? 0xFFFFFFFFu : static_cast<uint32_t>(std::stoul(payload.substr(p + 6)));
}

std::string ts_of(const std::string& payload) {
  const size_t p = payload.find("\"timestamp\":\"");
  return p == std::string::npos ? "" : payload.substr(p + 13, 24);
}

const int64_t kT0 = 1687876200000LL;

pf::Reading make(int64_t ts) {
  pf::Reading r;
  r.ts_ms = ts;
  r.temp = 21.5f;
  r.humidity = 40.0f;
  r.brightness = 300.0f;
  r.power = 100.0f;
  r.voltage = 230.0f;
  r.current = 0.435f;
  r.energy_wh = 5000.0;
  return r;
}

pf::ForwarderConfig cfg(size_t window = 4, bool legacy = false) {
  pf::ForwarderConfig c;
  c.device_code = "A4:CF:12:9B:00:01";
  c.fw = "1.0.0";
  c.window = window;
  c.legacy_topic = legacy;
  return c;
}

}  // namespace

TEST(fwd_nothing_sent_while_disconnected) {
  MemStorage st(pf::ring_storage_bytes(32));
  pf::RingBuffer ring(st, 32);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg());
  pf::Reading r = make(kT0);
  fwd.enqueue(r, true);
  CHECK_EQ(fwd.pump(10), size_t(0));
  CHECK(pub.sent.empty());
}

TEST(fwd_replay_oldest_first_with_original_timestamps) {
  MemStorage st(pf::ring_storage_bytes(32));
  pf::RingBuffer ring(st, 32);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4));
  for (int i = 0; i < 10; ++i) {  // outage: 10 readings buffered
    pf::Reading r = make(kT0 + i * 5000);
    fwd.enqueue(r, true);
  }
  fwd.on_connected();
  size_t acked = 0;
  for (int round = 0; round < 20 && ring.live_count() > 0; ++round) {
    fwd.pump(100);
    CHECK(fwd.in_flight() <= 4);
    // Broker acknowledges everything outstanding, in order.
    for (; acked < pub.sent.size(); ++acked) CHECK(fwd.on_published(pub.sent[acked].msg_id));
  }
  CHECK_EQ(pub.sent.size(), size_t(10));
  for (size_t i = 0; i < pub.sent.size(); ++i) {
    CHECK_EQ(seq_of(pub.sent[i].payload), static_cast<uint32_t>(i));
    char ts[pf::kIsoTimestampSize];
    pf::format_iso8601_ms(kT0 + static_cast<int64_t>(i) * 5000, ts, sizeof ts);
    CHECK_EQ(ts_of(pub.sent[i].payload), std::string(ts));
    CHECK_EQ(pub.sent[i].topic, std::string("power/A4:CF:12:9B:00:01/measurement"));
  }
  CHECK_EQ(ring.live_count(), 0u);
}

TEST(fwd_removal_only_on_acknowledgement) {
  MemStorage st(pf::ring_storage_bytes(32));
  pf::RingBuffer ring(st, 32);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4));
  for (int i = 0; i < 3; ++i) {
    pf::Reading r = make(kT0 + i);
    fwd.enqueue(r, true);
  }
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(3));
  CHECK_EQ(ring.live_count(), 3u);      // published but not acknowledged
  CHECK_EQ(fwd.pump(10), size_t(0));    // nothing re-sent while in flight
  CHECK(!fwd.on_published(12345));      // unknown msg_id ignored
  CHECK_EQ(ring.live_count(), 3u);
  CHECK(fwd.on_published(pub.sent[1].msg_id));
  CHECK_EQ(ring.live_count(), 2u);
  CHECK(!fwd.on_published(pub.sent[1].msg_id));  // duplicate PUBACK harmless
  CHECK_EQ(ring.live_count(), 2u);
}

TEST(fwd_disconnect_with_inflight_resends_without_loss_or_duplicates) {
  MemStorage st(pf::ring_storage_bytes(32));
  pf::RingBuffer ring(st, 32);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4));
  for (int i = 0; i < 6; ++i) {
    pf::Reading r = make(kT0 + i * 5000);
    fwd.enqueue(r, true);
  }
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(4));  // seq 0..3 in flight
  const int stale_id_seq0 = pub.sent[0].msg_id;
  CHECK(fwd.on_published(pub.sent[1].msg_id));  // only seq 1 acknowledged
  fwd.on_disconnected();
  CHECK_EQ(fwd.in_flight(), size_t(0));
  CHECK_EQ(ring.live_count(), 5u);  // 0,2,3,4,5: nothing lost
  // More readings arrive during the outage.
  pf::Reading r = make(kT0 + 6 * 5000);
  fwd.enqueue(r, true);
  CHECK_EQ(fwd.pump(10), size_t(0));  // disconnected
  // A late PUBACK from the old session must not remove anything.
  CHECK(!fwd.on_published(stale_id_seq0));
  CHECK_EQ(ring.live_count(), 6u);
  fwd.on_connected();
  pub.sent.clear();
  std::vector<uint32_t> order;
  for (int round = 0; round < 10 && ring.live_count() > 0; ++round) {
    const size_t before = pub.sent.size();
    fwd.pump(100);
    for (size_t i = before; i < pub.sent.size(); ++i) {
      order.push_back(seq_of(pub.sent[i].payload));
      CHECK(fwd.on_published(pub.sent[i].msg_id));
    }
  }
  CHECK_EQ(order.size(), size_t(6));
  const std::vector<uint32_t> expected{0, 2, 3, 4, 5, 6};
  CHECK(order == expected);  // resent oldest first, seq 1 not duplicated
  std::set<uint32_t> uniq(order.begin(), order.end());
  CHECK_EQ(uniq.size(), order.size());
  CHECK_EQ(ring.live_count(), 0u);
}

TEST(fwd_waits_for_clock_sync) {
  MemStorage st(pf::ring_storage_bytes(32));
  pf::RingBuffer ring(st, 32);
  CHECK(ring.begin(9));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4));
  pf::Reading a = make(2000);  // mono ms
  pf::Reading b = make(7000);
  fwd.enqueue(a, false);
  fwd.enqueue(b, false);
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(0));  // no reading sent before the clock is set
  CHECK_EQ(ring.stamp_unsynced(kT0, 9000), 2u);
  pf::Reading c = make(kT0 + 1000);
  fwd.enqueue(c, true);
  CHECK_EQ(fwd.pump(10), size_t(3));
  CHECK_EQ(ts_of(pub.sent[0].payload), std::string("2023-06-27T14:29:53.000Z"));
  CHECK_EQ(ts_of(pub.sent[1].payload), std::string("2023-06-27T14:29:58.000Z"));
  CHECK_EQ(ts_of(pub.sent[2].payload), std::string("2023-06-27T14:30:01.000Z"));
}

TEST(fwd_overflow_of_inflight_record) {
  MemStorage st(pf::ring_storage_bytes(4));
  pf::RingBuffer ring(st, 4);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(2));
  for (int i = 0; i < 4; ++i) {
    pf::Reading r = make(kT0 + i);
    fwd.enqueue(r, true);
  }
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(2));  // seq 0,1 in flight
  for (int i = 4; i < 6; ++i) {  // buffer full: seq 0,1 overwritten
    pf::Reading r = make(kT0 + i);
    CHECK(fwd.enqueue(r, true).dropped_oldest);
  }
  CHECK_EQ(ring.stats().dropped_overflow, 2u);
  CHECK_EQ(fwd.in_flight(), size_t(0));
  CHECK(!fwd.on_published(pub.sent[0].msg_id));  // late ack must not hit the new record
  CHECK_EQ(ring.live_count(), 4u);
  CHECK_EQ(fwd.pump(10), size_t(2));
  CHECK_EQ(seq_of(pub.sent[2].payload), 2u);
  CHECK_EQ(seq_of(pub.sent[3].payload), 3u);
}

TEST(fwd_publish_failure_retried_later) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4));
  pf::Reading r = make(kT0);
  fwd.enqueue(r, true);
  fwd.on_connected();
  pub.fail = true;
  CHECK_EQ(fwd.pump(10), size_t(0));
  CHECK_EQ(fwd.in_flight(), size_t(0));
  pub.fail = false;
  CHECK_EQ(fwd.pump(10), size_t(1));
  CHECK_EQ(seq_of(pub.sent[0].payload), 0u);
}

TEST(fwd_unencodable_record_dropped_not_blocking) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4));
  pf::Reading bad = make(400000000000000LL);  // year > 9999
  pf::Reading good = make(kT0);
  fwd.enqueue(bad, true);
  fwd.enqueue(good, true);
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(1));
  CHECK_EQ(fwd.encode_errors(), 1u);
  CHECK_EQ(seq_of(pub.sent[0].payload), 1u);
  CHECK_EQ(ring.live_count(), 1u);
}

TEST(fwd_replay_after_reboot) {
  MemStorage st(pf::ring_storage_bytes(16));
  std::vector<std::string> first_session;
  {
    pf::RingBuffer ring(st, 16);
    CHECK(ring.begin(1));
    FakePublisher pub;
    pf::Forwarder fwd(ring, pub, cfg(2));
    for (int i = 0; i < 5; ++i) {
      pf::Reading r = make(kT0 + i * 5000);
      fwd.enqueue(r, true);
    }
    fwd.on_connected();
    fwd.pump(10);
    CHECK(fwd.on_published(pub.sent[0].msg_id));
    CHECK(ring.checkpoint());
    for (const Sent& s : pub.sent) first_session.push_back(s.payload);
  }  // reboot while seq 1 was in flight
  pf::RingBuffer ring(st, 16);
  CHECK(ring.begin(2));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(8));
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(4));
  CHECK_EQ(seq_of(pub.sent[0].payload), 1u);
  CHECK_EQ(pub.sent[0].payload, first_session[1]);  // byte-identical resend
  CHECK_EQ(seq_of(pub.sent[3].payload), 4u);
}

TEST(fwd_legacy_topic) {
  MemStorage st(pf::ring_storage_bytes(8));
  pf::RingBuffer ring(st, 8);
  CHECK(ring.begin(1));
  FakePublisher pub;
  pf::Forwarder fwd(ring, pub, cfg(4, true));
  pf::Reading r = make(kT0);
  fwd.enqueue(r, true);
  fwd.on_connected();
  CHECK_EQ(fwd.pump(10), size_t(1));
  CHECK_EQ(pub.sent[0].topic, std::string("power/measurement"));
  CHECK(pub.sent[0].payload.find("\"deviceCode\":\"A4:CF:12:9B:00:01\"") != std::string::npos);
}
