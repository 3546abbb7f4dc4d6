# Installs the npm packages of a test folder into a build folder (a CTest setup test,
# tests/CMakeLists.txt): cmake -DNPM=... -DSRC=folder -DDEST=folder -P npm_ci.cmake. SRC holds
# package.json and package-lock.json; `npm ci` installs exactly the lock's versions into
# DEST/node_modules, and runs again only when the lock changed.
file(MAKE_DIRECTORY "${DEST}")
set(stamp "${DEST}/node_modules/.mmc-lock")
file(SHA256 "${SRC}/package-lock.json" want)
if(EXISTS "${stamp}")
  file(READ "${stamp}" have)
  if(have STREQUAL want)
    return()
  endif()
endif()
configure_file("${SRC}/package.json" "${DEST}/package.json" COPYONLY)
configure_file("${SRC}/package-lock.json" "${DEST}/package-lock.json" COPYONLY)
execute_process(COMMAND "${NPM}" ci --no-audit --no-fund --loglevel=error
  WORKING_DIRECTORY "${DEST}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "npm ci in ${DEST} failed (${status}): the zarr v3 cross-check needs "
    "zarrita from the npm registry")
endif()
file(WRITE "${stamp}" "${want}")
