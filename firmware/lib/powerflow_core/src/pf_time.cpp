#include "pf_time.h"

namespace pf {

int64_t days_from_civil(int32_t y, uint32_t m, uint32_t d) {
  const int64_t yy = static_cast<int64_t>(y) - (m <= 2 ? 1 : 0);
  const int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
  const int64_t yoe = yy - era * 400;                                  // [0, 399]
  const int64_t mp = (static_cast<int64_t>(m) + 9) % 12;               // March = 0
  const int64_t doy = (153 * mp + 2) / 5 + static_cast<int64_t>(d) - 1;  // [0, 365]
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           // [0, 146096]
  return era * 146097 + doe - 719468;
}

CivilDate civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;                                      // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const int64_t y = yoe + era * 400;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);  // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                       // [0, 11]
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;               // [1, 31]
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;                  // [1, 12]
  CivilDate out;
  out.year = static_cast<int32_t>(y + (m <= 2 ? 1 : 0));
  out.month = static_cast<uint32_t>(m);
  out.day = static_cast<uint32_t>(d);
  return out;
}

static void put_digits(char* p, int64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + (v % 10));
    v /= 10;
  }
}

size_t format_iso8601_ms(int64_t epoch_ms, char* out, size_t cap) {
  if (out == nullptr || cap < kIsoTimestampSize) return 0;
  // Floor division so that negative epochs (before 1970) format correctly.
  int64_t days = epoch_ms / 86400000LL;
  int64_t rem = epoch_ms % 86400000LL;
  if (rem < 0) {
    rem += 86400000LL;
    days -= 1;
  }
  const CivilDate c = civil_from_days(days);
  if (c.year < 0 || c.year > 9999) return 0;
  const int64_t ms = rem % 1000;
  const int64_t secs = rem / 1000;
  char* p = out;
  put_digits(p, c.year, 4);
  p[4] = '-';
  put_digits(p + 5, c.month, 2);
  p[7] = '-';
  put_digits(p + 8, c.day, 2);
  p[10] = 'T';
  put_digits(p + 11, secs / 3600, 2);
  p[13] = ':';
  put_digits(p + 14, (secs / 60) % 60, 2);
  p[16] = ':';
  put_digits(p + 17, secs % 60, 2);
  p[19] = '.';
  put_digits(p + 20, ms, 3);
  p[23] = 'Z';
  p[24] = '\0';
  return 24;
}

bool stamp_from_mono(int64_t sample_mono_ms, int64_t sync_epoch_ms,
                     int64_t sync_mono_ms, int64_t* out_epoch_ms) {
  if (sample_mono_ms > sync_mono_ms) return false;
  const int64_t ts = sync_epoch_ms - (sync_mono_ms - sample_mono_ms);
  if (out_epoch_ms) *out_epoch_ms = ts;
  return true;
}

}  // namespace pf
