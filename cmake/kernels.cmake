# Whether lib/kernels compiles its CUDA kernels (fused_kernels.cu): only with a CUDA compiler and a
# CUDA build of LibTorch, unless -DSECATEUR_CUDA_KERNELS=OFF. Otherwise secateur_kernels is its
# ATen fallbacks alone. Included from the top-level CMakeLists.txt after find_package(Torch) and
# before lib/: enable_language(CUDA) belongs in the directory above every target that links CUDA
# objects (libraries, apps, tests, benchmarks).
#
# Detection: LibTorch's config finds c10_cuda (C10_CUDA_LIBRARY, TORCH_CUDA_LIBRARIES) only in CUDA
# builds. A CUDA LibTorch 2.x config has enabled the CUDA language itself (Caffe2's
# public/cuda.cmake, which needs nvcc) and put -gencode flags for TORCH_CUDA_ARCH_LIST (by default the
# GPUs it sees) into CMAKE_CUDA_FLAGS, with CMAKE_CUDA_ARCHITECTURES OFF; otherwise check_language
# looks for nvcc (PATH, CUDACXX, -DCMAKE_CUDA_COMPILER) and enable_language(CUDA) turns it on.
#
# Architectures of the kernels: SECATEUR_CUDA_ARCHITECTURES when set (e.g. "90" or "80;90", added
# to any -gencode flags of LibTorch's); else those of LibTorch's -gencode flags when CMAKE_CUDA_FLAGS
# has some; else 90 (H100). (CMAKE_CUDA_ARCHITECTURES is not consulted: a CUDA LibTorch sets it
# OFF, and enable_language would otherwise fill it with nvcc's oldest default.)
#
# Sets SECATEUR_KERNELS_WITH_CUDA (ON/OFF) and SECATEUR_KERNELS_CUDA_ARCHITECTURES for lib/kernels.
option(SECATEUR_CUDA_KERNELS "Compile lib/kernels' CUDA kernels when nvcc and a CUDA LibTorch are found" ON)
set(SECATEUR_CUDA_ARCHITECTURES "" CACHE STRING
  "CUDA architectures of lib/kernels, e.g. 90 or 80;90 (empty: LibTorch's -gencode flags, else 90)")

set(SECATEUR_KERNELS_WITH_CUDA OFF)
set(SECATEUR_KERNELS_CUDA_ARCHITECTURES OFF)
if(NOT SECATEUR_CUDA_KERNELS)
  set(_secateur_kernels_why "SECATEUR_CUDA_KERNELS=OFF")
elseif(NOT (C10_CUDA_LIBRARY OR TORCH_CUDA_LIBRARIES))
  set(_secateur_kernels_why "LibTorch is a CPU-only build")
elseif(SECATEUR_SANITIZE)
  set(_secateur_kernels_why "sanitizer builds pass -fsanitize to every compiler, nvcc included")
else()
  get_property(_secateur_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if(NOT "CUDA" IN_LIST _secateur_languages)
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
        set(CMAKE_CUDA_ARCHITECTURES 90)
      endif()
      enable_language(CUDA)
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    set(SECATEUR_KERNELS_WITH_CUDA ON)
    # The runtime LibTorch links (libcudart.so), not a second, static copy in the same process.
    if(NOT DEFINED CMAKE_CUDA_RUNTIME_LIBRARY)
      set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    endif()
    if(SECATEUR_CUDA_ARCHITECTURES)
      set(SECATEUR_KERNELS_CUDA_ARCHITECTURES "${SECATEUR_CUDA_ARCHITECTURES}")
      set(_secateur_arch_desc "architectures ${SECATEUR_CUDA_ARCHITECTURES}")
    elseif(CMAKE_CUDA_FLAGS MATCHES "arch=|-arch[ =]|--gpu-architecture")
      set(_secateur_arch_desc "architectures of LibTorch's CMAKE_CUDA_FLAGS")
    else()
      set(SECATEUR_KERNELS_CUDA_ARCHITECTURES 90)
      set(_secateur_arch_desc "architectures 90")
    endif()
  else()
    set(_secateur_kernels_why "no CUDA compiler found (put nvcc on PATH, or set CUDACXX or CMAKE_CUDA_COMPILER)")
  endif()
endif()

if(SECATEUR_KERNELS_WITH_CUDA)
  message(STATUS "secateur_kernels: CUDA kernels ON (${CMAKE_CUDA_COMPILER} ${CMAKE_CUDA_COMPILER_VERSION}, ${_secateur_arch_desc})")
else()
  message(STATUS "secateur_kernels: CUDA kernels OFF (${_secateur_kernels_why}): ATen fallbacks only")
endif()
