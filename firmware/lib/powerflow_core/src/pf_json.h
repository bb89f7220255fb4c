// Minimal, allocation-free JSON object writer into a caller-provided buffer.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pf {

// Formats a finite double compactly: fixed notation with at most `decimals`
// fractional digits, trailing zeros and a trailing '.' removed, "-0" printed
// as "0". Magnitudes >= 1e15 use "%.17g" (may contain an exponent, which is
// valid JSON). Returns characters written (NUL-terminated) or 0 if `v` is
// NaN/inf or the buffer is too small.
size_t format_number(double v, int decimals, char* out, size_t cap);

// Appends `s` as a JSON string literal (with quotes). Escapes '"', '\\' and
// all control characters < 0x20; invalid UTF-8 bytes become \ufffd.
// Returns characters written or 0 if it does not fit.
size_t json_escape_string(const char* s, char* out, size_t cap);

class JsonWriter {
 public:
  JsonWriter(char* buf, size_t cap);
  void begin_object();
  void end_object();
  void key_string(const char* key, const char* value);
  // Omits the member entirely when `value` is not finite.
  void key_number(const char* key, double value, int decimals);
  void key_uint(const char* key, uint64_t value);
  void key_int(const char* key, int64_t value);
  void key_bool(const char* key, bool value);
  bool ok() const { return ok_; }
  // Length of the document (excluding NUL), 0 if anything overflowed.
  size_t length() const { return ok_ ? len_ : 0; }
  const char* c_str() const { return buf_; }

 private:
  void raw(const char* s, size_t n);
  void raw(const char* s);
  void key(const char* k);
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  bool ok_ = true;
  bool first_ = true;
};

}  // namespace pf
