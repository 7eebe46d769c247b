# Third-party dependencies, all from Debian 12's packages (tools/install-deps
# installs them). Each is a hard requirement except the CUDA toolkit, which
# only switches the CUDA backend of exec/ on.
find_package(Boost 1.74 REQUIRED COMPONENTS program_options graph)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HWLOC REQUIRED IMPORTED_TARGET hwloc)

# CUDA toolkit + cuBLAS + NCCL: looked for under CUDAToolkit_ROOT, or
# /usr/local/cuda by default.
if(NOT DEFINED CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
  set(CUDAToolkit_ROOT /usr/local/cuda)
endif()
find_package(CUDAToolkit QUIET)
set(ORRERY_HAVE_CUDA OFF)
if(CUDAToolkit_FOUND)
  find_library(ORRERY_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
  find_path(ORRERY_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  if(ORRERY_NCCL_LIBRARY AND ORRERY_NCCL_INCLUDE_DIR AND TARGET CUDA::cublas)
    set(ORRERY_HAVE_CUDA ON)
    add_library(orrery_nccl INTERFACE)
    target_link_libraries(orrery_nccl INTERFACE ${ORRERY_NCCL_LIBRARY})
    target_include_directories(orrery_nccl INTERFACE ${ORRERY_NCCL_INCLUDE_DIR})
    message(STATUS "Orrery: CUDA ${CUDAToolkit_VERSION} with cuBLAS and NCCL found: building the CUDA backend of exec/")
  else()
    message(STATUS "Orrery: CUDA ${CUDAToolkit_VERSION} found but not NCCL/cuBLAS: CUDA backend of exec/ not built")
  endif()
else()
  message(STATUS "Orrery: no CUDA toolkit found: CUDA backend of exec/ not built (CPU backend only)")
endif()

# The CUDA language, for the backend's kernels (exec/cuda/cuda_kernels.cu):
# enabled only with the toolkit above, using its nvcc unless CUDACXX or
# CMAKE_CUDA_COMPILER names another. An nvcc that cannot compile turns the
# backend off instead of failing the configure.
if(ORRERY_HAVE_CUDA)
  include(CheckLanguage)
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
     AND EXISTS "${CUDAToolkit_NVCC_EXECUTABLE}")
    set(ENV{CUDACXX} "${CUDAToolkit_NVCC_EXECUTABLE}")
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # One real architecture plus its PTX keeps the build fast: "80" embeds
    # sm_80 code and compute_80 PTX, which the driver JIT-compiles for newer
    # GPUs (H100 included). Override with -DCMAKE_CUDA_ARCHITECTURES=90 etc.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 CACHE STRING "CUDA architectures of the kernels")
    endif()
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_EXTENSIONS OFF)
    # The shared runtime, as CUDA::cudart that the C++ sources link: one
    # runtime per process.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    if(ORRERY_CCACHE)
      set(CMAKE_CUDA_COMPILER_LAUNCHER ${ORRERY_CCACHE})
    endif()
    enable_language(CUDA)
  else()
    set(ORRERY_HAVE_CUDA OFF)
    message(STATUS "Orrery: the CUDA toolkit's nvcc cannot compile: CUDA backend not built")
  endif()
endif()
