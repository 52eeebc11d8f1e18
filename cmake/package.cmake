# Debian packages with CPack (cpack -G DEB in a build tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr; scripts/package.sh does both):
#   keyless        the daemons, the keyless command, systemd units, sysusers and tmpfiles
#                  configuration, docs, sample configurations, man pages, bash completion
#                  (component runtime; its maintainer scripts are deploy/debian/)
#   libkeyless0    the client library, libkeyless.so.0 (component lib; Debian names a shared
#                  library's package after its soname)
#   libkeyless-dev headers, libkeyless.so, keyless.pc, the CMake package, examples (component dev)
include(GNUInstallDirs)

# systemd units with the installed programs' path (deploy/systemd has /usr/local/bin, for a
# hand install); computed at install time, so that the prefix cpack installs to is the one used.
install(CODE "
  set(units_dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  file(MAKE_DIRECTORY \"\${units_dir}\")
  foreach(d core gateway aggregator extender)
    file(READ \"${PROJECT_SOURCE_DIR}/deploy/systemd/keyless-\${d}.service\" unit)
    string(REPLACE \"/usr/local/bin/\" \"\${CMAKE_INSTALL_PREFIX}/bin/\" unit \"\${unit}\")
    file(WRITE \"\${units_dir}/keyless-\${d}.service\" \"\${unit}\")
    message(STATUS \"Installing: \${units_dir}/keyless-\${d}.service\")
  endforeach()" COMPONENT runtime)
install(FILES deploy/systemd/keyless.sysusers DESTINATION lib/sysusers.d RENAME keyless.conf COMPONENT runtime)
install(FILES deploy/systemd/keyless.tmpfiles DESTINATION lib/tmpfiles.d RENAME keyless.conf COMPONENT runtime)
install(PROGRAMS deploy/local-network DESTINATION ${CMAKE_INSTALL_DATADIR}/keyless COMPONENT runtime)
install(FILES deploy/local-network-hosts.sh DESTINATION ${CMAKE_INSTALL_DATADIR}/keyless COMPONENT runtime)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME keyless)
set(CPACK_PACKAGE_VENDOR "keyless")
set(CPACK_PACKAGE_CONTACT "keyless maintainers <maintainers@keyless.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "keyless signature network (KSI-style hash-tree timestamping)")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime lib dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # Depends: from the binaries' NEEDED libraries
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME keyless)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "keyless signature network: core, aggregator, gateway and extender daemons and the keyless command\n"
    "Hash-tree (KSI-style) timestamping: gateways aggregate document hashes into rounds, a Raft\n"
    "core cluster appends one root per second to the calendar hash chain, extenders serve it.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION net)
# Signing keys in an HSM go through libp11's engine; SoftHSM2 for trying it (docs/keys.md).
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SUGGESTS "libengine-pkcs11-openssl, softhsm2")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libkeyless0)
set(CPACK_COMPONENT_LIB_DESCRIPTION "keyless client library (signing, extending, verification)")
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIB_PACKAGE_GENERATE_SHLIBS ON) # shlibs file and the ldconfig trigger

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libkeyless-dev)
set(CPACK_COMPONENT_DEV_DESCRIPTION "keyless client library: headers, pkg-config and CMake files, examples")
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
include(CPack)
