/*
 * The library's kernel objects: WnvOpen handles and events live in one table
 * of reference-counted objects, so a HANDLE is a checked index, never a
 * pointer: a stale, closed or foreign handle fails with ERROR_INVALID_HANDLE
 * instead of being dereferenced.
 *
 * One mutex (wnv_mu) guards the table and every object's state, and one
 * condition variable is broadcast on every change that a waiter may await
 * (an event set, a request completed). Notifications are rare enough that
 * waking every waiter costs nothing, and it makes waiting on several objects
 * of different kinds (WaitForMultipleObjects) a simple loop.
 */
#ifndef WNV_HANDLES_H
#define WNV_HANDLES_H

#include "wnvapi.h"

#include <pthread.h>
#include <time.h>

#pragma GCC visibility push(hidden)

enum object_kind { KIND_EVENT = 1, KIND_WNV };

struct object {
    enum object_kind kind;
    unsigned refs;  /* the table's, plus one per holder that may drop wnv_mu */
    BOOL manual;    /* stays signalled until reset (a WnvOpen handle always does) */
    BOOL signalled;
};

extern pthread_mutex_t wnv_mu;

/* Records code as the calling thread's last error and returns FALSE. */
BOOL wnv_fail(DWORD code);

/* Puts o (with refs = 1) in the table; NULL with the last error set if full. */
HANDLE wnv_insert(struct object *o);
/* wnv_mu held: h's object, with a reference for the caller, or NULL if h is
 * not an open handle of kind (0: any kind). */
struct object *wnv_get(HANDLE h, enum object_kind kind);
/* wnv_mu held: drops a reference; the last one destroys the object. */
void wnv_put(struct object *o);
/* wnv_mu held: signals o and wakes every waiter. */
void wnv_signal(struct object *o);
/* wnv_mu held: sleeps until the next broadcast or the deadline (NULL: none);
 * 0 on wake-up, ETIMEDOUT after the deadline. */
int wnv_wait(const struct timespec *deadline);

/* Implemented by wnvapi.c for its handles: closing (wnv_mu not held) ends
 * the connection and completes the requests in flight; destroying (wnv_mu
 * held) frees it. */
void wnv_handle_close(struct object *o);
void wnv_handle_destroy(struct object *o);

#pragma GCC visibility pop

#endif /* WNV_HANDLES_H */
