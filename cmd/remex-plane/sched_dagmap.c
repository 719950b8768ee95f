/*
 * The cached DAGs by dag_id: a chained hash table beside sched.dags (the list
 * stays the order of iteration), so that finding a DAG - every assignment,
 * report, upload and admin view does - costs the same with 10,000 DAGs as
 * with one.
 *
 * Invariant: every sdag on sched.dags is in exactly one bucket chain (through
 * its hnext) and no other is; a DAG is linked on the list before sdmap_put
 * and unlinked around sdmap_del. Growing the table doubles it at a load of 1,
 * rebuilt from the list; when that allocation fails the chains just get
 * longer (still correct). Without any table (its first allocation failed)
 * lookups walk the list.
 */
#include <stdlib.h>
#include <string.h>

#include "sched.h"

#define SDMAP_MIN 64

/* FNV-1a, 64 bits. */
static uint64_t sdmap_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* A table of twice the size, rebuilt from s->dags (which every cached DAG
 * is on, the one being added included); 0 when the allocation failed. */
static int sdmap_grow(struct sched *s)
{
    size_t cap = s->dag_cap ? s->dag_cap * 2 : SDMAP_MIN;
    struct sdag **tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return 0;
    s->ndags = 0;
    for (struct sdag *d = s->dags; d; d = d->next) {
        size_t b = sdmap_hash(d->dag->dag_id) & (cap - 1);
        d->hnext = tab[b];
        tab[b] = d;
        s->ndags++;
    }
    free(s->dag_tab);
    s->dag_tab = tab;
    s->dag_cap = cap;
    return 1;
}

void sdmap_put(struct sched *s, struct sdag *d)
{
    if (s->ndags >= s->dag_cap && sdmap_grow(s))
        return; /* d was on the list: it is in the new table */
    s->ndags++;
    d->hnext = NULL;
    if (!s->dag_tab)
        return;
    size_t b = sdmap_hash(d->dag->dag_id) & (s->dag_cap - 1);
    d->hnext = s->dag_tab[b];
    s->dag_tab[b] = d;
}

void sdmap_del(struct sched *s, struct sdag *d)
{
    s->ndags--;
    if (!s->dag_tab)
        return;
    size_t b = sdmap_hash(d->dag->dag_id) & (s->dag_cap - 1);
    for (struct sdag **pp = &s->dag_tab[b]; *pp; pp = &(*pp)->hnext)
        if (*pp == d) {
            *pp = d->hnext;
            d->hnext = NULL;
            return;
        }
}

struct sdag *sdmap_get(struct sched *s, const char *dag_id)
{
    if (!s->dag_tab) {
        for (struct sdag *d = s->dags; d; d = d->next)
            if (strcmp(d->dag->dag_id, dag_id) == 0)
                return d;
        return NULL;
    }
    size_t b = sdmap_hash(dag_id) & (s->dag_cap - 1);
    for (struct sdag *d = s->dag_tab[b]; d; d = d->hnext)
        if (strcmp(d->dag->dag_id, dag_id) == 0)
            return d;
    return NULL;
}

void sdmap_free(struct sched *s)
{
    free(s->dag_tab);
    s->dag_tab = NULL;
    s->dag_cap = s->ndags = 0;
}
