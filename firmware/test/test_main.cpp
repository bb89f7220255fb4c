#include "harness.h"

int main() { return th::run_all(); }
