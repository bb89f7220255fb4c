#include "pf_json.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace pf {

size_t format_number(double v, int decimals, char* out, size_t cap) {
  if (out == nullptr || cap == 0 || !std::isfinite(v)) return 0;
  if (decimals < 0) decimals = 0;
  if (decimals > 9) decimals = 9;
  char tmp[40];
  int n;
  if (std::fabs(v) >= 1e15) {
    n = std::snprintf(tmp, sizeof tmp, "%.17g", v);
  } else {
    n = std::snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
    if (n > 0 && std::strchr(tmp, '.') != nullptr) {
      while (n > 0 && tmp[n - 1] == '0') tmp[--n] = '\0';
      if (n > 0 && tmp[n - 1] == '.') tmp[--n] = '\0';
    }
    if (std::strcmp(tmp, "-0") == 0) {
      tmp[0] = '0';
      tmp[1] = '\0';
      n = 1;
    }
  }
  if (n <= 0 || static_cast<size_t>(n) >= cap) return 0;
  std::memcpy(out, tmp, static_cast<size_t>(n) + 1);
  return static_cast<size_t>(n);
}

// Length of a valid UTF-8 sequence starting at s (1..4) or 0 if invalid.
static size_t utf8_seq_len(const unsigned char* s) {
  const unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; ++i) {
    if ((s[i] & 0xC0) != 0x80) return 0;  // also stops at NUL
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return n;
}

size_t json_escape_string(const char* s, char* out, size_t cap) {
  if (s == nullptr) s = "";
  size_t len = 0;
  auto put = [&](const char* p, size_t n) {
    if (len + n >= cap) return false;  // keep room for NUL
    std::memcpy(out + len, p, n);
    len += n;
    return true;
  };
  if (out == nullptr || !put("\"", 1)) return 0;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s);
  while (*p) {
    const unsigned char c = *p;
    bool fits = true;
    if (c == '"') {
      fits = put("\\\"", 2);
      ++p;
    } else if (c == '\\') {
      fits = put("\\\\", 2);
      ++p;
    } else if (c < 0x20) {
      char esc[8];
      switch (c) {
        case '\b': fits = put("\\b", 2); break;
        case '\f': fits = put("\\f", 2); break;
        case '\n': fits = put("\\n", 2); break;
        case '\r': fits = put("\\r", 2); break;
        case '\t': fits = put("\\t", 2); break;
        default:
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          fits = put(esc, 6);
      }
      ++p;
    } else {
      const size_t n = utf8_seq_len(p);
      if (n == 0) {
        fits = put("\\ufffd", 6);
        ++p;
      } else {
        fits = put(reinterpret_cast<const char*>(p), n);
        p += n;
      }
    }
    if (!fits) return 0;
  }
  if (!put("\"", 1)) return 0;
  out[len] = '\0';
  return len;
}

JsonWriter::JsonWriter(char* buf, size_t cap) : buf_(buf), cap_(cap) {
  if (buf_ == nullptr || cap_ == 0) {
    ok_ = false;
  } else {
    buf_[0] = '\0';
  }
}

void JsonWriter::raw(const char* s, size_t n) {
  if (!ok_) return;
  if (len_ + n >= cap_) {
    ok_ = false;
    return;
  }
  std::memcpy(buf_ + len_, s, n);
  len_ += n;
  buf_[len_] = '\0';
}

void JsonWriter::raw(const char* s) { raw(s, std::strlen(s)); }

void JsonWriter::begin_object() {
  raw("{", 1);
  first_ = true;
}

void JsonWriter::end_object() { raw("}", 1); }

void JsonWriter::key(const char* k) {
  if (!first_) raw(",", 1);
  first_ = false;
  if (!ok_) return;
  const size_t n = json_escape_string(k, buf_ + len_, cap_ - len_);
  if (n == 0) {
    ok_ = false;
    return;
  }
  len_ += n;
  raw(":", 1);
}

void JsonWriter::key_string(const char* k, const char* value) {
  key(k);
  if (!ok_) return;
  const size_t n = json_escape_string(value, buf_ + len_, cap_ - len_);
  if (n == 0) {
    ok_ = false;
    return;
  }
  len_ += n;
}

void JsonWriter::key_number(const char* k, double value, int decimals) {
  if (!std::isfinite(value)) return;  // failed sensor: member omitted
  char num[40];
  const size_t n = format_number(value, decimals, num, sizeof num);
  if (n == 0) {
    ok_ = false;
    return;
  }
  key(k);
  raw(num, n);
}

void JsonWriter::key_uint(const char* k, uint64_t value) {
  char num[24];
  std::snprintf(num, sizeof num, "%" PRIu64, value);
  key(k);
  raw(num);
}

void JsonWriter::key_int(const char* k, int64_t value) {
  char num[24];
  std::snprintf(num, sizeof num, "%" PRId64, value);
  key(k);
  raw(num);
}

void JsonWriter::key_bool(const char* k, bool value) {
  key(k);
  raw(value ? "true" : "false");
}

}  // namespace pf
