#include <string>

#include "harness.h"
#include "pf_time.h"

static std::string iso(int64_t ms) {
  char buf[pf::kIsoTimestampSize];
  return pf::format_iso8601_ms(ms, buf, sizeof buf) ? std::string(buf) : std::string("<fail>");
}

TEST(time_epoch_and_example) {
  CHECK_EQ(iso(0), std::string("1970-01-01T00:00:00.000Z"));
  CHECK_EQ(iso(1687876200000LL), std::string("2023-06-27T14:30:00.000Z"));
  CHECK_EQ(iso(1687876200042LL), std::string("2023-06-27T14:30:00.042Z"));
}

TEST(time_leap_years) {
  CHECK_EQ(iso(1709251199999LL), std::string("2024-02-29T23:59:59.999Z"));
  CHECK_EQ(iso(1709251200000LL), std::string("2024-03-01T00:00:00.000Z"));
  CHECK_EQ(iso(951825600000LL), std::string("2000-02-29T12:00:00.000Z"));  // div by 400: leap
  // 2100 is not a leap year: the day before 2100-03-01 is 2100-02-28.
  CHECK_EQ(iso(4107542400000LL), std::string("2100-03-01T00:00:00.000Z"));
  CHECK_EQ(iso(4107542400000LL - 86400000LL), std::string("2100-02-28T00:00:00.000Z"));
  CHECK_EQ(iso(-2203891200000LL - 86400000LL), std::string("1900-02-28T00:00:00.000Z"));
}

TEST(time_2038_and_beyond) {
  CHECK_EQ(iso(2147483647000LL), std::string("2038-01-19T03:14:07.000Z"));
  CHECK_EQ(iso(2147483648000LL), std::string("2038-01-19T03:14:08.000Z"));
  CHECK_EQ(iso(4294967296000LL), std::string("2106-02-07T06:28:16.000Z"));
  CHECK_EQ(iso(253402300799999LL), std::string("9999-12-31T23:59:59.999Z"));
  CHECK_EQ(iso(253402300800000LL), std::string("<fail>"));  // year 10000
}

TEST(time_negative_and_buffer) {
  CHECK_EQ(iso(-1), std::string("1969-12-31T23:59:59.999Z"));
  char small[24];
  CHECK_EQ(pf::format_iso8601_ms(0, small, sizeof small), size_t(0));
}

TEST(time_civil_round_trip) {
  // Every day from 1600 to 2500 round-trips and dates advance by one day.
  int64_t start = pf::days_from_civil(1600, 1, 1);
  int64_t end = pf::days_from_civil(2500, 12, 31);
  pf::CivilDate prev = pf::civil_from_days(start - 1);
  bool ok = true;
  for (int64_t d = start; d <= end && ok; ++d) {
    const pf::CivilDate c = pf::civil_from_days(d);
    ok = pf::days_from_civil(c.year, c.month, c.day) == d;
    const bool next_day = (c.year == prev.year && c.month == prev.month && c.day == prev.day + 1) ||
                          (c.day == 1 && ((c.month == prev.month + 1 && c.year == prev.year) ||
                                          (c.month == 1 && prev.month == 12 && c.year == prev.year + 1)));
    ok = ok && next_day;
    prev = c;
  }
  CHECK(ok);
  CHECK_EQ(pf::days_from_civil(1970, 1, 1), int64_t(0));
}

TEST(time_stamp_from_mono) {
  int64_t ts = 0;
  // Sample taken 12.5 s before sync.
  CHECK(pf::stamp_from_mono(1000, 1687876200000LL, 13500, &ts));
  CHECK_EQ(ts, int64_t(1687876187500LL));
  CHECK(!pf::stamp_from_mono(20000, 1687876200000LL, 13500, &ts));  // after sync point
}
