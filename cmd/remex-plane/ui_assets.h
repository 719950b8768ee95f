/*
 * The web UI's files, compiled into remex-plane: build/gen/ui_assets.c is
 * generated from cmd/remex-plane/ui/ by mk/ui-embed.py at build time. All data
 * is static and read-only.
 */
#ifndef REMEX_PLANE_UI_ASSETS_H
#define REMEX_PLANE_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
    const char *name;          /* file name under ui/ ("app.js") */
    const unsigned char *data; /* contents (index.html with @VERSION@ replaced) */
    size_t len;
    const char *content_type; /* "text/javascript; charset=utf-8", ... */
    const char *etag;         /* "\"<16 hex of its SHA-256>\"" */
};

/* Every file of ui/ but index.html, sorted by name; ui_nassets entries. */
extern const struct ui_asset ui_assets[];
extern const size_t ui_nassets;
/* index.html, served at "/" (it names the assets under /ui/<ui_version>/). */
extern const struct ui_asset ui_index;
/* 12 hex digits of the SHA-256 of every file: the assets' URL prefix, so that
 * a new build never serves stale cached files. */
extern const char ui_version[];

#endif
