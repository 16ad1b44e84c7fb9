/*
 * libwnvapi: the C client of wnvd's notification socket. The wire protocol
 * is described in docs/notify.md. One reader thread per handle receives
 * completions, fills the caller's buffers and signals their events; callers
 * never read the socket themselves. Handles, events and waits: win32.c.
 */
#include "handles.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/wnv/notify.sock"

enum {
    OP_REQUEST = 1,
    OP_CANCEL = 2,
    OP_HELLO = 0x80,
    OP_COMPLETION = 0x81,
    FRAME_HEADER = 12,
    REQUEST_FRAME = FRAME_HEADER + 12,
    COMPLETION_FRAME = FRAME_HEADER + 24,
    HELLO_FRAME = FRAME_HEADER + 16,
    MAX_SERVER_FRAME = 16 << 20,
    /* Address families travel in Windows' values. */
    WIRE_AF_INET = 2,
    WIRE_AF_INET6 = 23,
};

static const ULONG record_size[WnvNotificationTypeMax] = {
    sizeof(WNV_POLICY_MISMATCH_PARAM),
    sizeof(WNV_REDIRECT_PARAM),
    sizeof(WNV_OBJECT_CHANGE_PARAM),
};

struct slot {
    int busy;
    uint32_t id;
    PWNV_NOTIFICATION_PARAM param;
    LPOVERLAPPED ov;
    struct object *event; /* ov->hEvent's event, held until completion, or NULL */
};

/* Guarded by wnv_mu but for the socket, written under wmu. */
struct wnv_handle {
    struct object obj; /* first: the table holds &obj */
    int fd;
    pthread_t reader;
    pthread_mutex_t wmu;
    uint32_t next_id;
    int dead; /* the connection ended: no new requests */
    struct slot slots[WnvNotificationTypeMax];
    ULONGLONG dropped[WnvNotificationTypeMax];
};

static void put16(UCHAR *b, uint16_t v) { b[0] = (UCHAR)v; b[1] = (UCHAR)(v >> 8); }
static void put32(UCHAR *b, uint32_t v) { put16(b, (uint16_t)v); put16(b + 2, (uint16_t)(v >> 16)); }
static uint16_t get16(const UCHAR *b) { return (uint16_t)(b[0] | b[1] << 8); }
static uint32_t get32(const UCHAR *b) { return get16(b) | (uint32_t)get16(b + 2) << 16; }
static uint64_t get64(const UCHAR *b) { return get32(b) | (uint64_t)get32(b + 4) << 32; }

static void frame_header(UCHAR *b, uint32_t len, uint16_t op, uint32_t id)
{
    put32(b, len);
    put16(b + 4, op);
    put16(b + 6, 0);
    put32(b + 8, id);
}

static int read_full(int fd, void *p, size_t n)
{
    UCHAR *b = p;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_frame(struct wnv_handle *h, const UCHAR *b, size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&h->wmu);
    while (n > 0) {
        ssize_t w = send(h->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        b += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&h->wmu);
    return rc;
}

/* native_family rewrites a wire address family in place as the platform's
 * (Linux's AF_INET6 is 10), so callers compare it with AF_INET/AF_INET6. */
static void native_family(UCHAR *b)
{
    ADDRESS_FAMILY fam = get16(b);
    if (fam == WIRE_AF_INET)
        fam = AF_INET;
    else if (fam == WIRE_AF_INET6)
        fam = AF_INET6;
    memcpy(b, &fam, sizeof fam);
}

#define FAMILY(rec, type, field) native_family((rec) + offsetof(type, field))

static void native_families(WNV_NOTIFICATION_TYPE t, UCHAR *rec)
{
    switch (t) {
    case WnvPolicyMismatchType:
        FAMILY(rec, WNV_POLICY_MISMATCH_PARAM, CAFamily);
        FAMILY(rec, WNV_POLICY_MISMATCH_PARAM, PAFamily);
        break;
    case WnvRedirectType:
        FAMILY(rec, WNV_REDIRECT_PARAM, CAFamily);
        FAMILY(rec, WNV_REDIRECT_PARAM, PAFamily);
        FAMILY(rec, WNV_REDIRECT_PARAM, NewPAFamily);
        break;
    default:
        if (get32(rec) == WnvProviderAddressType) {
            FAMILY(rec, WNV_OBJECT_CHANGE_PARAM, ObjectParam.ProviderAddressChange.PAFamily);
        } else {
            FAMILY(rec, WNV_OBJECT_CHANGE_PARAM, ObjectParam.CustomerAddressChange.CAFamily);
            FAMILY(rec, WNV_OBJECT_CHANGE_PARAM, ObjectParam.CustomerAddressChange.PAFamily);
        }
    }
}

/* complete finishes a slot's request; wnv_mu is held. */
static void complete(struct wnv_handle *h, struct slot *s, ULONG status, ULONG bytes)
{
    LPOVERLAPPED ov = s->ov;
    s->busy = 0;
    ov->InternalHigh = bytes;
    ov->Internal = status;
    if (s->event != NULL) {
        wnv_signal(s->event);
        wnv_put(s->event);
        s->event = NULL;
    }
    wnv_signal(&h->obj);
}

static void *reader_main(void *arg)
{
    struct wnv_handle *h = arg;
    UCHAR *frame = NULL;
    size_t cap = 0;
    for (;;) {
        UCHAR lenb[4];
        if (read_full(h->fd, lenb, 4) < 0)
            break;
        uint32_t n = get32(lenb);
        if (n < COMPLETION_FRAME - 4 || n > MAX_SERVER_FRAME)
            break;
        if (n > cap) {
            UCHAR *nf = realloc(frame, n);
            if (nf == NULL)
                break;
            frame = nf;
            cap = n;
        }
        if (read_full(h->fd, frame, n) < 0)
            break;
        if (get16(frame) != OP_COMPLETION)
            break;
        uint32_t id = get32(frame + 4);
        ULONG status = get32(frame + 8);
        uint32_t type = get32(frame + 12);
        ULONG pending = get32(frame + 16);
        ULONG bytes = get32(frame + 20);
        UCHAR *recs = frame + COMPLETION_FRAME - 4;
        if (bytes != n - (COMPLETION_FRAME - 4))
            break;
        pthread_mutex_lock(&wnv_mu);
        if (type < WnvNotificationTypeMax && status != ERROR_INVALID_PARAMETER)
            h->dropped[type] = get64(frame + 24);
        for (int t = 0; t < WnvNotificationTypeMax; t++) {
            struct slot *s = &h->slots[t];
            if (!s->busy || s->id != id)
                continue;
            if (bytes > s->param->Header.Size)
                bytes = s->param->Header.Size - s->param->Header.Size % record_size[t];
            for (ULONG off = 0; off + record_size[t] <= bytes; off += record_size[t])
                native_families((WNV_NOTIFICATION_TYPE)t, recs + off);
            memcpy(s->param->Buffer, recs, bytes);
            s->param->PendingNotifications = pending;
            complete(h, s, status, status == ERROR_SUCCESS ? bytes : 0);
            break;
        }
        pthread_mutex_unlock(&wnv_mu);
    }
    free(frame);
    pthread_mutex_lock(&wnv_mu);
    for (int t = 0; t < WnvNotificationTypeMax; t++)
        if (h->slots[t].busy)
            complete(h, &h->slots[t], ERROR_OPERATION_ABORTED, 0);
    h->dead = 1;
    pthread_mutex_unlock(&wnv_mu);
    return NULL;
}

static int connect_socket(void)
{
    const char *path = getenv("WNV_NOTIFY_SOCKET");
    if (path == NULL || *path == '\0')
        path = DEFAULT_SOCKET;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 5};
    UCHAR hello[HELLO_FRAME];
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        read_full(fd, hello, sizeof hello) < 0 ||
        get32(hello) != HELLO_FRAME - 4 || get16(hello + 4) != OP_HELLO ||
        hello[12] != WNV_API_MAJOR_VERSION_1) {
        close(fd);
        return -1;
    }
    tv.tv_sec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

HANDLE WINAPI WnvOpen(void)
{
    struct wnv_handle *h = calloc(1, sizeof *h);
    if (h == NULL) {
        wnv_fail(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    h->obj.kind = KIND_WNV;
    h->obj.manual = TRUE;
    h->fd = connect_socket();
    if (h->fd < 0) {
        free(h);
        wnv_fail(ERROR_OPEN_FAILED);
        return NULL;
    }
    pthread_mutex_init(&h->wmu, NULL);
    if (pthread_create(&h->reader, NULL, reader_main, h) != 0) {
        close(h->fd);
        pthread_mutex_destroy(&h->wmu);
        free(h);
        wnv_fail(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    HANDLE hh = wnv_insert(&h->obj);
    if (hh == NULL) {
        wnv_handle_close(&h->obj);
        wnv_handle_destroy(&h->obj);
    }
    return hh;
}

void wnv_handle_close(struct object *o)
{
    struct wnv_handle *h = (struct wnv_handle *)o;
    shutdown(h->fd, SHUT_RDWR);
    pthread_join(h->reader, NULL); /* it completes what is in flight with 995 */
}

void wnv_handle_destroy(struct object *o)
{
    struct wnv_handle *h = (struct wnv_handle *)o;
    close(h->fd);
    pthread_mutex_destroy(&h->wmu);
    free(h);
}

/* handle returns hh's connection with a reference, locking wnv_mu; NULL
 * (unlocked) if hh is not an open WnvOpen handle. */
static struct wnv_handle *handle(HANDLE hh)
{
    pthread_mutex_lock(&wnv_mu);
    struct object *o = wnv_get(hh, KIND_WNV);
    if (o == NULL)
        pthread_mutex_unlock(&wnv_mu);
    return (struct wnv_handle *)o;
}

/* release drops handle's reference and lock. */
static void release(struct wnv_handle *h)
{
    wnv_put(&h->obj);
    pthread_mutex_unlock(&wnv_mu);
}

/* result returns o's outcome like GetOverlappedResult, waiting for its
 * completion if asked; wnv_mu is held. */
static BOOL result(LPOVERLAPPED o, DWORD *bytes, BOOL wait)
{
    while (wait && o->Internal == STATUS_PENDING)
        wnv_wait(NULL);
    if (o->Internal == STATUS_PENDING)
        return wnv_fail(ERROR_IO_INCOMPLETE);
    if (bytes != NULL)
        *bytes = (DWORD)o->InternalHigh;
    if (o->Internal != ERROR_SUCCESS)
        return wnv_fail((DWORD)o->Internal);
    return TRUE;
}

BOOL WINAPI GetOverlappedResult(HANDLE hh, LPOVERLAPPED ov, LPDWORD bytes, BOOL wait)
{
    if (ov == NULL)
        return wnv_fail(ERROR_INVALID_PARAMETER);
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return wnv_fail(ERROR_INVALID_HANDLE);
    BOOL ok = result(ov, bytes, wait);
    release(h);
    return ok;
}

DWORD WINAPI WnvRequestNotification(HANDLE hh, PWNV_NOTIFICATION_PARAM param, LPOVERLAPPED ov,
                                    PULONG bytesTransferred)
{
    if (param == NULL || param->Buffer == NULL ||
        param->Header.MajorVersion != WNV_API_MAJOR_VERSION_1 ||
        param->Header.MinorVersion != WNV_API_MINOR_VERSION_0 ||
        (unsigned)param->NotificationType >= WnvNotificationTypeMax ||
        param->Header.Size < record_size[param->NotificationType])
        return ERROR_INVALID_PARAMETER;
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return ERROR_INVALID_HANDLE;

    OVERLAPPED sync;
    memset(&sync, 0, sizeof sync);
    LPOVERLAPPED o = ov != NULL ? ov : &sync;
    struct slot *s = &h->slots[param->NotificationType];
    struct object *event = NULL;
    DWORD err = ERROR_SUCCESS;
    if (s->busy)
        err = ERROR_INVALID_PARAMETER;
    else if (h->dead)
        err = ERROR_OPERATION_ABORTED;
    else if (o->hEvent != NULL && (event = wnv_get(o->hEvent, KIND_EVENT)) == NULL)
        err = ERROR_INVALID_HANDLE;
    if (err != ERROR_SUCCESS) {
        release(h);
        return err;
    }
    /* As on Windows, starting I/O resets its event and the file handle. */
    if (event != NULL)
        event->signalled = FALSE;
    h->obj.signalled = FALSE;
    o->Internal = STATUS_PENDING;
    o->InternalHigh = 0;
    s->busy = 1;
    s->id = ++h->next_id;
    s->param = param;
    s->ov = o;
    s->event = event;
    UCHAR f[REQUEST_FRAME] = {0};
    frame_header(f, REQUEST_FRAME - 4, OP_REQUEST, s->id);
    pthread_mutex_unlock(&wnv_mu);

    f[12] = param->Header.MajorVersion;
    f[13] = param->Header.MinorVersion;
    put32(f + 16, param->Header.Size);
    put32(f + 20, (uint32_t)param->NotificationType);
    if (write_frame(h, f, sizeof f) < 0)
        shutdown(h->fd, SHUT_RDWR); /* the reader completes it with 995 */

    pthread_mutex_lock(&wnv_mu);
    if (ov != NULL) {
        release(h);
        return ERROR_IO_PENDING;
    }
    DWORD n = 0;
    if (!result(&sync, &n, TRUE))
        err = GetLastError();
    if (bytesTransferred != NULL)
        *bytesTransferred = n;
    release(h);
    return err;
}

BOOL WINAPI CancelIoEx(HANDLE hh, LPOVERLAPPED ov)
{
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return wnv_fail(ERROR_INVALID_HANDLE);
    uint32_t ids[WnvNotificationTypeMax];
    int n = 0;
    for (int t = 0; t < WnvNotificationTypeMax; t++)
        if (h->slots[t].busy && (ov == NULL || h->slots[t].ov == ov))
            ids[n++] = h->slots[t].id;
    pthread_mutex_unlock(&wnv_mu);
    for (int i = 0; i < n; i++) {
        UCHAR f[FRAME_HEADER];
        frame_header(f, FRAME_HEADER - 4, OP_CANCEL, ids[i]);
        if (write_frame(h, f, sizeof f) < 0)
            shutdown(h->fd, SHUT_RDWR);
    }
    pthread_mutex_lock(&wnv_mu);
    release(h);
    return n > 0 ? TRUE : wnv_fail(ERROR_NOT_FOUND);
}

DWORD WINAPI WnvGetDroppedNotifications(HANDLE hh, WNV_NOTIFICATION_TYPE type, ULONGLONG *dropped)
{
    if ((unsigned)type >= WnvNotificationTypeMax || dropped == NULL)
        return ERROR_INVALID_PARAMETER;
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return ERROR_INVALID_HANDLE;
    *dropped = h->dropped[type];
    release(h);
    return ERROR_SUCCESS;
}
