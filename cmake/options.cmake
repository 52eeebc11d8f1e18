# Build options shared by every target. See README.md "Building".
option(KL_WERROR   "Treat compiler warnings as errors (CI sets this)" OFF)
option(KL_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(KL_FUZZ     "Build the libFuzzer drivers (needs clang)" OFF)
option(KL_COVERAGE "Build with gcov coverage instrumentation" OFF)

add_compile_definitions(_POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
add_compile_options(-Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wstrict-prototypes
                    -Wmissing-prototypes -Wvla -Wno-unused-parameter -fno-common)
if(KL_WERROR)
  add_compile_options(-Werror)
endif()

if(CMAKE_BUILD_TYPE MATCHES "Release|RelWithDebInfo" AND NOT KL_SANITIZE AND NOT KL_FUZZ)
  # Hardening for the binaries that will run in production.
  add_compile_options(-fstack-protector-strong -D_FORTIFY_SOURCE=2)
  add_link_options(-Wl,-z,relro,-z,now)
endif()

if(KL_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

if(KL_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KL_FUZZ needs clang: configure with -DCMAKE_C_COMPILER=clang")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

if(KL_COVERAGE)
  add_compile_options(--coverage -O0)
  add_link_options(--coverage)
endif()
