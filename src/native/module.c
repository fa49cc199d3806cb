/*
 * pve-nat's own addon, the calls the daemon needs and Node does not expose: drop()
 * (pagedrop.c), statBatch()/statMany() (statmany.c), spawn() (spawn.c), tablesToken()
 * (tables.c), addrWatch()/addrChanged() (addrwatch.c) and abstractListeners() (unixlisten.c). Built by packaging/native.mjs against Node-API (node-api-headers), so one build
 * loads in any Node ≥ 20; embedded in the single executable like the zeromq addon
 * (src/native/addon.ts).
 */
#include "native.h"

static int add(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) != napi_ok) return 0;
  return napi_set_named_property(env, exports, name, fn) == napi_ok;
}

NAPI_MODULE_INIT() {
  if (!add(env, exports, "drop", Drop) || !add(env, exports, "statBatch", StatBatch) ||
      !add(env, exports, "statMany", StatMany) || !add(env, exports, "spawn", Spawn) ||
      !add(env, exports, "tablesToken", TablesToken) ||
      !add(env, exports, "addrWatch", AddrWatch) || !add(env, exports, "addrChanged", AddrChanged) ||
      !add(env, exports, "abstractListeners", AbstractListeners))
    return NULL;
  return exports;
}
