/* Integration test of libwnvapi against a live server, driven by
 * capi/capi_test.go: it prints a line when it needs events raised (and, for
 * "need ..." lines, waits for "go" on stdin), prints each event it receives,
 * and checks the API's results itself, exiting 1 with a FAIL line. */
#include "wnvapi.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                                  \
    do {                                                           \
        printf("FAIL line %d: ", __LINE__);                        \
        printf(__VA_ARGS__);                                       \
        printf("\n");                                              \
        exit(1);                                                   \
    } while (0)

static UCHAR buf[WnvNotificationTypeMax][16 * sizeof(WNV_REDIRECT_PARAM)];

static void init(WNV_NOTIFICATION_PARAM *p, WNV_NOTIFICATION_TYPE t, ULONG size)
{
    memset(p, 0, sizeof *p);
    p->Header.MajorVersion = WNV_API_MAJOR_VERSION_1;
    p->Header.MinorVersion = WNV_API_MINOR_VERSION_0;
    p->Header.Size = size;
    p->NotificationType = t;
    p->Buffer = buf[t];
}

static const char *ntop(ADDRESS_FAMILY fam, const WNV_IP_ADDRESS *a, char *s)
{
    if (fam == AF_INET || fam == AF_INET6)
        return inet_ntop(fam, &a->IP, s, INET6_ADDRSTRLEN);
    return strcpy(s, "-");
}

static const char *family(ADDRESS_FAMILY fam)
{
    return fam == AF_INET ? "inet" : fam == AF_INET6 ? "inet6" : fam == AF_UNSPEC ? "unspec" : "?";
}

static void print(WNV_NOTIFICATION_TYPE t, ULONG bytes)
{
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], c[INET6_ADDRSTRLEN];
    if (t == WnvPolicyMismatchType) {
        const WNV_POLICY_MISMATCH_PARAM *e = (const void *)buf[t];
        for (; (const UCHAR *)e < buf[t] + bytes; e++)
            printf("mismatch vsid=%u ca=%s pa=%s fam=%s/%s\n", e->VirtualSubnetId, ntop(e->CAFamily, &e->CA, a),
                   ntop(e->PAFamily, &e->PA, b), family(e->CAFamily), family(e->PAFamily));
    } else if (t == WnvRedirectType) {
        const WNV_REDIRECT_PARAM *e = (const void *)buf[t];
        for (; (const UCHAR *)e < buf[t] + bytes; e++)
            printf("redirect vsid=%u ca=%s pa=%s newpa=%s\n", e->VirtualSubnetId, ntop(e->CAFamily, &e->CA, a),
                   ntop(e->PAFamily, &e->PA, b), ntop(e->NewPAFamily, &e->NewPA, c));
    } else {
        const WNV_OBJECT_CHANGE_PARAM *e = (const void *)buf[t];
        for (; (const UCHAR *)e < buf[t] + bytes; e++) {
            if (e->ObjectType == WnvProviderAddressType) {
                const WNV_PROVIDER_ADDRESS_CHANGE_PARAM *p = &e->ObjectParam.ProviderAddressChange;
                printf("pa-change pa=%s state=%u\n", ntop(p->PAFamily, &p->PA, a), p->AddressState);
            } else {
                const WNV_CUSTOMER_ADDRESS_CHANGE_PARAM *p = &e->ObjectParam.CustomerAddressChange;
                printf("ca-change mac=%02x:%02x:%02x:%02x:%02x:%02x ca=%s vsid=%u pa=%s reason=%u\n",
                       p->MACAddress.Byte[0], p->MACAddress.Byte[1], p->MACAddress.Byte[2], p->MACAddress.Byte[3],
                       p->MACAddress.Byte[4], p->MACAddress.Byte[5], ntop(p->CAFamily, &p->CA, a),
                       p->VirtualSubnetId, ntop(p->PAFamily, &p->PA, b), p->NotificationReason);
            }
        }
    }
}

static void need(const char *what)
{
    char line[64];
    printf("need %s\n", what);
    if (fgets(line, sizeof line, stdin) == NULL || strcmp(line, "go\n") != 0)
        FAIL("driver did not answer go to 'need %s'", what);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    HANDLE h = WnvOpen();
    if (h == NULL)
        FAIL("WnvOpen: error %u", GetLastError());
    WNV_NOTIFICATION_PARAM p[WnvNotificationTypeMax];
    ULONG bytes = 0, err;

    /* Bad requests: 87. */
    init(&p[0], WnvPolicyMismatchType, sizeof buf[0]);
    p[0].Header.MajorVersion = 2;
    if ((err = WnvRequestNotification(h, &p[0], NULL, &bytes)) != ERROR_INVALID_PARAMETER)
        FAIL("version 2.0: %u", err);
    init(&p[0], WnvPolicyMismatchType, sizeof buf[0]);
    p[0].Header.MinorVersion = 1;
    if ((err = WnvRequestNotification(h, &p[0], NULL, &bytes)) != ERROR_INVALID_PARAMETER)
        FAIL("version 1.1: %u", err);
    init(&p[0], WnvPolicyMismatchType, sizeof(WNV_POLICY_MISMATCH_PARAM) - 1);
    if ((err = WnvRequestNotification(h, &p[0], NULL, &bytes)) != ERROR_INVALID_PARAMETER)
        FAIL("short buffer: %u", err);
    init(&p[0], WnvPolicyMismatchType, sizeof buf[0]);
    p[0].NotificationType = WnvNotificationTypeMax;
    if ((err = WnvRequestNotification(h, &p[0], NULL, &bytes)) != ERROR_INVALID_PARAMETER)
        FAIL("unknown type: %u", err);
    printf("invalid ok\n");

    /* Blocking: the driver raises two mismatches once we wait. */
    printf("blocking\n");
    for (int got = 0; got < 2;) {
        init(&p[0], WnvPolicyMismatchType, sizeof buf[0]);
        if ((err = WnvRequestNotification(h, &p[0], NULL, &bytes)) != ERROR_SUCCESS)
            FAIL("blocking request: %u", err);
        if (bytes == 0 || bytes % sizeof(WNV_POLICY_MISMATCH_PARAM) != 0)
            FAIL("blocking request filled %u bytes", bytes);
        print(WnvPolicyMismatchType, bytes);
        got += bytes / sizeof(WNV_POLICY_MISMATCH_PARAM);
    }

    /* Events are process-local: a name is refused. */
    if (CreateEventA(NULL, FALSE, FALSE, "wnv") != NULL || GetLastError() != ERROR_NOT_SUPPORTED)
        FAIL("named event: last error %u", GetLastError());
    printf("named event %u\n", GetLastError());

    /* Asynchronous: one request per type, wait on their auto-reset events. */
    OVERLAPPED ov[WnvNotificationTypeMax];
    HANDLE ev[WnvNotificationTypeMax];
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        if ((ev[t] = CreateEventA(NULL, FALSE, FALSE, NULL)) == NULL)
            FAIL("CreateEvent: %u", GetLastError());
        memset(&ov[t], 0, sizeof ov[t]);
        ov[t].hEvent = ev[t];
        init(&p[t], (WNV_NOTIFICATION_TYPE)t, sizeof buf[t]);
        if ((err = WnvRequestNotification(h, &p[t], &ov[t], NULL)) != ERROR_IO_PENDING)
            FAIL("async request type %d: %u", t, err);
    }
    if (GetOverlappedResult(h, &ov[1], &bytes, FALSE) || GetLastError() != ERROR_IO_INCOMPLETE)
        FAIL("GetOverlappedResult on a pending request: last error %u", GetLastError());
    WNV_NOTIFICATION_PARAM dup;
    init(&dup, WnvRedirectType, sizeof buf[1]);
    if ((err = WnvRequestNotification(h, &dup, NULL, &bytes)) != ERROR_INVALID_PARAMETER)
        FAIL("second outstanding redirect request: %u", err);
    printf("async posted\n");
    int done[WnvNotificationTypeMax] = {0};
    for (int left = WnvNotificationTypeMax; left > 0;) {
        DWORD w = WaitForMultipleObjects(WnvNotificationTypeMax, ev, FALSE, 5000);
        if (w >= WAIT_OBJECT_0 + WnvNotificationTypeMax)
            FAIL("no async completion within 5s: wait %u, error %u", w, GetLastError());
        int t = (int)(w - WAIT_OBJECT_0);
        if (!GetOverlappedResult(h, &ov[t], &bytes, FALSE))
            FAIL("async type %d: error %u", t, GetLastError());
        print((WNV_NOTIFICATION_TYPE)t, bytes);
        if (p[t].PendingNotifications > 0) {
            if ((err = WnvRequestNotification(h, &p[t], &ov[t], NULL)) != ERROR_IO_PENDING)
                FAIL("re-post type %d: %u", t, err);
        } else if (!done[t]) {
            done[t] = 1;
            left--;
        }
    }

    /* A buffer too small for all pending events. */
    need("3 redirects");
    init(&p[1], WnvRedirectType, sizeof(WNV_REDIRECT_PARAM) + 10);
    if ((err = WnvRequestNotification(h, &p[1], NULL, &bytes)) != ERROR_SUCCESS)
        FAIL("short request: %u", err);
    printf("short bytes=%u pending=%u\n", bytes, p[1].PendingNotifications);
    init(&p[1], WnvRedirectType, sizeof buf[1]);
    if ((err = WnvRequestNotification(h, &p[1], NULL, &bytes)) != ERROR_SUCCESS)
        FAIL("drain request: %u", err);
    printf("drain bytes=%u pending=%u\n", bytes, p[1].PendingNotifications);

    /* Overflow is counted and readable. */
    need("overflow");
    init(&p[1], WnvRedirectType, sizeof buf[1]);
    if ((err = WnvRequestNotification(h, &p[1], NULL, &bytes)) != ERROR_SUCCESS)
        FAIL("overflow request: %u", err);
    ULONGLONG dropped = 0;
    if ((err = WnvGetDroppedNotifications(h, WnvRedirectType, &dropped)) != ERROR_SUCCESS)
        FAIL("WnvGetDroppedNotifications: %u", err);
    printf("overflow events=%zu dropped=%llu\n", bytes / sizeof(WNV_REDIRECT_PARAM), (unsigned long long)dropped);

    /* CancelIoEx completes a request with 995. */
    init(&p[1], WnvRedirectType, sizeof buf[1]);
    memset(&ov[1], 0, sizeof ov[1]);
    if ((err = WnvRequestNotification(h, &p[1], &ov[1], NULL)) != ERROR_IO_PENDING)
        FAIL("request to cancel: %u", err);
    if (!CancelIoEx(h, &ov[1]))
        FAIL("CancelIoEx: %u", GetLastError());
    if (GetOverlappedResult(h, &ov[1], &bytes, TRUE) || GetLastError() != ERROR_OPERATION_ABORTED)
        FAIL("cancelled request: last error %u", GetLastError());
    printf("cancel 995\n");

    /* CloseHandle completes everything pending with 995, promptly. */
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        memset(&ov[t], 0, sizeof ov[t]);
        ov[t].hEvent = ev[t];
        init(&p[t], (WNV_NOTIFICATION_TYPE)t, sizeof buf[t]);
        if ((err = WnvRequestNotification(h, &p[t], &ov[t], NULL)) != ERROR_IO_PENDING)
            FAIL("request before close, type %d: %u", t, err);
    }
    usleep(20000);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CloseHandle(h);
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        if (WaitForSingleObject(ev[t], 0) != WAIT_OBJECT_0)
            FAIL("type %d not signalled when CloseHandle returned", t);
        if (ov[t].Internal != ERROR_OPERATION_ABORTED)
            FAIL("type %d completed with %lu after CloseHandle", t, (unsigned long)ov[t].Internal);
        if (!CloseHandle(ev[t]))
            FAIL("CloseHandle(event): %u", GetLastError());
    }
    double ms = ms_since(&t0);
    if (ms > 100)
        FAIL("pending requests completed %.1f ms after CloseHandle", ms);
    printf("close 995 within 100ms\n");
    printf("PASS\n");
    return 0;
}
