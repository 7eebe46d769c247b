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
