/* pve-nat's own Node-API addon: what the daemon needs and Node does not expose (issue 10).
 * Each function lives in the file named for it; module.c registers them. */
#ifndef PVE_NAT_NATIVE_H
#define PVE_NAT_NATIVE_H
#include <node_api.h>

napi_value Drop(napi_env env, napi_callback_info info);     /* pagedrop.c */
napi_value StatBatch(napi_env env, napi_callback_info info); /* statmany.c */
napi_value StatMany(napi_env env, napi_callback_info info); /* statmany.c */
napi_value TablesToken(napi_env env, napi_callback_info info); /* tables.c */
napi_value Spawn(napi_env env, napi_callback_info info);    /* spawn.c */
napi_value AddrWatch(napi_env env, napi_callback_info info); /* addrwatch.c */
napi_value AddrChanged(napi_env env, napi_callback_info info); /* addrwatch.c */
napi_value AbstractListeners(napi_env env, napi_callback_info info); /* unixlisten.c */

#endif
