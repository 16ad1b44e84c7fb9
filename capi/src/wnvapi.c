/*
 * libwnvapi: the C client of wnvd's notification socket. The wire protocol
 * is described in docs/notify.md. One reader thread per handle receives
 * completions, fills the caller's buffers and signals their events; callers
 * never read the socket themselves.
 */
#include "wnvapi.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/wnv/notify.sock"
#define HANDLE_MAGIC 0x574e5648u /* "WNVH" */

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
};

struct wnv_handle {
    uint32_t magic;
    int fd;
    pthread_t reader;
    pthread_mutex_t mu;    /* slots, next_id, dropped, OVERLAPPED results */
    pthread_cond_t cond;   /* broadcast on every completion */
    pthread_mutex_t wmu;   /* socket writes */
    uint32_t next_id;
    int dead;  /* the connection ended: no new requests */
    int users; /* threads inside GetOverlappedResult; CloseHandle waits for them */
    struct slot slots[WnvNotificationTypeMax];
    ULONGLONG dropped[WnvNotificationTypeMax];
};

static __thread ULONG last_error;

ULONG GetLastError(void) { return last_error; }

static BOOL fail(ULONG code)
{
    last_error = code;
    return FALSE;
}

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

/* complete finishes a slot's request; h->mu is held. */
static void complete(struct wnv_handle *h, struct slot *s, ULONG status, ULONG bytes)
{
    LPOVERLAPPED ov = s->ov;
    s->busy = 0;
    ov->InternalHigh = bytes;
    ov->Internal = status;
    if (ov->hEvent >= 0) {
        uint64_t one = 1;
        ssize_t w = write(ov->hEvent, &one, sizeof one);
        (void)w; /* a full or closed eventfd cannot be reported to anyone */
    }
    pthread_cond_broadcast(&h->cond);
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
        if (bytes != n - (COMPLETION_FRAME - 4))
            break;
        pthread_mutex_lock(&h->mu);
        if (type < WnvNotificationTypeMax && status != ERROR_INVALID_PARAMETER)
            h->dropped[type] = get64(frame + 24);
        for (int t = 0; t < WnvNotificationTypeMax; t++) {
            struct slot *s = &h->slots[t];
            if (!s->busy || s->id != id)
                continue;
            if (bytes > s->param->Header.Size)
                bytes = s->param->Header.Size - s->param->Header.Size % record_size[t];
            memcpy(s->param->Buffer, frame + COMPLETION_FRAME - 4, bytes);
            s->param->PendingNotifications = pending;
            complete(h, s, status, status == ERROR_SUCCESS ? bytes : 0);
            break;
        }
        pthread_mutex_unlock(&h->mu);
    }
    free(frame);
    pthread_mutex_lock(&h->mu);
    for (int t = 0; t < WnvNotificationTypeMax; t++)
        if (h->slots[t].busy)
            complete(h, &h->slots[t], ERROR_OPERATION_ABORTED, 0);
    h->dead = 1;
    pthread_mutex_unlock(&h->mu);
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
        hello[12] != WNV_API_MAJOR_VERSION) {
        close(fd);
        return -1;
    }
    tv.tv_sec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

HANDLE WnvOpen(void)
{
    struct wnv_handle *h = calloc(1, sizeof *h);
    if (h == NULL) {
        last_error = ERROR_NOT_ENOUGH_MEMORY;
        return NULL;
    }
    h->fd = connect_socket();
    if (h->fd < 0) {
        free(h);
        last_error = ERROR_OPEN_FAILED;
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->wmu, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->magic = HANDLE_MAGIC;
    if (pthread_create(&h->reader, NULL, reader_main, h) != 0) {
        close(h->fd);
        free(h);
        last_error = ERROR_NOT_ENOUGH_MEMORY;
        return NULL;
    }
    return h;
}

static struct wnv_handle *handle(HANDLE hh)
{
    struct wnv_handle *h = hh;
    return h != NULL && h->magic == HANDLE_MAGIC ? h : NULL;
}

/* result waits (if asked) for o's completion and returns it like
 * GetOverlappedResult. The caller holds h->mu and has counted itself in
 * h->users; result releases both. */
static BOOL result(struct wnv_handle *h, LPOVERLAPPED o, ULONG *bytes, BOOL wait)
{
    while (wait && o->Internal == ERROR_IO_PENDING)
        pthread_cond_wait(&h->cond, &h->mu);
    ULONG status = (ULONG)o->Internal;
    ULONG n = (ULONG)o->InternalHigh;
    h->users--;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mu);
    if (status == ERROR_IO_PENDING)
        return fail(ERROR_IO_INCOMPLETE);
    if (bytes != NULL)
        *bytes = n;
    if (status != ERROR_SUCCESS)
        return fail(status);
    return TRUE;
}

BOOL GetOverlappedResult(HANDLE hh, LPOVERLAPPED ov, ULONG *bytes, BOOL wait)
{
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return fail(ERROR_INVALID_HANDLE);
    if (ov == NULL)
        return fail(ERROR_INVALID_PARAMETER);
    pthread_mutex_lock(&h->mu);
    h->users++;
    return result(h, ov, bytes, wait);
}

ULONG WnvRequestNotification(HANDLE hh, PWNV_NOTIFICATION_PARAM param, LPOVERLAPPED ov,
                             ULONG *bytesTransferred)
{
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return ERROR_INVALID_HANDLE;
    if (param == NULL || param->Buffer == NULL ||
        param->Header.MajorVersion != WNV_API_MAJOR_VERSION ||
        param->Header.MinorVersion != WNV_API_MINOR_VERSION ||
        (unsigned)param->NotificationType >= WnvNotificationTypeMax ||
        param->Header.Size < record_size[param->NotificationType])
        return ERROR_INVALID_PARAMETER;

    OVERLAPPED sync = {.hEvent = -1};
    LPOVERLAPPED o = ov != NULL ? ov : &sync;
    struct slot *s = &h->slots[param->NotificationType];
    pthread_mutex_lock(&h->mu);
    if (s->busy) {
        pthread_mutex_unlock(&h->mu);
        return ERROR_INVALID_PARAMETER;
    }
    if (h->dead) {
        pthread_mutex_unlock(&h->mu);
        return ERROR_OPERATION_ABORTED;
    }
    o->Internal = ERROR_IO_PENDING;
    o->InternalHigh = 0;
    s->busy = 1;
    s->id = ++h->next_id;
    s->param = param;
    s->ov = o;
    if (ov == NULL)
        h->users++; /* counted now so CloseHandle cannot free h under us */
    UCHAR f[REQUEST_FRAME] = {0};
    frame_header(f, REQUEST_FRAME - 4, OP_REQUEST, s->id);
    pthread_mutex_unlock(&h->mu);

    f[12] = param->Header.MajorVersion;
    f[13] = param->Header.MinorVersion;
    put32(f + 16, param->Header.Size);
    put32(f + 20, (uint32_t)param->NotificationType);
    if (write_frame(h, f, sizeof f) < 0)
        shutdown(h->fd, SHUT_RDWR); /* the reader completes it with 995 */

    if (ov != NULL)
        return ERROR_IO_PENDING;
    ULONG n = 0;
    pthread_mutex_lock(&h->mu);
    BOOL ok = result(h, &sync, &n, TRUE);
    if (bytesTransferred != NULL)
        *bytesTransferred = n;
    return ok ? ERROR_SUCCESS : last_error;
}

BOOL CancelIoEx(HANDLE hh, LPOVERLAPPED ov)
{
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return fail(ERROR_INVALID_HANDLE);
    uint32_t ids[WnvNotificationTypeMax];
    int n = 0;
    pthread_mutex_lock(&h->mu);
    for (int t = 0; t < WnvNotificationTypeMax; t++)
        if (h->slots[t].busy && (ov == NULL || h->slots[t].ov == ov))
            ids[n++] = h->slots[t].id;
    pthread_mutex_unlock(&h->mu);
    if (n == 0)
        return fail(ERROR_NOT_FOUND);
    for (int i = 0; i < n; i++) {
        UCHAR f[FRAME_HEADER];
        frame_header(f, FRAME_HEADER - 4, OP_CANCEL, ids[i]);
        if (write_frame(h, f, sizeof f) < 0)
            shutdown(h->fd, SHUT_RDWR);
    }
    return TRUE;
}

BOOL CloseHandle(HANDLE hh)
{
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return fail(ERROR_INVALID_HANDLE);
    shutdown(h->fd, SHUT_RDWR);
    pthread_join(h->reader, NULL);
    /* Blocked callers were completed with 995 by the reader: let them leave. */
    pthread_mutex_lock(&h->mu);
    while (h->users > 0)
        pthread_cond_wait(&h->cond, &h->mu);
    pthread_mutex_unlock(&h->mu);
    close(h->fd);
    h->magic = 0;
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->wmu);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return TRUE;
}

ULONG WnvGetDroppedNotifications(HANDLE hh, WNV_NOTIFICATION_TYPE type, ULONGLONG *dropped)
{
    struct wnv_handle *h = handle(hh);
    if (h == NULL)
        return ERROR_INVALID_HANDLE;
    if ((unsigned)type >= WnvNotificationTypeMax || dropped == NULL)
        return ERROR_INVALID_PARAMETER;
    pthread_mutex_lock(&h->mu);
    *dropped = h->dropped[type];
    pthread_mutex_unlock(&h->mu);
    return ERROR_SUCCESS;
}
