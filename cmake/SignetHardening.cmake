# Release hardening, applied to every Signet target through signet::warnings' sibling signet::hardening.
add_library(signet_hardening INTERFACE)
add_library(signet::hardening ALIAS signet_hardening)
if(SIGNET_HARDEN)
  target_compile_options(signet_hardening INTERFACE
    -fstack-protector-strong -fstack-clash-protection -fcf-protection
    $<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>)
  target_link_options(signet_hardening INTERFACE -Wl,-z,relro -Wl,-z,now -pie)
endif()
