# Benchmark peers for vecshard-bench; include()d from tests/bench/CMakeLists.txt.
#
# What it does: builds the hnswlib peer (vecshard-peer-hnswlib, C++17, -O3 -march=native) when the
# header-only hnswlib is installed; builds the compiled FAISS peer (vecshard-peer-faiss, same flags)
# when an installed FAISS is found: under the prefix VS_FAISS_ROOT (e.g. a FAISS built from source by
# hand), else, with -DVS_FAISS_SYSTEM=ON, on the system (Debian's libfaiss-dev); and copies the script next to
# the binaries as bin/vecshard-peer-faiss.py (vecshard-bench --peers faiss-py, or --peers faiss where
# the compiled peer was not built).
# What it does not do: build, fetch or install FAISS or hnswlib, or link either into anything but its
# peer (the product never links FAISS).
# Key design choice: a missing hnswlib or FAISS is not an error, only a status message, so the project
# still configures on machines without them.
# Paths use CMAKE_CURRENT_LIST_DIR so the fragment works whoever includes it.

# No sanitizers on a peer even in VS_ASAN / VS_TSAN builds: a peer benchmarks a third-party library,
# which sanitizers would abort or distort (see hnswlib below); FAISS is not built with them either.
function(_vs_peer_no_sanitizers target)
  foreach(_prop COMPILE_OPTIONS LINK_OPTIONS)
    get_target_property(_opts ${target} ${_prop})
    if(_opts)
      list(FILTER _opts EXCLUDE REGEX "^-f(no-)?sanitize")
      set_property(TARGET ${target} PROPERTY ${_prop} ${_opts})
    endif()
  endforeach()
endfunction()

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
  # Sanitizers stripped (_vs_peer_no_sanitizers): hnswlib 0.6.2 trips them by design (its SSE
  # prefetch reads one int past a link list -> ASan heap-buffer-overflow; its level RNG is shared by
  # concurrent addPoint -> TSan race), which would abort or distort every sanitizer build's benchmark run.
  _vs_peer_no_sanitizers(vecshard-peer-hnswlib)
  message(STATUS "hnswlib found in ${HNSWLIB_INCLUDE_DIR}: building vecshard-peer-hnswlib")
else()
  message(STATUS "hnswlib not found: vecshard-bench --peers hnswlib will report it missing")
endif()

# ---- FAISS, compiled peer: tests/bench/peer_faiss.cpp -> vecshard-peer-faiss ----------------------------
set(VS_FAISS_ROOT "" CACHE PATH
  "Prefix of an installed FAISS (include/faiss, lib/libfaiss*.so) for vecshard-peer-faiss; searched before the system")
# find_* results are cached: search again when VS_FAISS_ROOT changes.
if(NOT "${VS_FAISS_ROOT}" STREQUAL "${_VS_FAISS_ROOT_SEARCHED}")
  unset(VS_FAISS_INCLUDE_DIR CACHE)
  unset(VS_FAISS_LIBRARY CACHE)
  set(_VS_FAISS_ROOT_SEARCHED "${VS_FAISS_ROOT}" CACHE INTERNAL "VS_FAISS_ROOT of the last FAISS search")
endif()
# A FAISS install with FAISS_OPT_LEVEL=avx2/avx512/avx512_spr holds libfaiss (generic) and the SIMD
# variants beside it; take the widest one this machine runs (the peer is -march=native anyway), as
# FAISS's own Python loader does.
include(CheckCXXSourceCompiles)
set(_vs_faiss_names faiss)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(CMAKE_REQUIRED_FLAGS "-march=native")
  check_cxx_source_compiles("#if !defined(__AVX2__) || !defined(__FMA__)
#error no AVX2
#endif
int main(void) { return 0; }" VS_PEER_NATIVE_AVX2)
  check_cxx_source_compiles("#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512DQ__)
#error no AVX-512
#endif
int main(void) { return 0; }" VS_PEER_NATIVE_AVX512)
  check_cxx_source_compiles("#if !defined(__AVX512FP16__) || !defined(__AVX512BF16__) || !defined(__AVX512VPOPCNTDQ__)
#error no AVX-512 FP16
#endif
int main(void) { return 0; }" VS_PEER_NATIVE_AVX512_SPR)
  unset(CMAKE_REQUIRED_FLAGS)
  if(VS_PEER_NATIVE_AVX2)
    list(PREPEND _vs_faiss_names faiss_avx2)
  endif()
  if(VS_PEER_NATIVE_AVX512)
    list(PREPEND _vs_faiss_names faiss_avx512)
  endif()
  if(VS_PEER_NATIVE_AVX512_SPR)
    list(PREPEND _vs_faiss_names faiss_avx512_spr)
  endif()
endif()
if(VS_FAISS_ROOT)
  # A system FAISS cached by an earlier configure (when the prefix held none yet) does not stick.
  string(FIND "${VS_FAISS_LIBRARY}" "${VS_FAISS_ROOT}" _vs_pos)
  if(NOT _vs_pos EQUAL 0)
    unset(VS_FAISS_INCLUDE_DIR CACHE)
    unset(VS_FAISS_LIBRARY CACHE)
  endif()
  unset(_vs_pos)
  find_path(VS_FAISS_INCLUDE_DIR faiss/index_factory.h PATHS "${VS_FAISS_ROOT}" PATH_SUFFIXES include
    NO_DEFAULT_PATH)
  find_library(VS_FAISS_LIBRARY NAMES ${_vs_faiss_names} PATHS "${VS_FAISS_ROOT}"
    PATH_SUFFIXES lib lib64 lib/${CMAKE_LIBRARY_ARCHITECTURE} NO_DEFAULT_PATH)
  if(NOT VS_FAISS_INCLUDE_DIR OR NOT VS_FAISS_LIBRARY)
    message(STATUS "VS_FAISS_ROOT=${VS_FAISS_ROOT} holds no FAISS (include/faiss/index_factory.h and "
      "lib/lib{${_vs_faiss_names}}): looking on the system")
    unset(VS_FAISS_INCLUDE_DIR CACHE)
    unset(VS_FAISS_LIBRARY CACHE)
  endif()
endif()
# Headers and library from the same place: the system is searched only when VS_FAISS_ROOT gave neither,
# and only on request (VS_FAISS_SYSTEM): Debian's libfaiss-dev is 1.7.3, and building a peer against it
# in every test build (CI) would cost minutes for a benchmark nobody runs there.
option(VS_FAISS_SYSTEM "Build vecshard-peer-faiss against a system FAISS when VS_FAISS_ROOT has none" OFF)
if(VS_FAISS_ROOT OR VS_FAISS_SYSTEM)
  find_path(VS_FAISS_INCLUDE_DIR faiss/index_factory.h)
  find_library(VS_FAISS_LIBRARY NAMES ${_vs_faiss_names})
else()
  unset(VS_FAISS_INCLUDE_DIR CACHE)
  unset(VS_FAISS_LIBRARY CACHE)
endif()
if(VS_FAISS_INCLUDE_DIR AND VS_FAISS_LIBRARY AND NOT "CXX" IN_LIST _vs_peer_langs)
  message(STATUS "FAISS found but C++ is not enabled: vecshard-bench --peers faiss will use the script")
elseif(VS_FAISS_INCLUDE_DIR AND VS_FAISS_LIBRARY)
  file(STRINGS "${VS_FAISS_INCLUDE_DIR}/faiss/Index.h" _vs_faiss_ver REGEX "^#define FAISS_VERSION_(MAJOR|MINOR|PATCH) ")
  string(REGEX REPLACE "[^;]*_MAJOR ([0-9]+);[^;]*_MINOR ([0-9]+);[^;]*_PATCH ([0-9]+)" "\\1.\\2.\\3"
    _vs_faiss_ver "${_vs_faiss_ver}")
  if(NOT TARGET OpenMP::OpenMP_CXX)
    find_package(OpenMP COMPONENTS CXX)
  endif()
  if(NOT TARGET OpenMP::OpenMP_CXX)
    message(STATUS "FAISS ${_vs_faiss_ver} found but no OpenMP for C++: vecshard-bench --peers faiss will use the script")
  else()
    add_executable(vecshard-peer-faiss ${CMAKE_CURRENT_LIST_DIR}/peer_faiss.cpp)
    set_target_properties(vecshard-peer-faiss PROPERTIES
      CXX_STANDARD 17
      CXX_STANDARD_REQUIRED ON
      CXX_EXTENSIONS OFF)
    # SYSTEM: FAISS's headers are not held to the project's warning flags (or -Werror).
    target_include_directories(vecshard-peer-faiss SYSTEM PRIVATE ${VS_FAISS_INCLUDE_DIR})
    target_compile_options(vecshard-peer-faiss PRIVATE -O3 -march=native)
    target_link_libraries(vecshard-peer-faiss PRIVATE ${VS_FAISS_LIBRARY} OpenMP::OpenMP_CXX ${CMAKE_DL_LIBS})
    if(VS_FAISS_LIBRARY MATCHES "\\.a$")
      # A static FAISS (Debian's libfaiss.a) brings no dependencies: BLAS and LAPACK. The project's
      # OpenBLAS (pkg-config openblas, LAPACK included) when there is one.
      if(TARGET PkgConfig::OPENBLAS)
        target_link_libraries(vecshard-peer-faiss PRIVATE PkgConfig::OPENBLAS)
      else()
        find_package(LAPACK REQUIRED)
        target_link_libraries(vecshard-peer-faiss PRIVATE ${LAPACK_LIBRARIES} ${BLAS_LIBRARIES})
      endif()
    else()
      # Runs without LD_LIBRARY_PATH, from the build tree or installed.
      get_filename_component(_vs_faiss_libdir "${VS_FAISS_LIBRARY}" DIRECTORY)
      set_target_properties(vecshard-peer-faiss PROPERTIES
        BUILD_RPATH "${_vs_faiss_libdir}"
        INSTALL_RPATH "${_vs_faiss_libdir}")
      unset(_vs_faiss_libdir)
    endif()
    _vs_peer_no_sanitizers(vecshard-peer-faiss)
    message(STATUS "FAISS ${_vs_faiss_ver} found (${VS_FAISS_LIBRARY}): building vecshard-peer-faiss")
  endif()
  unset(_vs_faiss_ver)
else()
  message(STATUS "No FAISS for the compiled peer (set VS_FAISS_ROOT to an installed prefix, or -DVS_FAISS_SYSTEM=ON): "
    "vecshard-bench --peers faiss will use the script")
endif()
unset(_vs_faiss_names)
unset(_vs_peer_langs)

# The FAISS peer script (run with /usr/bin/python3, which sees Debian's python3-faiss): the peer of
# --peers faiss-py, and of --peers faiss where vecshard-peer-faiss was not built.
configure_file(${CMAKE_CURRENT_LIST_DIR}/peer_faiss.py ${CMAKE_BINARY_DIR}/bin/vecshard-peer-faiss.py COPYONLY)
