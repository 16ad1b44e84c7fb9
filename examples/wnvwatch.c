/*
 * wnvwatch - print wnv notifications as they come.
 *
 * One asynchronous request per notification type on one handle, each with an
 * auto-reset event; WaitForMultipleObjects on the three events and a stop
 * event (set on SIGINT/SIGTERM), print what completed, post again.
 *
 *   cc -I include -o wnvwatch examples/wnvwatch.c capi/build/libwnvapi.a -pthread
 *   WNV_NOTIFY_SOCKET=/run/wnv/notify.sock ./wnvwatch
 */
#include "wnvapi.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define EVENTS_PER_REQUEST 64

static const char *type_names[] = {"policy-mismatch", "redirect", "object-change"};
static const char *dad_names[] = {"Invalid", "Tentative", "Duplicate", "Deprecated", "Preferred"};
static const char *ca_reasons[] = {"added", "deleted", "moved"};

/* stop_on_signal waits for SIGINT or SIGTERM (blocked in every thread) and
 * sets the stop event: a signal handler may not call SetEvent. */
static void *stop_on_signal(void *stop)
{
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigwait(&set, &sig);
    SetEvent(stop);
    return NULL;
}

static const char *fmt_addr(ADDRESS_FAMILY fam, const WNV_IP_ADDRESS *a, char *buf, size_t n)
{
    if (fam == AF_INET || fam == AF_INET6)
        return inet_ntop(fam, &a->IP, buf, (socklen_t)n);
    snprintf(buf, n, "-");
    return buf;
}

static void print_events(WNV_NOTIFICATION_TYPE t, const UCHAR *buf, ULONG bytes)
{
    char ca[INET6_ADDRSTRLEN], pa[INET6_ADDRSTRLEN], npa[INET6_ADDRSTRLEN];
    if (t == WnvPolicyMismatchType) {
        const WNV_POLICY_MISMATCH_PARAM *e = (const void *)buf;
        for (ULONG i = 0; i < bytes / sizeof *e; i++, e++)
            printf("policy-mismatch vsid=%u ca=%s pa=%s\n", e->VirtualSubnetId,
                   fmt_addr(e->CAFamily, &e->CA, ca, sizeof ca), fmt_addr(e->PAFamily, &e->PA, pa, sizeof pa));
    } else if (t == WnvRedirectType) {
        const WNV_REDIRECT_PARAM *e = (const void *)buf;
        for (ULONG i = 0; i < bytes / sizeof *e; i++, e++)
            printf("redirect vsid=%u ca=%s pa=%s newpa=%s\n", e->VirtualSubnetId,
                   fmt_addr(e->CAFamily, &e->CA, ca, sizeof ca),
                   fmt_addr(e->PAFamily, &e->PA, pa, sizeof pa),
                   fmt_addr(e->NewPAFamily, &e->NewPA, npa, sizeof npa));
    } else {
        const WNV_OBJECT_CHANGE_PARAM *e = (const void *)buf;
        for (ULONG i = 0; i < bytes / sizeof *e; i++, e++) {
            if (e->ObjectType == WnvProviderAddressType) {
                const WNV_PROVIDER_ADDRESS_CHANGE_PARAM *p = &e->ObjectParam.ProviderAddressChange;
                printf("provider-address pa=%s state=%s\n", fmt_addr(p->PAFamily, &p->PA, pa, sizeof pa),
                       p->AddressState <= NldsPreferred ? dad_names[p->AddressState] : "?");
            } else {
                const WNV_CUSTOMER_ADDRESS_CHANGE_PARAM *c = &e->ObjectParam.CustomerAddressChange;
                const UCHAR *m = c->MACAddress.Byte;
                printf("customer-address %s mac=%02x:%02x:%02x:%02x:%02x:%02x ca=%s vsid=%u pa=%s\n",
                       c->NotificationReason < WnvCustomerAddressMax ? ca_reasons[c->NotificationReason] : "?",
                       m[0], m[1], m[2], m[3], m[4], m[5], fmt_addr(c->CAFamily, &c->CA, ca, sizeof ca),
                       c->VirtualSubnetId, fmt_addr(c->PAFamily, &c->PA, pa, sizeof pa));
            }
        }
    }
}

/* post requests events of type t into buf, completing on event; 1 on failure. */
static int post(HANDLE h, WNV_NOTIFICATION_PARAM *p, OVERLAPPED *ov, WNV_NOTIFICATION_TYPE t, UCHAR *buf,
                ULONG size, HANDLE event)
{
    memset(p, 0, sizeof *p);
    p->Header.MajorVersion = WNV_API_MAJOR_VERSION_1;
    p->Header.MinorVersion = WNV_API_MINOR_VERSION_0;
    p->Header.Size = size;
    p->NotificationType = t;
    p->Buffer = buf;
    memset(ov, 0, sizeof *ov);
    ov->hEvent = event;
    DWORD err = WnvRequestNotification(h, p, ov, NULL);
    if (err != ERROR_IO_PENDING) {
        fprintf(stderr, "wnvwatch: %s request failed with error %u\n", type_names[t], err);
        return 1;
    }
    return 0;
}

int main(void)
{
    static UCHAR bufs[WnvNotificationTypeMax][EVENTS_PER_REQUEST * sizeof(WNV_REDIRECT_PARAM)];
    WNV_NOTIFICATION_PARAM params[WnvNotificationTypeMax];
    OVERLAPPED ovs[WnvNotificationTypeMax];
    HANDLE events[WnvNotificationTypeMax + 1]; /* one per type, then the stop event */
    ULONGLONG seen_dropped[WnvNotificationTypeMax] = {0};
    const DWORD stop = WnvNotificationTypeMax;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (DWORD i = 0; i <= stop; i++) {
        if ((events[i] = CreateEvent(NULL, FALSE, FALSE, NULL)) == NULL) {
            fprintf(stderr, "wnvwatch: CreateEvent failed (error %u)\n", GetLastError());
            return 1;
        }
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_t stopper;
    if (pthread_create(&stopper, NULL, stop_on_signal, events[stop]) != 0) {
        fprintf(stderr, "wnvwatch: cannot start the signal thread\n");
        return 1;
    }
    pthread_detach(stopper);

    HANDLE h = WnvOpen();
    if (h == NULL) {
        fprintf(stderr, "wnvwatch: WnvOpen failed (error %u): is wnvd running? (WNV_NOTIFY_SOCKET)\n",
                GetLastError());
        return 1;
    }
    int rc = 0;
    for (DWORD t = 0; t < WnvNotificationTypeMax && rc == 0; t++)
        rc = post(h, &params[t], &ovs[t], (WNV_NOTIFICATION_TYPE)t, bufs[t], sizeof bufs[t], events[t]);
    while (rc == 0) {
        DWORD w = WaitForMultipleObjects(stop + 1, events, FALSE, INFINITE);
        if (w == WAIT_OBJECT_0 + stop)
            break;
        if (w >= WAIT_OBJECT_0 + stop) {
            fprintf(stderr, "wnvwatch: WaitForMultipleObjects failed (error %u)\n", GetLastError());
            rc = 1;
            break;
        }
        DWORD t = w - WAIT_OBJECT_0;
        ULONG bytes = 0;
        if (!GetOverlappedResult(h, &ovs[t], &bytes, FALSE)) {
            fprintf(stderr, "wnvwatch: %s request completed with error %u\n", type_names[t], GetLastError());
            rc = 1;
            break;
        }
        ULONGLONG dropped = 0;
        WnvGetDroppedNotifications(h, (WNV_NOTIFICATION_TYPE)t, &dropped);
        if (dropped > seen_dropped[t]) {
            fprintf(stderr, "wnvwatch: %llu %s events were dropped (queue full): resync policy\n",
                    dropped - seen_dropped[t], type_names[t]);
            seen_dropped[t] = dropped;
        }
        print_events((WNV_NOTIFICATION_TYPE)t, bufs[t], bytes);
        rc = post(h, &params[t], &ovs[t], (WNV_NOTIFICATION_TYPE)t, bufs[t], sizeof bufs[t], events[t]);
    }
    CloseHandle(h); /* completes the outstanding requests with 995 */
    for (DWORD i = 0; i <= stop; i++)
        CloseHandle(events[i]);
    return rc;
}
