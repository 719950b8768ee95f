/*
 * exit: the exit codes of every remex binary, in one place.
 *
 * A supervisor (remex-agent, systemd, Kubernetes) decides from them whether to
 * restart: REMEX_EXIT_CONFIG means that starting again cannot help (the
 * configuration is invalid, or the plane refused the agent token), so the role
 * is not restarted. docs/operations.md lists them for operators; remexctl has
 * its own documented codes (docs/remexctl.md), which reuse 0, 1 and 2 with the
 * same meaning.
 */
#ifndef REMEX_EXIT_H
#define REMEX_EXIT_H

#define REMEX_EXIT_OK     0   /* done: drained, stopped, or --once succeeded */
#define REMEX_EXIT_FAIL   1   /* runtime failure (or --once: the work did not succeed) */
#define REMEX_EXIT_USAGE  2   /* bad command line */
#define REMEX_EXIT_CONFIG 100 /* bad configuration or refused credentials: do not restart */

#endif
