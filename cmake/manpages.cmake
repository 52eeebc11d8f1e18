# Man pages generated at build time from --help by help2man (Debian's help2man), installed under
# share/man. KL_MANPAGES: AUTO (when help2man is found), ON (required) or OFF.
include(GNUInstallDirs)
set(KL_MANPAGES AUTO CACHE STRING "Generate man pages with help2man (AUTO, ON, OFF)")
if(NOT KL_MANPAGES STREQUAL OFF)
  find_program(HELP2MAN help2man)
  if(NOT HELP2MAN AND KL_MANPAGES STREQUAL ON)
    message(FATAL_ERROR "KL_MANPAGES=ON but help2man is not installed (apt-get install help2man)")
  endif()
endif()
if(HELP2MAN AND NOT KL_MANPAGES STREQUAL OFF)
  set(KL_MAN_DIR ${PROJECT_BINARY_DIR}/man)
  set(KL_MAN_DAEMONS keyless-core keyless-gateway keyless-aggregator keyless-extender)
  set(daemon_paths "")
  foreach(t ${KL_MAN_DAEMONS})
    list(APPEND daemon_paths $<TARGET_FILE:${t}>)
  endforeach()
  add_custom_command(
    OUTPUT ${KL_MAN_DIR}/man1/keyless.1
    COMMAND ${CMAKE_COMMAND} -DHELP2MAN=${HELP2MAN} -DKEYLESS=$<TARGET_FILE:keyless-cli>
            "-DDAEMONS=${daemon_paths}" -DVERSION=${PROJECT_VERSION} -DOUT=${KL_MAN_DIR}
            -P ${PROJECT_SOURCE_DIR}/cmake/make_manpages.cmake
    DEPENDS keyless-cli ${KL_MAN_DAEMONS} ${PROJECT_SOURCE_DIR}/cmake/make_manpages.cmake
    COMMENT "man pages (help2man)" VERBATIM)
  add_custom_target(manpages ALL DEPENDS ${KL_MAN_DIR}/man1/keyless.1)
  install(DIRECTORY ${KL_MAN_DIR}/man1 ${KL_MAN_DIR}/man8 DESTINATION ${CMAKE_INSTALL_MANDIR})
endif()

# Bash completion: bash-completion loads completions/NAME for the command NAME, so the one file
# goes in under each program's name.
foreach(n keyless keyless-core keyless-gateway keyless-aggregator keyless-extender)
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/completion/keyless.bash
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME ${n})
endforeach()
