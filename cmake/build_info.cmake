# Writes OUT (a C header) with the commit the tree is built from, at every build; the file is
# only rewritten when its content changes, so nothing recompiles needlessly. Run as
#   cmake -DSRC=<source dir> -DOUT=<header> -DVERSION=<x.y.z> -P build_info.cmake
set(commit "unknown")
find_program(GIT git)
if(GIT AND EXISTS "${SRC}/.git")
  execute_process(COMMAND "${GIT}" -C "${SRC}" describe --always --dirty --abbrev=12
                  OUTPUT_VARIABLE out RESULT_VARIABLE rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(rc EQUAL 0 AND out)
    set(commit "${out}")
  endif()
endif()
set(text "/* Generated at build time by cmake/build_info.cmake: do not edit, do not commit. */
#define KL_BUILD_VERSION \"${VERSION}\"
#define KL_BUILD_COMMIT \"${commit}\"
")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE "${OUT}" "${text}")
endif()
