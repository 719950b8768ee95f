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
 *
 * The due heap: a binary min-heap of the DAGs by heap_key, the wall time the
 * scheduler must look at a DAG again. Invariant: d->heap_pos is d's index in
 * sched.heap, or SIZE_MAX exactly when d is not in it; every parent's key is
 * at most its children's. A DAG freed is taken out first (sdag_free does).
 * When growing the array fails, the DAG stays out (logged) until it is
 * touched again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remex/log.h"
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

/* ---- the due heap ---- */

static void heap_place(struct sched *s, size_t i, struct sdag *d)
{
    s->heap[i] = d;
    d->heap_pos = i;
}

static void heap_up(struct sched *s, size_t i)
{
    struct sdag *d = s->heap[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (s->heap[up]->heap_key <= d->heap_key)
            break;
        heap_place(s, i, s->heap[up]);
        i = up;
    }
    heap_place(s, i, d);
}

static void heap_down(struct sched *s, size_t i)
{
    struct sdag *d = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && s->heap[c + 1]->heap_key < s->heap[c]->heap_key)
            c++;
        if (s->heap[c]->heap_key >= d->heap_key)
            break;
        heap_place(s, i, s->heap[c]);
        i = c;
    }
    heap_place(s, i, d);
}

static void heap_remove(struct sched *s, struct sdag *d)
{
    size_t i = d->heap_pos;
    d->heap_pos = SIZE_MAX;
    struct sdag *last = s->heap[--s->nheap];
    if (i == s->nheap)
        return;
    heap_place(s, i, last);
    heap_up(s, i);
    heap_down(s, last->heap_pos);
}

void sdheap_set(struct sched *s, struct sdag *d, int64_t key)
{
    int in = d->heap_pos != SIZE_MAX;
    if (key == INT64_MAX) {
        d->heap_key = INT64_MAX;
        if (in)
            heap_remove(s, d);
        return;
    }
    if (!in) {
        if (s->nheap == s->capheap) {
            size_t cap = s->capheap ? s->capheap * 2 : SDMAP_MIN;
            struct sdag **h = realloc(s->heap, cap * sizeof(*h));
            if (!h) {
                log_error("sched: out of memory: DAG %s left out of the due heap", d->dag->dag_id);
                d->heap_key = INT64_MAX;
                return;
            }
            s->heap = h;
            s->capheap = cap;
        }
        d->heap_key = key;
        heap_place(s, s->nheap++, d);
        heap_up(s, d->heap_pos);
        return;
    }
    int64_t old = d->heap_key;
    d->heap_key = key;
    if (key < old)
        heap_up(s, d->heap_pos);
    else if (key > old)
        heap_down(s, d->heap_pos);
}

struct sdag *sdheap_top(const struct sched *s)
{
    return s->nheap ? s->heap[0] : NULL;
}

void sdheap_free(struct sched *s)
{
    for (size_t i = 0; i < s->nheap; i++)
        s->heap[i]->heap_pos = SIZE_MAX;
    free(s->heap);
    s->heap = NULL;
    s->nheap = s->capheap = 0;
}
