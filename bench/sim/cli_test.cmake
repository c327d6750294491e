# End-to-end tests of the cachet-sim command line, for ctest entry sim_cli. Run with `cmake -P`:
#   -DSIM=<cachet-sim executable> -DWORK_DIR=<scratch folder, wiped first>
# Checks outputs and exit codes: 0 success, 1 data error, 2 usage error.

cmake_minimum_required(VERSION 3.25)

foreach(var SIM WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "cli_test.cmake: -D${var}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(failures 0)

# run(<name> EXIT <code> [INPUT <file>] [STDOUT <regex>...] [STDERR <regex>...]
#     [STDOUT_IS <exact text>] ARGS <args...>)
function(run name)
  cmake_parse_arguments(R "" "EXIT;INPUT;STDOUT_IS" "STDOUT;STDERR;ARGS" ${ARGN})
  set(extra "")
  if(R_INPUT)
    set(extra INPUT_FILE "${R_INPUT}")
  else()
    set(extra INPUT_FILE /dev/null)
  endif()
  execute_process(COMMAND "${SIM}" ${R_ARGS} ${extra}
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  set(ok TRUE)
  if(NOT rc STREQUAL R_EXIT)
    set(ok FALSE)
    set(why "exit ${rc}, expected ${R_EXIT}")
  endif()
  foreach(re IN LISTS R_STDOUT)
    if(NOT out MATCHES "${re}")
      set(ok FALSE)
      set(why "stdout does not match '${re}'")
    endif()
  endforeach()
  foreach(re IN LISTS R_STDERR)
    if(NOT err MATCHES "${re}")
      set(ok FALSE)
      set(why "stderr does not match '${re}'")
    endif()
  endforeach()
  if(DEFINED R_STDOUT_IS AND NOT out STREQUAL R_STDOUT_IS)
    set(ok FALSE)
    set(why "stdout differs from the expected text")
  endif()
  if(ok)
    message(STATUS "ok   ${name}")
  else()
    message(SEND_ERROR "FAIL ${name}: ${why}\n  args: ${R_ARGS}\n  stdout:\n${out}\n  stderr:\n${err}")
    math(EXPR f "${failures} + 1")
    set(failures ${f} PARENT_SCOPE)
  endif()
endfunction()

# A loop of 4 keys: with 3 entries LRU and FIFO never hit; with 4, only the first pass misses.
set(loop "${WORK_DIR}/loop.trace")
file(WRITE "${loop}" "1\n2\n3\n4\n*\n1\r\n2\r\n3\r\n4\r\n\n1\n2\n3\n4\n")
run("csv output: exact header and rows" EXIT 0 ARGS --csv -q -p lru,fifo -c 4,3 "${loop}"
  STDOUT_IS "trace,policy,capacity,shards,requests,hits,hit_ratio
loop,lru,3,1,12,0,0.00
loop,lru,4,1,12,8,66.67
loop,fifo,3,1,12,0,0.00
loop,fifo,4,1,12,8,66.67
")
run("table output is aligned" EXIT 0 ARGS -q -p lru -c 4 --name L "${loop}"
  STDOUT_IS "trace  policy  capacity  shards  requests  hits  hit_ratio_%
L      lru            4       1        12     8        66.67
")
run("stdin needs --format" EXIT 2 INPUT "${loop}" ARGS -c 4 -
  STDERR "cannot tell the format of '-'")
run("stdin with --format" EXIT 0 INPUT "${loop}" ARGS --csv -q -f lirs -c 4 -
  STDOUT "\nstdin,lru,4,1,12,8,66.67\n")
run("--sweep is log-spaced" EXIT 0 ARGS --csv -q --sweep 1:100:3 "${loop}"
  STDOUT ",lru,1,1," ",lru,10,1," ",lru,100,1,")
run("option values attached" EXIT 0 ARGS --csv -q -plru -c4 --shards=2 "${loop}"
  STDOUT ",lru,4,2,12,")
run("--shards" EXIT 0 ARGS --csv -q -c 4 --shards 2 "${loop}" STDOUT ",lru,4,2,12,")
run("--policy all" EXIT 0 ARGS --csv -q -p all -c 4 "${loop}"
  STDOUT ",lru,4," ",fifo,4," ",lfu,4," ",ttl,4," ",random,4," ",no_eviction,4,")
run("--list-policies" EXIT 0 ARGS --list-policies STDOUT "^lru\nfifo\n")
run("--help" EXIT 0 ARGS --help STDOUT "usage: cachet-sim" "--sweep MIN:MAX:N")
run("summary on stderr" EXIT 0 ARGS --csv -p lru -c 4 "${loop}"
  STDERR "loop: 12 requests, 4 unique keys \\(lirs\\)")

# arc and keys and csv formats.
set(arc "${WORK_DIR}/t.lis")
file(WRITE "${arc}" "10 3 0 0\n10 3 0 1\n")
run("arc expands start..start+count-1" EXIT 0 ARGS --csv -q -c 3 "${arc}" STDOUT ",lru,3,1,6,3,50.00")
set(keys "${WORK_DIR}/k.txt")
file(WRITE "${keys}" "user:1\nuser 2\nuser:1\n")
run("keys format" EXIT 0 ARGS --csv -q -f keys -c 2 "${keys}" STDOUT ",lru,2,1,3,1,33.33")
set(csv "${WORK_DIR}/c.csv")
file(WRITE "${csv}" "ts,key,size\n1,a,5\n2,\"b,c\",5\n3,a,5\n")
run("csv by name" EXIT 0 ARGS --csv -q --column key -c 2 "${csv}" STDOUT ",lru,2,1,3,1,33.33")
run("csv by index with header" EXIT 0 ARGS --csv -q --column 2 --header -c 2 "${csv}"
  STDOUT ",lru,2,1,3,1,33.33")
run("csv unknown column" EXIT 1 ARGS -q --column nope -c 2 "${csv}"
  STDERR "line 1: no column named 'nope'")

# Malformed lines: stop naming the line, or skip and report with --skip-bad.
set(bad "${WORK_DIR}/bad.trace")
file(WRITE "${bad}" "1\n2\nthree\n1\nfour\n")
run("malformed line names its number" EXIT 1 ARGS -q -c 2 "${bad}"
  STDERR "bad: line 3: expected one unsigned decimal key: 'three'" "--skip-bad")
run("--skip-bad counts and reports" EXIT 0 ARGS --csv -q --skip-bad -c 2 "${bad}"
  STDOUT ",lru,2,1,3,1,33.33" STDERR "skipped 2 malformed lines \\(first: line 3:")

# Usage errors exit 2, naming the problem.
run("unknown policy" EXIT 2 ARGS -p lru,bogus -c 2 "${loop}" STDERR "unknown policy 'bogus'")
run("unknown format" EXIT 2 ARGS -f xml -c 2 "${loop}" STDERR "unknown format 'xml'")
run("bad capacity" EXIT 2 ARGS -c 10,x "${loop}" STDERR "capacity 'x' is not a positive")
run("zero capacity" EXIT 2 ARGS -c 0 "${loop}" STDERR "capacity must be at least 1")
run("no capacity" EXIT 2 ARGS "${loop}" STDERR "no cache size")
run("bad sweep" EXIT 2 ARGS --sweep 10:1:3 "${loop}" STDERR "MAX \\(1\\) is below MIN \\(10\\)")
run("--seed" EXIT 0 ARGS --csv -q -c 4 --seed 0 "${loop}" STDOUT ",lru,4,1,12,8,66.67")
run("bad seed" EXIT 2 ARGS -c 4 --seed -1 "${loop}" STDERR "--seed '-1' is not a decimal integer")
run("bad shards" EXIT 2 ARGS -c 8 --shards 3 "${loop}" STDERR "power of two")
run("shards above capacity" EXIT 2 ARGS -c 2 --shards 4 "${loop}" STDERR "exceeds the capacity 2")
run("unknown option" EXIT 2 ARGS --frobnicate "${loop}" STDERR "unknown option '--frobnicate'")
run("missing value" EXIT 2 ARGS -c STDERR "option -c needs a value")
run("csv options need csv" EXIT 2 ARGS -f lirs --column 2 -c 2 "${loop}" STDERR "csv only")
# Data errors exit 1.
run("missing file" EXIT 1 ARGS -c 2 "${WORK_DIR}/nope.trace" STDERR "cannot open '.*nope.trace'")

# Compressed input by extension, and a corrupt one.
find_program(GZIP gzip)
if(GZIP)
  execute_process(COMMAND "${GZIP}" -c "${loop}" OUTPUT_FILE "${WORK_DIR}/loopz.trace.gz")
  run(".gz through gzip -dc" EXIT 0 ARGS --csv -q -c 4 "${WORK_DIR}/loopz.trace.gz"
    STDOUT "\nloopz,lru,4,1,12,8,66.67\n")
  file(COPY_FILE "${loop}" "${WORK_DIR}/fake.trace.gz")
  run("corrupt .gz" EXIT 1 ARGS -q -c 4 "${WORK_DIR}/fake.trace.gz" STDERR "'gzip -dc' failed")
else()
  message(STATUS "skip .gz tests: no gzip")
endif()

# The plot.
run("--plot writes an SVG" EXIT 0 ARGS -q -p lru,fifo --sweep 1:8:4 --plot "${WORK_DIR}/p.svg"
  "${loop}")
if(EXISTS "${WORK_DIR}/p.svg")
  file(READ "${WORK_DIR}/p.svg" svg)
  if(NOT svg MATCHES "<svg" OR NOT svg MATCHES "Hit ratio vs cache size: loop"
     OR NOT svg MATCHES ">fifo</text>")
    message(SEND_ERROR "FAIL p.svg lacks the title or a legend entry")
    math(EXPR failures "${failures} + 1")
  endif()
else()
  message(SEND_ERROR "FAIL --plot wrote no file")
  math(EXPR failures "${failures} + 1")
endif()
run("--plot to an unwritable path" EXIT 1 ARGS -q -c 4 --plot "${WORK_DIR}/no/such/dir/p.svg"
  "${loop}" STDERR "cannot write plot")
run("--plot needs one trace" EXIT 2 ARGS -c 4 --plot "${WORK_DIR}/x.svg" "${loop}" "${arc}"
  STDERR "--plot needs exactly one TRACE")

if(failures GREATER 0)
  message(FATAL_ERROR "${failures} cachet-sim CLI checks failed")
endif()
