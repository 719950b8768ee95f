/* remex version, used in User-Agent strings and registration. */
#ifndef REMEX_VERSION_H
#define REMEX_VERSION_H

#define REMEX_VERSION "0.1.0"

#endif
