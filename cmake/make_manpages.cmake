# Writes the man pages from the programs' own --help (help2man), so that they never disagree:
# keyless.1, keyless-SUBCOMMAND.1 for every subcommand `keyless --help` lists, and
# keyless-{core,gateway,aggregator,extender}.8.
# Run as: cmake -DHELP2MAN=... -DKEYLESS=path -DDAEMONS="path;path" -DVERSION=x.y.z -DOUT=dir
#               -P make_manpages.cmake
foreach(v HELP2MAN KEYLESS DAEMONS VERSION OUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "make_manpages: -D${v}= is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT}/man1 ${OUT}/man8 ${OUT}/wrap)

execute_process(COMMAND ${KEYLESS} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_manpages: '${KEYLESS} --help' exited ${rc}")
endif()
# The subcommands: the "  NAME  description" lines between "commands:" and the next blank line
# (';' would split CMake lists).
string(REPLACE ";" "," help "${help}")
string(REGEX MATCH "commands:\n(([ ]+[a-z][a-z-]*[ ]+[^\n]+\n)+)" block "${help}")
string(REGEX MATCHALL "  [a-z][a-z-]* +[^\n]+" lines "${CMAKE_MATCH_1}")
if(NOT lines)
  message(FATAL_ERROR "make_manpages: no subcommands found in '${KEYLESS} --help'")
endif()

set(names "")
set(see_also "keyless(1)")
foreach(line ${lines})
  string(REGEX MATCH "^  ([a-z][a-z-]*) +(.*)$" _ "${line}")
  list(APPEND names ${CMAKE_MATCH_1})
  set(desc_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
  string(APPEND see_also ", keyless-${CMAKE_MATCH_1}(1)")
endforeach()
foreach(d core gateway aggregator extender)
  string(APPEND see_also ", keyless-${d}(8)")
endforeach()
file(WRITE ${OUT}/see-also.h2m
     "[SEE ALSO]\n${see_also}.\n\nThe documents in /usr/share/doc/keyless: README.md, client.md, "
     "operations.md, formats.md, security.md.\n")

function(h2m section name desc prog)
  execute_process(COMMAND ${HELP2MAN} --no-info --section=${section} --name=${desc}
                          --version-string=${VERSION} --include=${OUT}/see-also.h2m
                          --output=${OUT}/man${section}/${name}.${section} ${prog}
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "make_manpages: help2man ${name}: ${err}")
  endif()
endfunction()

h2m(1 keyless "keyless signature network client: sign, verify, extend, publish, administer" ${KEYLESS})
foreach(n ${names})
  # help2man runs one program: a two-line wrapper stands for `keyless SUBCOMMAND`.
  set(w ${OUT}/wrap/keyless-${n})
  file(WRITE ${w} "#!/bin/sh\nexec '${KEYLESS}' ${n} \"$@\"\n")
  file(CHMOD ${w} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
       WORLD_READ WORLD_EXECUTE)
  h2m(1 keyless-${n} "${desc_${n}}" ${w})
endforeach()

set(desc_core "one node of the keyless core cluster (Raft, the calendar)")
set(desc_gateway "keyless gateway: signs clients' hashes in rounds")
set(desc_aggregator "keyless aggregator: one level of the aggregation hierarchy")
set(desc_extender "keyless extender: calendar replica, extension and publications service")
foreach(prog ${DAEMONS})
  get_filename_component(name ${prog} NAME)
  string(REGEX REPLACE "^keyless-" "" short ${name})
  h2m(8 ${name} "${desc_${short}}" ${prog})
endforeach()
file(REMOVE_RECURSE ${OUT}/wrap)
