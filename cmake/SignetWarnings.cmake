# Warnings live on an INTERFACE target that every Signet target links PRIVATE.
add_library(signet_warnings INTERFACE)
add_library(signet::warnings ALIAS signet_warnings)
target_compile_options(signet_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual -Wnull-dereference
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough)
if(SIGNET_WERROR)
  target_compile_options(signet_warnings INTERFACE -Werror)
endif()
# -Wnon-virtual-dtor is left out: boost::system::error_category has a protected non-virtual
# destructor by design, and every error category would trip it. -Wdelete-non-virtual-dtor (in
# -Wall) still catches the real hazard.
