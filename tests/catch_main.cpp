// Catch2 v2 test runner entry point. All test cases live in the other
// tests/*.cpp files and are linked into the single cachet_tests executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
