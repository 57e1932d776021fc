# Benchmark peers for vecshard-bench; include()d from tests/bench/CMakeLists.txt.
#
# What it does: builds the hnswlib peer (vecshard-peer-hnswlib, C++17, -O3
# -march=native) when the header-only hnswlib is installed, and copies the
# FAISS peer script next to the binaries as bin/vecshard-peer-faiss.py.
# What it does not do: look for FAISS (the script checks for it at run time and
# the harness reports a missing peer) or fetch hnswlib from the network.
# Key design choice: a missing hnswlib is not an error, only a status message,
# so the project still configures on machines without it.
# Paths use CMAKE_CURRENT_LIST_DIR so the fragment works whoever includes it.

find_path(HNSWLIB_INCLUDE_DIR hnswlib/hnswlib.h)

get_property(_vs_peer_langs GLOBAL PROPERTY ENABLED_LANGUAGES)
if(HNSWLIB_INCLUDE_DIR AND NOT "CXX" IN_LIST _vs_peer_langs)
  message(STATUS "hnswlib found but C++ is not enabled: vecshard-bench --peers hnswlib will report it missing")
elseif(HNSWLIB_INCLUDE_DIR)
  if(NOT TARGET Threads::Threads)
    find_package(Threads REQUIRED)
  endif()
  add_executable(vecshard-peer-hnswlib ${CMAKE_CURRENT_LIST_DIR}/peer_hnswlib.cpp)
  set_target_properties(vecshard-peer-hnswlib PROPERTIES
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF)
  # SYSTEM: hnswlib's own headers are not held to the project's warning flags (or -Werror).
  target_include_directories(vecshard-peer-hnswlib SYSTEM PRIVATE ${HNSWLIB_INCLUDE_DIR})
  target_compile_options(vecshard-peer-hnswlib PRIVATE
    -O3 -march=native -Wno-unused-parameter -Wno-sign-compare)
  target_link_libraries(vecshard-peer-hnswlib PRIVATE Threads::Threads)
  # No sanitizers on the peer even in VS_ASAN / VS_TSAN builds: it benchmarks a
  # third-party library, and hnswlib 0.6.2 trips them by design (its SSE
  # prefetch reads one int past a link list -> ASan heap-buffer-overflow; its
  # level RNG is shared by concurrent addPoint -> TSan race), which would abort
  # or distort every sanitizer build's benchmark run.
  foreach(_vs_prop COMPILE_OPTIONS LINK_OPTIONS)
    get_target_property(_vs_opts vecshard-peer-hnswlib ${_vs_prop})
    if(_vs_opts)
      list(FILTER _vs_opts EXCLUDE REGEX "^-f(no-)?sanitize")
      set_property(TARGET vecshard-peer-hnswlib PROPERTY ${_vs_prop} ${_vs_opts})
    endif()
  endforeach()
  unset(_vs_opts)
  message(STATUS "hnswlib found in ${HNSWLIB_INCLUDE_DIR}: building vecshard-peer-hnswlib")
else()
  message(STATUS "hnswlib not found: vecshard-bench --peers hnswlib will report it missing")
endif()
unset(_vs_peer_langs)

# The FAISS peer is a script (run with /usr/bin/python3, which sees Debian's python3-faiss).
configure_file(${CMAKE_CURRENT_LIST_DIR}/peer_faiss.py ${CMAKE_BINARY_DIR}/bin/vecshard-peer-faiss.py COPYONLY)
