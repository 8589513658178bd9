# Helpers shared by lib/, apps/ and tests/.

# Warnings for our own code only.
function(secateur_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-maybe-uninitialized)
endfunction()

# -DSECATEUR_SANITIZE=address,undefined|thread instruments every target declared after this point
# (libraries, apps, tests, the PCH, which must share their flags). LibTorch itself is not
# instrumented: ASan and UBSan are exact on our code anyway; TSan cannot see LibTorch's own
# synchronisation, so the thread build is meant for the torch-free code (docs/security.md).
if(SECATEUR_SANITIZE)
  if(NOT SECATEUR_SANITIZE MATCHES "^(address|undefined|address,undefined|undefined,address|thread)$")
    message(FATAL_ERROR "SECATEUR_SANITIZE='${SECATEUR_SANITIZE}': expected address,undefined or thread")
  endif()
  add_compile_options(-fsanitize=${SECATEUR_SANITIZE} -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=${SECATEUR_SANITIZE})
  if(SECATEUR_SANITIZE MATCHES undefined)
    # A finding fails the test instead of printing and carrying on.
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
endif()

# One precompiled <torch/torch.h> reused by every target that includes torch: a torch TU costs
# ~14 s on 2 cores without it and ~6 s with it. REUSE_FROM needs identical compile options, so
# every torch target goes through this function.
add_library(secateur_torch_pch OBJECT ${CMAKE_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(secateur_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_precompile_headers(secateur_torch_pch PRIVATE <torch/torch.h> <torch/script.h>)
secateur_warnings(secateur_torch_pch)

function(secateur_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM secateur_torch_pch)
endfunction()

# secateur_library(<dir> [TORCH] SOURCES a.cpp ... [DEPS secateur_x ...])
# Declares secateur_<dir> from the sources of lib/<dir>. TORCH links LibTorch and reuses the PCH.
function(secateur_library dir)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  set(target secateur_${dir})
  add_library(${target} STATIC ${ARG_SOURCES})
  target_include_directories(${target} PUBLIC ${CMAKE_SOURCE_DIR}/lib)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
    secateur_use_torch_pch(${target})
  endif()
  secateur_warnings(${target})
endfunction()

# secateur_torch_cuda_headers(<target>): LibTorch's CUDA headers (ATen/cuda, c10/cuda) and CUDA's
# for a library's CUDA-only code (CUDA graphs), compiled in with SECATEUR_TORCH_CUDA=1 in CUDA
# builds of LibTorch only.
function(secateur_torch_cuda_headers target)
  if(TORCH_CUDA_LIBRARIES)
    find_package(CUDAToolkit QUIET)
    target_compile_definitions(${target} PRIVATE SECATEUR_TORCH_CUDA=1)
    if(CUDAToolkit_FOUND)
      target_include_directories(${target} PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
    endif()
  endif()
endfunction()
