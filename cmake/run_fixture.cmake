# Runs a python fixture script into a fresh folder (a CTest setup test, tests/CMakeLists.txt):
# cmake -DPYTHON=... -DSCRIPT=... -DOUT=folder [-DCACHE=folder] -P run_fixture.cmake. The script
# gets the folder as its only argument; its stdout is kept as OUT/stdout.txt. OUT/complete marks
# success, so a test never reads the files of a run that failed half-way.
# With CACHE (MMC_FIXTURE_CACHE, which scripts/test.sh gives its Release and ASan builds alike),
# a script's output is kept there under its name and content hash, and a later build with the
# same script copies it instead of running the script again (the scripts are deterministic).
file(REMOVE_RECURSE "${OUT}")
if(CACHE)
  file(SHA256 "${SCRIPT}" hash)
  get_filename_component(stem "${SCRIPT}" NAME_WE)
  set(kept "${CACHE}/${stem}-${hash}")
  if(EXISTS "${kept}/complete")
    file(COPY "${kept}/" DESTINATION "${OUT}")
    return()
  endif()
endif()
file(MAKE_DIRECTORY "${OUT}")
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${OUT}" OUTPUT_FILE "${OUT}/stdout.txt"
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${SCRIPT} failed: ${status}")
endif()
file(TOUCH "${OUT}/complete")
if(CACHE)
  # Copied whole, then renamed: a build reading the cache never sees half of it.
  string(RANDOM LENGTH 8 tag)
  file(REMOVE_RECURSE "${kept}.${tag}")
  file(COPY "${OUT}/" DESTINATION "${kept}.${tag}")
  file(RENAME "${kept}.${tag}" "${kept}" RESULT renamed)
  file(REMOVE_RECURSE "${kept}.${tag}")
endif()
