# Driver for the consumer_* ctest entries. Run with `cmake -P`:
#   -DMODE=find_package|subdirectory
#   -DCACHET_SOURCE_DIR=<cachet source dir>
#   -DCACHET_BINARY_DIR=<configured cachet build dir> (find_package mode)
#   -DWORK_DIR=<scratch dir, wiped first>
#   [-DCONFIG=<build config>] [-DGENERATOR=<cmake generator>] [-DCXX_COMPILER=<c++>]
#
# find_package: `cmake --install` the cachet build dir into WORK_DIR/prefix,
# then configure/build/run tests/consumer with CMAKE_PREFIX_PATH=WORK_DIR/prefix.
# subdirectory: configure/build/run tests/consumer with add_subdirectory(cachet).
# Nothing touches the network.

foreach(var MODE CACHET_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(run_step what)
  message(STATUS "[consumer:${MODE}] ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[consumer:${MODE}] ${what} failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(consumer_args
  -S "${CACHET_SOURCE_DIR}/tests/consumer"
  -B "${WORK_DIR}/build"
  "-DCMAKE_BUILD_TYPE=${CONFIG}"
  "-DCACHET_CONSUMER_MODE=${MODE}"
  # Never pick up a cachet from the user/system package registries.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(GENERATOR)
  list(APPEND consumer_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND consumer_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()

if(MODE STREQUAL "find_package")
  if(NOT CACHET_BINARY_DIR)
    message(FATAL_ERROR "run_consumer_test.cmake: -DCACHET_BINARY_DIR=... is required for find_package")
  endif()
  set(prefix "${WORK_DIR}/prefix")
  run_step("install" "${CMAKE_COMMAND}" --install "${CACHET_BINARY_DIR}"
    --prefix "${prefix}" --config "${CONFIG}")
  if(NOT EXISTS "${prefix}/include/cachet/cachet.hpp")
    message(FATAL_ERROR "install did not produce ${prefix}/include/cachet/cachet.hpp")
  endif()
  list(APPEND consumer_args "-DCMAKE_PREFIX_PATH=${prefix}" "-Dcachet_ROOT=${prefix}")
elseif(MODE STREQUAL "subdirectory")
  list(APPEND consumer_args "-DCACHET_SOURCE_DIR=${CACHET_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run_consumer_test.cmake: unknown MODE '${MODE}'")
endif()

run_step("configure" "${CMAKE_COMMAND}" ${consumer_args})
run_step("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --config "${CONFIG}")

set(exe "${WORK_DIR}/build/cachet_consumer")
if(NOT EXISTS "${exe}")
  set(exe "${WORK_DIR}/build/${CONFIG}/cachet_consumer")  # multi-config generators
endif()
run_step("run" "${exe}")
message(STATUS "[consumer:${MODE}] OK")
