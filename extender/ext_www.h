/* keyless-extender: the verification page for people (docs/operations.md "The verification
 * page"), on the service port next to the PDUs:
 *   GET /verify                 verify.html
 *   GET /verify/verify.css, /verify/verify.js, /verify/ksi.js   its assets
 * The files (extender/www) are compiled into the binary (www/embed.cmake), so an installed
 * extender needs no path. Every answer carries a strict Content-Security-Policy (scripts and
 * styles from this origin only, connect-src 'none': the page sends nothing) and is cacheable
 * for an hour. Another /verify/ path: 404. */
#ifndef KL_EXT_WWW_H
#define KL_EXT_WWW_H

#include <stdbool.h>

#include "keyless/net.h"

/* Whether path is /verify or under /verify/: then ext_www_get answers it. */
bool ext_www_path(const char *path);
void ext_www_get(kl_http_req_t *req, const char *path);

#endif
