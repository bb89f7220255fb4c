// Time helpers: civil calendar conversion and ISO 8601 formatting without
// relying on gmtime()/timegm() (works for any year 0000..9999, including
// dates after 2038 on platforms with a 32-bit time_t).
#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {

struct CivilDate {
  int32_t year;
  uint32_t month;  // 1..12
  uint32_t day;    // 1..31
};

// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int32_t y, uint32_t m, uint32_t d);
// Inverse of days_from_civil.
CivilDate civil_from_days(int64_t z);

// Length of "YYYY-MM-DDTHH:MM:SS.mmmZ" plus terminating NUL.
constexpr size_t kIsoTimestampSize = 25;

// Formats epoch milliseconds (UTC) as "YYYY-MM-DDTHH:MM:SS.mmmZ".
// Returns the number of characters written (24) or 0 if the buffer is too
// small or the year is outside 0000..9999.
size_t format_iso8601_ms(int64_t epoch_ms, char* out, size_t cap);

// Converts a monotonic sample stamp into wall-clock time once the clock has
// been synchronised: ts = sync_epoch_ms - (sync_mono_ms - sample_mono_ms).
// Returns false if the sample is "from the future" relative to the sync point
// (cannot happen for samples of the same boot; treated as unstampable).
bool stamp_from_mono(int64_t sample_mono_ms, int64_t sync_epoch_ms,
                     int64_t sync_mono_ms, int64_t* out_epoch_ms);

// Lowest epoch (ms) accepted as a "synchronised" clock: 2023-01-01T00:00:00Z.
constexpr int64_t kMinValidEpochMs = 1672531200000LL;

}  // namespace pf
