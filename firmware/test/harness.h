// Tiny self-contained test harness: TEST(name) { CHECK(...); CHECK_EQ(a, b); }
#pragma once
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace th {

struct TestCase {
  const char* name;
  void (*fn)();
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
inline int& current_failures() {
  static int f = 0;
  return f;
}
struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

template <typename T>
std::string show(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
inline std::string show(const char* v) { return v ? std::string("\"") + v + "\"" : "(null)"; }
inline std::string show(const std::string& v) { return "\"" + v + "\""; }
inline std::string show(unsigned char v) { return std::to_string(static_cast<unsigned>(v)); }

inline void fail(const char* file, int line, const std::string& msg) {
  std::printf("    %s:%d: %s\n", file, line, msg.c_str());
  current_failures()++;
}

template <typename A, typename B>
bool eq(const A& a, const B& b) { return a == b; }
inline bool eq(const char* a, const char* b) { return a && b ? std::strcmp(a, b) == 0 : a == b; }

inline int run_all() {
  int passed = 0, failed = 0;
  for (const TestCase& t : registry()) {
    current_failures() = 0;
    t.fn();
    if (current_failures() == 0) {
      passed++;
    } else {
      failed++;
      std::printf("FAIL %s\n", t.name);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace th

#define TH_CAT2(a, b) a##b
#define TH_CAT(a, b) TH_CAT2(a, b)
#define TEST(name)                                                   \
  static void name();                                                \
  static th::Registrar TH_CAT(th_reg_, name)(#name, &name);          \
  static void name()

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) th::fail(__FILE__, __LINE__, "CHECK(" #cond ")");   \
  } while (0)

#define CHECK_EQ(a, b)                                                              \
  do {                                                                              \
    const auto& th_a = (a);                                                         \
    const auto& th_b = (b);                                                         \
    if (!th::eq(th_a, th_b))                                                        \
      th::fail(__FILE__, __LINE__,                                                  \
               "CHECK_EQ(" #a ", " #b "): " + th::show(th_a) + " != " + th::show(th_b)); \
  } while (0)
