// Path guard for wasmgate, in C: answers requests whose path starts with a
// denied prefix (e.g. `/admin`, `/.git`) itself, with a JSON error and a
// configurable status, before they reach the upstream.
//
// Config: {"deny": ["/admin", "/.git"], "status": 404}. The parser below reads
// only that shape (an object with a string list and a number), which keeps
// the plugin free of a JSON library.

#include "plugin.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PREFIXES 64

static char *prefixes[MAX_PREFIXES];
static size_t prefix_count;
static uint16_t deny_status = 404;

// No stdio: it would pull WASI file descriptors into a plugin that needs none.
static void fail(plugin_string_t *err, const char *message) {
    static const char tag[] = "c-path-guard: ";
    size_t n = strlen(message);
    err->len = sizeof tag - 1 + n;
    err->ptr = malloc(err->len);
    memcpy(err->ptr, tag, sizeof tag - 1);
    memcpy(err->ptr + sizeof tag - 1, message, n);
}

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

// Reads a JSON string without escapes at `p` (after the quote) into a new buffer.
static const char *read_string(const char *p, char **out) {
    const char *end = strchr(p, '"');
    if (end == NULL || memchr(p, '\\', (size_t)(end - p)) != NULL) return NULL;
    *out = strndup(p, (size_t)(end - p));
    return end + 1;
}

static bool parse_config(const char *p, plugin_string_t *err) {
    p = skip_space(p);
    if (*p == '\0') return true;
    if (*p++ != '{') return fail(err, "config must be an object"), false;
    for (p = skip_space(p); *p != '}';) {
        char *key = NULL;
        if (*p != '"' || (p = read_string(p + 1, &key)) == NULL) {
            return fail(err, "expected a field name"), false;
        }
        p = skip_space(p);
        if (*p++ != ':') return free(key), fail(err, "expected `:` after a field name"), false;
        p = skip_space(p);
        if (strcmp(key, "deny") == 0) {
            if (*p++ != '[') return free(key), fail(err, "`deny` must be a list of path prefixes"), false;
            for (p = skip_space(p); *p != ']';) {
                char *prefix = NULL;
                if (*p != '"' || (p = read_string(p + 1, &prefix)) == NULL || prefix[0] != '/') {
                    free(prefix);
                    return free(key), fail(err, "`deny` entries must be strings starting with /"), false;
                }
                if (prefix_count == MAX_PREFIXES) {
                    free(prefix);
                    return free(key), fail(err, "`deny` has more than 64 entries"), false;
                }
                prefixes[prefix_count++] = prefix;
                p = skip_space(p);
                if (*p == ',') p = skip_space(p + 1);
            }
            p++;
        } else if (strcmp(key, "status") == 0) {
            char *end;
            long status = strtol(p, &end, 10);
            if (end == p || status < 400 || status > 599) {
                return free(key), fail(err, "`status` must be a number from 400 to 599"), false;
            }
            deny_status = (uint16_t)status;
            p = end;
        } else {
            return free(key), fail(err, "unknown field, expected `deny` or `status`"), false;
        }
        free(key);
        p = skip_space(p);
        if (*p == ',') p = skip_space(p + 1);
        else if (*p != '}') return fail(err, "expected `,` or `}`"), false;
    }
    return true;
}

bool exports_wasmgate_plugin_handler_init(plugin_string_t *config,
                                          exports_wasmgate_plugin_handler_plugin_info_t *ret,
                                          plugin_string_t *err) {
    char *text = strndup((const char *)config->ptr, config->len);
    plugin_string_free(config);
    bool ok = parse_config(text, err);
    free(text);
    ret->wants_request_body = false;
    ret->wants_response = false;
    ret->wants_response_body = false;
    return ok;
}

bool exports_wasmgate_plugin_handler_header_interest(plugin_list_string_t *ret) {
    // Reads no header at all.
    ret->ptr = NULL;
    ret->len = 0;
    return true;
}

static bool denied(const plugin_string_t *path) {
    for (size_t i = 0; i < prefix_count; i++) {
        size_t n = strlen(prefixes[i]);
        if (path->len >= n && memcmp(path->ptr, prefixes[i], n) == 0 &&
            (path->len == n || prefixes[i][n - 1] == '/' || path->ptr[n] == '/')) {
            return true;
        }
    }
    return false;
}

static void header(plugin_tuple2_string_string_t *h, const char *name, const char *value) {
    plugin_string_dup(&h->f0, name);
    plugin_string_dup(&h->f1, value);
}

void exports_wasmgate_plugin_handler_on_request(exports_wasmgate_plugin_handler_request_t *request,
                                                exports_wasmgate_plugin_handler_request_action_t *ret) {
    memset(ret, 0, sizeof *ret);
    if (!denied(&request->path)) {
        ret->tag = WASMGATE_PLUGIN_TYPES_REQUEST_ACTION_CONTINUE;
    } else {
        ret->tag = WASMGATE_PLUGIN_TYPES_REQUEST_ACTION_RESPOND;
        exports_wasmgate_plugin_handler_response_t *response = &ret->val.respond;
        response->status = deny_status;
        response->headers.len = 1;
        response->headers.ptr = malloc(sizeof(plugin_tuple2_string_string_t));
        header(&response->headers.ptr[0], "content-type", "application/json");
        static const char body[] = "{\"error\":\"this path is not served\",\"code\":\"path_denied\"}";
        response->body.is_some = true;
        response->body.val.len = sizeof body - 1;
        response->body.val.ptr = malloc(sizeof body - 1);
        memcpy(response->body.val.ptr, body, sizeof body - 1);
        plugin_string_t name;
        plugin_string_set(&name, "path_guard_denied_total");
        plugin_list_tuple2_string_string_t labels = {NULL, 0};
        wasmgate_plugin_metrics_counter_add(&name, 1, &labels);
    }
    exports_wasmgate_plugin_handler_request_free(request);
}

void exports_wasmgate_plugin_handler_on_response(exports_wasmgate_plugin_handler_response_t *response,
                                                 exports_wasmgate_plugin_handler_response_changes_t *ret) {
    // Never called: init says `wants_response: false`.
    exports_wasmgate_plugin_handler_response_free(response);
    memset(ret, 0, sizeof *ret);
}
