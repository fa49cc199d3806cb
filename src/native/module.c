/*
 * pve-nat's own addon, the calls the daemon needs and Node does not expose: drop(),
 * exeLargeFolios() and evictExe() (pagedrop.c), statBatch()/statMany() (statmany.c),
 * readFile() (readfile.c), spawn() (spawn.c), tablesToken() (tables.c),
 * addrWatch()/addrChanged() (addrwatch.c), abstractListeners() (unixlisten.c),
 * pidfdOpen()/pidfdsRunning()/closeFd() (pidfd.c) and dirWatch()/dirChanged() (dirwatch.c). Built by
 * packaging/native.mjs against Node-API (node-api-headers), so one build loads in any Node ≥ 20;
 * embedded in the single executable like the zeromq addon (src/native/addon.ts).
 */
#include "native.h"

napi_value type_error(napi_env env, const char *why) {
  napi_throw_type_error(env, NULL, why);
  return NULL;
}

int get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= n;
}

int external_arg(napi_env env, napi_value v, void **out) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_external &&
         napi_get_value_external(env, v, out) == napi_ok;
}

static int add(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) != napi_ok) return 0;
  return napi_set_named_property(env, exports, name, fn) == napi_ok;
}

NAPI_MODULE_INIT() {
  if (!add(env, exports, "drop", Drop) || !add(env, exports, "evictExe", EvictExe) ||
      !add(env, exports, "exeLargeFolios", ExeLargeFolios) ||
      !add(env, exports, "statBatch", StatBatch) || !add(env, exports, "statMany", StatMany) ||
      !add(env, exports, "readFile", ReadFile) ||
      !add(env, exports, "spawn", Spawn) || !add(env, exports, "tablesToken", TablesToken) ||
      !add(env, exports, "addrWatch", AddrWatch) ||
      !add(env, exports, "addrChanged", AddrChanged) ||
      !add(env, exports, "abstractListeners", AbstractListeners) ||
      !add(env, exports, "pidfdOpen", PidfdOpen) ||
      !add(env, exports, "pidfdsRunning", PidfdsRunning) || !add(env, exports, "closeFd", CloseFd) ||
      !add(env, exports, "dirWatch", DirWatch) || !add(env, exports, "dirChanged", DirChanged))
    return NULL;
  return exports;
}
