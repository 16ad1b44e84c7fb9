/*
 * wnvwatch - print wnv notifications as they come.
 *
 * One asynchronous request per notification type on one handle, each with an
 * eventfd; poll() the three eventfds, print what completed, post again.
 *
 *   cc -I include -o wnvwatch examples/wnvwatch.c capi/build/libwnvapi.a -pthread
 *   WNV_NOTIFY_SOCKET=/run/wnv/notify.sock ./wnvwatch
 */
#include "wnvapi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EVENTS_PER_REQUEST 64

static const char *type_names[] = {"policy-mismatch", "redirect", "object-change"};
static const char *dad_names[] = {"Invalid", "Tentative", "Duplicate", "Deprecated", "Preferred"};
static const char *ca_reasons[] = {"added", "deleted", "moved"};

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

/* fmt_addr renders a WNV address; Windows family values differ from Linux's. */
static const char *fmt_addr(ADDRESS_FAMILY fam, const WNV_IP_ADDRESS *a, char *buf, size_t n)
{
    if (fam == WNV_AF_INET)
        return inet_ntop(AF_INET, &a->v4, buf, (socklen_t)n);
    if (fam == WNV_AF_INET6)
        return inet_ntop(AF_INET6, &a->v6, buf, (socklen_t)n);
    snprintf(buf, n, "-");
    return buf;
}

static void print_events(WNV_NOTIFICATION_TYPE t, const UCHAR *buf, ULONG bytes)
{
    char ca[INET6_ADDRSTRLEN], pa[INET6_ADDRSTRLEN], npa[INET6_ADDRSTRLEN];
    if (t == WnvPolicyMismatchType) {
        const WNV_POLICY_MISMATCH_PARAM *e = (const void *)buf;
        for (ULONG i = 0; i < bytes / sizeof *e; i++, e++)
            printf("policy-mismatch vsid=%u ca=%s pa=%s families=%u/%u\n", e->VirtualSubnetId,
                   fmt_addr(e->CAFamily, &e->CA, ca, sizeof ca),
                   fmt_addr(e->PAFamily, &e->PA, pa, sizeof pa), e->CAFamily, e->PAFamily);
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

int main(void)
{
    static UCHAR bufs[WnvNotificationTypeMax][EVENTS_PER_REQUEST * sizeof(WNV_REDIRECT_PARAM)];
    WNV_NOTIFICATION_PARAM params[WnvNotificationTypeMax];
    OVERLAPPED ovs[WnvNotificationTypeMax];
    struct pollfd fds[WnvNotificationTypeMax];
    ULONGLONG seen_dropped[WnvNotificationTypeMax] = {0};

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    HANDLE h = WnvOpen();
    if (h == NULL) {
        fprintf(stderr, "wnvwatch: WnvOpen failed (error %u): is wnvd running? (WNV_NOTIFY_SOCKET)\n",
                GetLastError());
        return 1;
    }
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        fds[t].fd = eventfd(0, EFD_CLOEXEC);
        fds[t].events = POLLIN;
        if (fds[t].fd < 0) {
            perror("wnvwatch: eventfd");
            return 1;
        }
    }

    int posted[WnvNotificationTypeMax] = {0};
    int rc = 0;
    while (!stop) {
        for (int t = 0; t < WnvNotificationTypeMax; t++) {
            if (posted[t])
                continue;
            memset(&params[t], 0, sizeof params[t]);
            params[t].Header.MajorVersion = WNV_API_MAJOR_VERSION;
            params[t].Header.MinorVersion = WNV_API_MINOR_VERSION;
            params[t].Header.Size = sizeof bufs[t];
            params[t].NotificationType = (WNV_NOTIFICATION_TYPE)t;
            params[t].Buffer = bufs[t];
            memset(&ovs[t], 0, sizeof ovs[t]);
            ovs[t].hEvent = fds[t].fd;
            ULONG err = WnvRequestNotification(h, &params[t], &ovs[t], NULL);
            if (err != ERROR_IO_PENDING) {
                fprintf(stderr, "wnvwatch: %s request failed with error %u\n", type_names[t], err);
                rc = 1;
                goto out;
            }
            posted[t] = 1;
        }
        if (poll(fds, WnvNotificationTypeMax, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("wnvwatch: poll");
            rc = 1;
            break;
        }
        for (int t = 0; t < WnvNotificationTypeMax; t++) {
            if (!(fds[t].revents & POLLIN))
                continue;
            uint64_t v;
            if (read(fds[t].fd, &v, sizeof v) != sizeof v)
                continue;
            ULONG bytes = 0;
            posted[t] = 0;
            if (!GetOverlappedResult(h, &ovs[t], &bytes, FALSE)) {
                fprintf(stderr, "wnvwatch: %s request completed with error %u\n", type_names[t], GetLastError());
                rc = 1;
                goto out;
            }
            ULONGLONG dropped = 0;
            WnvGetDroppedNotifications(h, (WNV_NOTIFICATION_TYPE)t, &dropped);
            if (dropped > seen_dropped[t]) {
                fprintf(stderr, "wnvwatch: %llu %s events were dropped (queue full): resync policy\n",
                        (unsigned long long)(dropped - seen_dropped[t]), type_names[t]);
                seen_dropped[t] = dropped;
            }
            print_events((WNV_NOTIFICATION_TYPE)t, bufs[t], bytes);
        }
    }
out:
    CloseHandle(h); /* completes the outstanding requests with 995 */
    for (int t = 0; t < WnvNotificationTypeMax; t++)
        close(fds[t].fd);
    return rc;
}
