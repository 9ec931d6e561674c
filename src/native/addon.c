/* drvbox-native.node: the few system calls Node lacks that every build
 * needs (flock for path locks, the xattr pair for canonicalisation), as a
 * Node-API addon. koffi does the same, but loading it costs ~10 ms at the
 * start of every build command; this loads in ~1 ms.
 *
 * Built by backends/linux/build-launcher.mjs with the system C compiler and
 * no Node headers: the declarations below are the stable Node-API ABI (the
 * functions resolve against the node binary when the addon is loaded).
 * Every function returns a result or a negative errno; it never throws. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/xattr.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok is 0 */
typedef napi_value (*napi_callback)(napi_env, napi_callback_info);

extern napi_status napi_get_cb_info(napi_env, napi_callback_info, size_t *, napi_value *, napi_value *, void **);
extern napi_status napi_get_value_int32(napi_env, napi_value, int32_t *);
extern napi_status napi_get_value_string_utf8(napi_env, napi_value, char *, size_t, size_t *);
extern napi_status napi_create_int32(napi_env, int32_t, napi_value *);
extern napi_status napi_create_string_latin1(napi_env, const char *, size_t, napi_value *);
extern napi_status napi_create_array_with_length(napi_env, size_t, napi_value *);
extern napi_status napi_set_element(napi_env, napi_value, uint32_t, napi_value);
extern napi_status napi_create_function(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
extern napi_status napi_set_named_property(napi_env, napi_value, const char *, napi_value);

static napi_value int_value(napi_env env, int32_t v) {
  napi_value out = NULL;
  napi_create_int32(env, v, &out);
  return out;
}

/* Argument i as a NUL-terminated UTF-8 string (malloc'd), or NULL. */
static char *string_arg(napi_env env, napi_value v) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != 0) return NULL;
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (napi_get_value_string_utf8(env, v, s, n + 1, &n) != 0 || strlen(s) != n) {
    free(s); /* an embedded NUL would name another file */
    return NULL;
  }
  return s;
}

/* flock(fd, op) -> 0 or -errno (EINTR retried). */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1, op = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != 0 || napi_get_value_int32(env, argv[1], &op) != 0)
    return int_value(env, -EINVAL);
  int r;
  do r = flock(fd, op);
  while (r < 0 && errno == EINTR);
  return int_value(env, r < 0 ? -errno : 0);
}

/* llistxattr(path) -> array of names (latin1, as the kernel gives bytes) or -errno. */
static napi_value js_list_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 1) return int_value(env, -EINVAL);
  char *path = string_arg(env, argv[0]);
  if (!path) return int_value(env, -EINVAL);
  char *buf = NULL;
  ssize_t got;
  for (;;) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) {
      got = -errno;
      break;
    }
    char *b = realloc(buf, size ? (size_t)size : 1);
    if (!b) {
      got = -ENOMEM;
      break;
    }
    buf = b;
    got = size ? llistxattr(path, buf, (size_t)size) : 0;
    if (got < 0 && errno == ERANGE) continue; /* grew meanwhile */
    if (got < 0) got = -errno;
    break;
  }
  free(path);
  if (got < 0) {
    free(buf);
    return int_value(env, (int32_t)got);
  }
  napi_value arr = NULL;
  napi_create_array_with_length(env, 0, &arr);
  uint32_t i = 0;
  for (ssize_t at = 0; at < got;) {
    size_t len = strnlen(buf + at, (size_t)(got - at));
    if (len) {
      napi_value name = NULL;
      napi_create_string_latin1(env, buf + at, len, &name);
      napi_set_element(env, arr, i++, name);
    }
    at += (ssize_t)len + 1;
  }
  free(buf);
  return arr;
}

/* lremovexattr(path, name) -> 0 or -errno. */
static napi_value js_remove_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 2) return int_value(env, -EINVAL);
  char *path = string_arg(env, argv[0]);
  char *name = path ? string_arg(env, argv[1]) : NULL;
  int r = path && name ? lremovexattr(path, name) : -1;
  int e = path && name ? errno : EINVAL;
  free(path);
  free(name);
  return int_value(env, r < 0 ? -e : 0);
}

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value f = NULL;
  if (napi_create_function(env, name, (size_t)-1, cb, NULL, &f) == 0) napi_set_named_property(env, exports, name, f);
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  export_fn(env, exports, "flock", js_flock);
  export_fn(env, exports, "listXattrs", js_list_xattrs);
  export_fn(env, exports, "removeXattr", js_remove_xattr);
  return exports;
}
