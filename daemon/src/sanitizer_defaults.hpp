// Defaults for sanitizer builds of the Signet binaries that load an HSM module (included by
// exactly one translation unit of each). SoftHSM 2.6.1 leaks two small OpenSSL objects each time
// it decodes an Ed25519 key (measured): leaks with a SoftHSM frame are suppressed, Signet's own
// still fail. DWARF unwinding makes the SoftHSM frame visible (libcrypto has no frame pointers).
// Environment variables (ASAN_OPTIONS, LSAN_OPTIONS) still override these.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options();
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
extern "C" const char* __lsan_default_suppressions();
extern "C" const char* __lsan_default_suppressions() { return "leak:libsofthsm2.so\n"; }
#endif
