# Runs a python fixture script into a fresh folder (a CTest setup test, tests/CMakeLists.txt):
# cmake -DPYTHON=... -DSCRIPT=... -DOUT=folder -P run_fixture.cmake. The script gets the folder
# as its only argument; its stdout is kept as OUT/stdout.txt. OUT/complete marks success, so a
# test never reads the files of a run that failed half-way.
file(REMOVE_RECURSE "${OUT}")
file(MAKE_DIRECTORY "${OUT}")
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${OUT}" OUTPUT_FILE "${OUT}/stdout.txt"
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${SCRIPT} failed: ${status}")
endif()
file(TOUCH "${OUT}/complete")
