/* pve-nat's own Node-API addon: what the daemon needs and Node does not expose (issue 10).
 * Each function lives in the file named for it; module.c registers them. */
#ifndef PVE_NAT_NATIVE_H
#define PVE_NAT_NATIVE_H
#include <node_api.h>

/* Argument checks every function shares (module.c). */
/* Throws a TypeError saying what was expected; returns NULL for the caller to return. */
napi_value type_error(napi_env env, const char *why);
/* Fills argv with the first n arguments; 0 when there are fewer. */
int get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv);
/* The pointer an external (made by one of our functions) holds; 0 when v is not one. */
int external_arg(napi_env env, napi_value v, void **out);

napi_value Drop(napi_env env, napi_callback_info info);     /* pagedrop.c */
napi_value EvictExe(napi_env env, napi_callback_info info); /* pagedrop.c */
napi_value ExeLargeFolios(napi_env env, napi_callback_info info); /* pagedrop.c */
napi_value StatBatch(napi_env env, napi_callback_info info); /* statmany.c */
napi_value StatMany(napi_env env, napi_callback_info info); /* statmany.c */
napi_value ReadFile(napi_env env, napi_callback_info info);  /* readfile.c */
napi_value TablesToken(napi_env env, napi_callback_info info); /* tables.c */
napi_value Spawn(napi_env env, napi_callback_info info);    /* spawn.c */
napi_value AddrWatch(napi_env env, napi_callback_info info); /* addrwatch.c */
napi_value AddrChanged(napi_env env, napi_callback_info info); /* addrwatch.c */
napi_value AbstractListeners(napi_env env, napi_callback_info info); /* unixlisten.c */
napi_value PidfdOpen(napi_env env, napi_callback_info info);     /* pidfd.c */
napi_value PidfdsRunning(napi_env env, napi_callback_info info); /* pidfd.c */
napi_value CloseFd(napi_env env, napi_callback_info info);       /* pidfd.c */
napi_value DirWatch(napi_env env, napi_callback_info info);      /* dirwatch.c */
napi_value DirChanged(napi_env env, napi_callback_info info);    /* dirwatch.c */

#endif
