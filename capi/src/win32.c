/*
 * The Win32 handle, event and wait calls of wnv_win32compat.h over the
 * object table of handles.h.
 */
#include "handles.h"

#include <errno.h>
#include <stdlib.h>

pthread_mutex_t wnv_mu = PTHREAD_MUTEX_INITIALIZER;

/* Monotonic, so a wait's timeout ignores changes of the wall clock; set up
 * by the first wnv_insert, before any object exists to wait on. */
static pthread_cond_t cond;
static pthread_once_t cond_once = PTHREAD_ONCE_INIT;

static __thread DWORD last_error;

DWORD WINAPI GetLastError(void) { return last_error; }

BOOL wnv_fail(DWORD code)
{
    last_error = code;
    return FALSE;
}

/* A HANDLE is (generation << 32) | (index + 1) << 2: never NULL, never
 * INVALID_HANDLE_VALUE, and a slot's reuse changes its generation. */
struct entry {
    struct object *obj; /* NULL when free */
    uint32_t gen;
    uint32_t next_free; /* index + 1 of the next free slot, 0 at the end */
};

static struct entry *table;
static uint32_t table_len, table_cap, free_head;

#define MAX_HANDLES (1u << 24)

static void init_cond(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &a);
    pthread_condattr_destroy(&a);
}

HANDLE wnv_insert(struct object *o)
{
    pthread_once(&cond_once, init_cond);
    pthread_mutex_lock(&wnv_mu);
    uint32_t i;
    if (free_head != 0) {
        i = free_head - 1;
        free_head = table[i].next_free;
    } else {
        if (table_len == table_cap) {
            uint32_t cap = table_cap ? 2 * table_cap : 64;
            struct entry *t = cap <= MAX_HANDLES ? realloc(table, cap * sizeof *t) : NULL;
            if (t == NULL) {
                pthread_mutex_unlock(&wnv_mu);
                wnv_fail(ERROR_NOT_ENOUGH_MEMORY);
                return NULL;
            }
            table = t;
            table_cap = cap;
        }
        i = table_len++;
        table[i].gen = 1;
    }
    table[i].obj = o;
    o->refs = 1;
    HANDLE h = (HANDLE)((uintptr_t)table[i].gen << 32 | (uintptr_t)(i + 1) << 2);
    pthread_mutex_unlock(&wnv_mu);
    return h;
}

/* The slot of an open handle, or NULL. */
static struct entry *lookup(HANDLE h)
{
    uintptr_t v = (uintptr_t)h;
    uint32_t i = (uint32_t)(v >> 2 & 0x3FFFFFFF) - 1;
    if ((v & 3) != 0 || i >= table_len || table[i].obj == NULL || table[i].gen != (uint32_t)(v >> 32))
        return NULL;
    return &table[i];
}

struct object *wnv_get(HANDLE h, enum object_kind kind)
{
    struct entry *e = lookup(h);
    if (e == NULL || (kind != 0 && e->obj->kind != kind))
        return NULL;
    e->obj->refs++;
    return e->obj;
}

void wnv_put(struct object *o)
{
    if (--o->refs > 0)
        return;
    if (o->kind == KIND_WNV)
        wnv_handle_destroy(o);
    else
        free(o);
}

void wnv_signal(struct object *o)
{
    o->signalled = TRUE;
    pthread_cond_broadcast(&cond);
}

int wnv_wait(const struct timespec *deadline)
{
    if (deadline == NULL)
        return pthread_cond_wait(&cond, &wnv_mu);
    return pthread_cond_timedwait(&cond, &wnv_mu, deadline);
}

BOOL WINAPI CloseHandle(HANDLE h)
{
    pthread_mutex_lock(&wnv_mu);
    struct entry *e = lookup(h);
    if (e == NULL) {
        pthread_mutex_unlock(&wnv_mu);
        return wnv_fail(ERROR_INVALID_HANDLE);
    }
    /* Out of the table first, so no new call can use it; the table's
     * reference is now ours. */
    struct object *o = e->obj;
    e->obj = NULL;
    e->gen++;
    e->next_free = free_head;
    free_head = (uint32_t)(e - table) + 1;
    pthread_mutex_unlock(&wnv_mu);

    if (o->kind == KIND_WNV)
        wnv_handle_close(o);
    pthread_mutex_lock(&wnv_mu);
    wnv_put(o);
    pthread_mutex_unlock(&wnv_mu);
    return TRUE;
}

static HANDLE create_event(BOOL manual, BOOL initial, const void *name)
{
    if (name != NULL) {
        wnv_fail(ERROR_NOT_SUPPORTED);
        return NULL;
    }
    struct object *o = calloc(1, sizeof *o);
    if (o == NULL) {
        wnv_fail(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    o->kind = KIND_EVENT;
    o->manual = manual;
    o->signalled = initial;
    HANDLE h = wnv_insert(o);
    if (h == NULL)
        free(o);
    return h;
}

HANDLE WINAPI CreateEventA(LPSECURITY_ATTRIBUTES attrs, BOOL manual, BOOL initial, LPCSTR name)
{
    (void)attrs;
    return create_event(manual, initial, name);
}

HANDLE WINAPI CreateEventW(LPSECURITY_ATTRIBUTES attrs, BOOL manual, BOOL initial, LPCWSTR name)
{
    (void)attrs;
    return create_event(manual, initial, name);
}

static BOOL set_event(HANDLE h, BOOL signalled)
{
    pthread_mutex_lock(&wnv_mu);
    struct object *o = wnv_get(h, KIND_EVENT);
    if (o == NULL) {
        pthread_mutex_unlock(&wnv_mu);
        return wnv_fail(ERROR_INVALID_HANDLE);
    }
    if (signalled)
        wnv_signal(o);
    else
        o->signalled = FALSE;
    wnv_put(o);
    pthread_mutex_unlock(&wnv_mu);
    return TRUE;
}

BOOL WINAPI SetEvent(HANDLE h) { return set_event(h, TRUE); }

BOOL WINAPI ResetEvent(HANDLE h) { return set_event(h, FALSE); }

/* ready reports whether the wait is satisfied and, if so, consumes the
 * signals of auto-reset objects and sets *which; wnv_mu held. */
static BOOL ready(struct object **objs, DWORD n, BOOL all, DWORD *which)
{
    for (DWORD i = 0; i < n; i++) {
        if (all && !objs[i]->signalled)
            return FALSE;
        if (!all && objs[i]->signalled) {
            if (!objs[i]->manual)
                objs[i]->signalled = FALSE;
            *which = i;
            return TRUE;
        }
    }
    if (!all)
        return FALSE;
    for (DWORD i = 0; i < n; i++)
        if (!objs[i]->manual)
            objs[i]->signalled = FALSE;
    *which = 0;
    return TRUE;
}

DWORD WINAPI WaitForMultipleObjects(DWORD n, const HANDLE *handles, BOOL all, DWORD ms)
{
    if (n == 0 || n > MAXIMUM_WAIT_OBJECTS || handles == NULL) {
        wnv_fail(ERROR_INVALID_PARAMETER);
        return WAIT_FAILED;
    }
    struct timespec deadline;
    if (ms != INFINITE) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += ms / 1000;
        deadline.tv_nsec += (long)(ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    struct object *objs[MAXIMUM_WAIT_OBJECTS];
    DWORD got = 0, which = 0, rc = WAIT_TIMEOUT;
    pthread_mutex_lock(&wnv_mu);
    while (got < n && (objs[got] = wnv_get(handles[got], 0)) != NULL)
        got++;
    if (got < n) {
        wnv_fail(ERROR_INVALID_HANDLE);
        rc = WAIT_FAILED;
    } else {
        for (int err = 0;; err = wnv_wait(ms == INFINITE ? NULL : &deadline)) {
            if (ready(objs, n, all, &which)) {
                rc = WAIT_OBJECT_0 + which;
                break;
            }
            if (ms == 0 || err != 0)
                break;
        }
    }
    while (got > 0)
        wnv_put(objs[--got]);
    pthread_mutex_unlock(&wnv_mu);
    return rc;
}

DWORD WINAPI WaitForSingleObject(HANDLE h, DWORD ms) { return WaitForMultipleObjects(1, &h, FALSE, ms); }
